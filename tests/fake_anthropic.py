"A local stand-in for the Anthropic API over real HTTP: it answers `POST /v1/messages` with recorded responses, in order, and keeps the requests (kernels and gateways reach it through `[codegen] base_url`)."
import json, threading, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

RECORDINGS = Path(__file__).parent/"recordings"/"anthropic"

class FakeAnthropic:
    def __init__(self, event_delay=0.0):
        self.responses, self.requests, self.event_delay = [], [], event_delay
        fake = self
        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            def log_message(self, *args): pass
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                fake.requests.append(dict(path=self.path, headers=dict(self.headers), body=json.loads(body or b"null")))
                if not fake.responses:
                    self.send_response(500); self.send_header("Content-Length", "0"); self.end_headers(); return
                r = fake.responses.pop(0)
                self.send_response(r["status"])
                for k, v in r["headers"].items(): self.send_header(k, v)
                self.send_header("Connection", "close")
                self.end_headers()
                for event in r["body"].split("\n\n") if r["status"] == 200 else [r["body"]]:
                    if not event: continue
                    try:
                        self.wfile.write(event.encode() + (b"\n\n" if r["status"] == 200 else b""))
                        self.wfile.flush()
                    except (BrokenPipeError, ConnectionResetError): break  # the client stopped listening
                    if fake.event_delay: time.sleep(fake.event_delay)
                self.close_connection = True
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def expect(self, *names):
        "Queue the recordings `names` (file stems in tests/recordings/anthropic) as the next answers."
        self.responses += [json.loads((RECORDINGS/f"{n}.json").read_text()) for n in names]

    def close(self): self.server.shutdown()
