"A test plugin: a service registered through the platform's registry, as a third-party package would."
from aiplatform.platform.services import Service, ServiceHandler, service_app

class Echo(ServiceHandler):
    "Answers with the JSON object it is sent."
    def post(self): self.finish({"echo": self.json_body()})

class Whoami(ServiceHandler):
    "Answers with the caller's platform user name; needs an API key."
    def get(self): self.finish({"user": self.user().username})

def make_app(settings): return service_app("echo", [(r"/echo", Echo), (r"/whoami", Whoami)], settings)

SERVICE = Service("echo", "Echo", "Answers with what it is sent.", "echo_service:make_app")
