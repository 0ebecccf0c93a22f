"""A test tool installed from outside the package, as a third-party tool would be: one record brings a settings
section, an API route, a magic, a command, an app and a service, with no line of the platform changed."""
from jupyter_server.base.handlers import APIHandler
from tornado import web
from aiplatform.core import Setting, get_settings
from aiplatform.platform.registry import App, Service, Tool
from aiplatform.platform.services import ServiceHandler, service_app

class Echo(ServiceHandler):
    "Answers with the JSON object it is sent."
    def post(self): self.finish({"echo": self.json_body()})

class Whoami(ServiceHandler):
    "Answers with the caller's platform user name; needs an API key."
    def get(self): self.finish({"user": self.user().username})

def make_app(settings): return service_app("echo", [(r"/echo", Echo), (r"/whoami", Whoami)], settings)

class Ping(APIHandler):
    "`GET /aiplatform/api/echo/ping`: the greeting of the `[echo]` settings."
    @web.authenticated
    def get(self): self.finish({"greeting": get_settings().echo.greeting})

def echo_widget():
    import ipywidgets
    return ipywidgets.HTML(f"<h3>{get_settings().echo.greeting}</h3>")

def echo_magic(line): return f"{get_settings().echo.greeting}, {line}"

def magics(ipython): ipython.register_magic_function(echo_magic, "line", "echo")

def commands(sub):
    sub.add_parser("echo", help="print the greeting and the words").add_argument("words", nargs="*")
    return {"echo": lambda args, settings: print(settings.echo.greeting, *args.words)}

TOOL = Tool("echo", "Echo", settings={"echo": {"greeting": Setting("str", "hello", "what the echo tool says first")}},
            routes=(("ping", "echo_tool:Ping"),), magics="echo_tool:magics", cli="echo_tool:commands",
            apps=(App("echo", "Echo", "Says hello.", widget="echo_tool:echo_widget"),),
            services=(Service("echo", "Echo", "Answers with what it is sent.", "echo_tool:make_app"),),
            migrations="echo_migrations")  # tests/plugins/echo_migrations: its own Alembic branch, the table echoes
