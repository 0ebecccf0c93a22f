"Prometheus metrics: the gateway's /metrics behind its login, every service's behind its API key, requests by route pattern, one JSON error shape, tools' operation timings and the status app's budgets."
import asyncio, os, re, subprocess, sys, threading, time, urllib.request
from pathlib import Path
import pytest
from prometheus_client.parser import text_string_to_metric_families
from tornado.httpserver import HTTPServer
from tornado.ioloop import IOLoop
from tornado.testing import bind_unused_port
from conftest import http, standalone_echo
from aiplatform.core import load_settings
from aiplatform.platform.metrics import ENV, SharedMetrics, operations, timed
from aiplatform.platform.services import ServiceHandler, service_app

def samples(text) -> list:
    "Every sample of a Prometheus text exposition as (name, labels, value)."
    return [(s.name, s.labels, s.value) for f in text_string_to_metric_families(text) for s in f.samples]

def value(found, name, **labels) -> float:
    "The value of the sample `name` with exactly `labels` in `found`, 0 when absent."
    return sum(v for n, l, v in found if n == name and l == labels)

def gateway_metrics(gw) -> list:
    status, headers, body = http(gw.url + "metrics", token=gw.token)
    assert status == 200 and headers["Content-Type"].startswith("text/plain"), (status, body[:300])
    return samples(body.decode())

def request_count(found, app, route, method, status) -> float:
    return value(found, "aiplatform_http_request_duration_seconds_count", app=app, route=route, method=method, status=str(status))

# The gateway

def test_gateway_metrics_are_behind_the_login(gateway):
    assert http(gateway.url + "metrics")[0] == 403
    assert http(gateway.url + "metrics", token="wrong")[0] == 403
    status, _, body = http(gateway.url + "metrics", headers={"Authorization": f"Bearer {gateway.token}"})  # as a Prometheus scraper sends it
    assert status == 200 and b"jupyter_server_info" in body  # Jupyter's own metrics beside the platform's

def test_gateway_api_requests_are_counted_by_route_pattern_not_path(gateway):
    before = gateway_metrics(gateway)
    assert http(gateway.url + "aiplatform/api/me", token=gateway.token)[0] == 200
    assert http(gateway.url + "aiplatform/api/echo/ping", token=gateway.token)[0] == 200  # a tool's route, from the registry
    for n in (1, 2, 3): assert http(gateway.url + f"aiplatform/api/nope/{n}", token=gateway.token)[0] == 404
    after = gateway_metrics(gateway)
    def grew(route, status, method="GET"):
        return request_count(after, "gateway", route, method, status) - request_count(before, "gateway", route, method, status)
    assert (grew("/aiplatform/api/me", 200), grew("/aiplatform/api/echo/ping", 200), grew("/aiplatform/api/.*", 404)) == (1, 1, 3)
    errors = dict(app="gateway", route="/aiplatform/api/.*", method="GET", status="404", error="NotFound")
    assert value(after, "aiplatform_http_errors_total", **errors) - value(before, "aiplatform_http_errors_total", **errors) == 3
    assert not [l for _, l, _ in after if "/nope/" in l.get("route", "")]  # raw paths never become series
    buckets = [l["le"] for n, l, _ in after if n == "aiplatform_http_request_duration_seconds_bucket" and l["route"] == "/aiplatform/api/me"
               and l["status"] == "200"]
    assert {"0.01", "2.0", "+Inf"} <= set(buckets)

def test_gateway_errors_have_one_json_shape_and_no_traceback(gateway):
    status, headers, body = http(gateway.url + "aiplatform/api/nope/1", token=gateway.token)
    assert (status, body) == (404, {"error": "path '/aiplatform/api/nope/1': not found", "status": 404})
    assert headers["Content-Type"].startswith("application/json")
    assert http(gateway.url + "aiplatform/api/nope/1")[2] == {"error": "Forbidden", "status": 403}  # no login: no hint the path is unknown
    assert http(gateway.url + "aiplatform/api/me")[2] == {"error": "Forbidden", "status": 403}
    assert http(gateway.url + "aiplatform/api/me", token=gateway.token, data=b"{}")[2] == {"error": "Method Not Allowed", "status": 405}
    status, _, body = http(gateway.url + "aiplatform/api/codegen/generate", token=gateway.token, data=b"[1]")  # a tool's own error
    assert (status, body) == (400, {"error": "request body: expected a JSON object", "status": 400})
    found = gateway_metrics(gateway)
    assert value(found, "aiplatform_http_errors_total", app="gateway", route="/aiplatform/api/codegen/generate", method="POST",
                 status="400", error="answered") >= 1

def test_services_the_gateway_starts_are_in_its_metrics_and_its_shared_folder(gateway):
    base = gateway.url + "aiplatform/echo/"
    assert http(base + "echo", token=gateway.token, data=b'{"n": 1}')[0] == 200
    assert http(base + "nope", token=gateway.token)[2] == {"error": "path '/nope': not found", "status": 404}
    found = gateway_metrics(gateway)
    assert request_count(found, "echo", "/echo", "POST", 200) >= 1  # counted in the service's process, added up by the gateway
    assert value(found, "aiplatform_http_errors_total", app="echo", route="(unmatched)", method="GET", status="404", error="NotFound") >= 1
    folder = gateway.root/"data"/"metrics"  # what the status app reads from its own kernel
    assert oct(folder.stat().st_mode & 0o777) == "0o700"
    shared = [(s.name, s.labels, s.value) for f in SharedMetrics(folder).collect() for s in f.samples]
    assert request_count(shared, "echo", "/echo", "POST", 200) >= 1 and request_count(shared, "gateway", "/aiplatform/api/health", "GET", 200) >= 1

def test_kernels_the_gateway_starts_record_into_its_shared_folder(gateway):
    status, _, kernel = http(gateway.url + "api/kernels", token=gateway.token, data=b"{}", headers={"Content-Type": "application/json"})
    assert status == 201, kernel
    try:
        def read(path):
            try: return path.read_bytes()
            except OSError: return b""
        [proc] = [p for p in Path("/proc").iterdir() if p.name.isdigit() and kernel["id"].encode() in read(p/"cmdline")]
        assert f"{ENV}={gateway.root/'data'/'metrics'}".encode() in read(proc/"environ").split(b"\0")
    finally:
        request = urllib.request.Request(gateway.url + f"api/kernels/{kernel['id']}", method="DELETE",
                                         headers={"Authorization": f"token {gateway.token}"})
        urllib.request.urlopen(request, timeout=30).close()

# A service on its own

def test_a_service_metrics_need_an_api_key(env):
    with standalone_echo(env, "vic", "viewer") as (url, key):
        status, headers, body = http(url + "metrics")
        assert (status, body) == (401, {"error": "Authorization header: expected 'Bearer <API key>'", "status": 401})
        assert headers["WWW-Authenticate"].startswith("Bearer")
        assert http(url + "metrics", headers={"Authorization": f"Bearer {key}x"})[0] == 401
        assert http(url + "echo", data=b'{"a": 1}')[0] == 200
        status, headers, body = http(url + "metrics", headers={"Authorization": f"Bearer {key}"})
        found = samples(body.decode())
        assert status == 200 and headers["Content-Type"].startswith("text/plain")
        assert request_count(found, "echo", "/echo", "POST", 200) == 1 and request_count(found, "echo", "/health", "GET", 200) >= 1
        assert value(found, "aiplatform_http_errors_total", app="echo", route="/metrics", method="GET", status="401", error="Unauthorized") == 2

class Boom(ServiceHandler):
    def get(self): raise RuntimeError("/etc/secret: a detail for the log only")

def serve(app) -> int:
    sock, port = bind_unused_port()
    def run():
        asyncio.set_event_loop(asyncio.new_event_loop())
        HTTPServer(app).add_sockets([sock])
        IOLoop.current().start()
    threading.Thread(target=run, daemon=True).start()
    return port

def logged_for(caplog, path) -> list:
    "The log records about `path`, waited for: the service's thread logs a request as it ends, which can be just after we read its answer."
    for _ in range(250):
        if found := [r for r in caplog.records if path in r.getMessage() and r.name != "tornado.access"]: return found  # not the access line
        time.sleep(0.02)
    return []

def test_a_service_error_is_json_without_a_traceback(tmp_path, caplog):
    for name in ("tornado.general", "tornado.application"):  # whatever level an earlier test in this worker left on tornado's loggers
        caplog.set_level("INFO", logger=name)
    port = serve(service_app("boom", [(r"/boom", Boom)], load_settings(env={}, platform={"data_dir": tmp_path})))
    status, headers, body = http(f"http://127.0.0.1:{port}/boom")
    assert (status, body) == (500, {"error": "internal error", "status": 500}) and headers["Content-Type"].startswith("application/json")
    [logged] = logged_for(caplog, "/boom")
    assert logged.levelname == "ERROR" and "/etc/secret" in str(logged.exc_info[1])  # the detail is in the log only
    caplog.clear()
    assert http(f"http://127.0.0.1:{port}/nope")[2] == {"error": "path '/nope': not found", "status": 404}
    [logged] = logged_for(caplog, "/nope")
    assert (logged.levelname, logged.exc_info) == ("WARNING", None)  # the caller's mistake: one line, no traceback
    status, _, body = http(f"http://127.0.0.1:{port}/boom", data=b"{}")
    assert (status, body) == (405, {"error": "Method Not Allowed", "status": 405})

# Tools' operations

def test_timed_records_operations_and_failures_in_this_process():
    with timed("codegen", "test_block"): pass
    @timed("codegen", "test_call")
    def fails(): raise ValueError("no")
    with pytest.raises(ValueError): fails()
    rows = {(r["tool"], r["operation"]): r for r in operations()}
    assert {k: rows["codegen", "test_block"][k] for k in ("count", "failures", "budget", "ok")} == dict(count=1, failures=0, budget=2.0, ok=True)
    assert {k: rows["codegen", "test_call"][k] for k in ("count", "failures", "p99", "ok")} == dict(count=0, failures=1, p99=None, ok=None)

RECORD = """
import sys
from aiplatform.platform.metrics import OPERATIONS, timed
tool, operation, seconds, n = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
for _ in range(n): OPERATIONS.labels(tool, operation).observe(seconds)
with timed(tool, operation): pass
"""

def record(folder, *args):
    "Record operations in a process of its own sharing `folder`, as a kernel or a service the gateway started does."
    subprocess.run([sys.executable, "-c", RECORD, *map(str, args)], env=os.environ | {ENV: str(folder)}, check=True, timeout=60)

def test_operations_add_up_across_processes_and_compare_with_the_budgets(tmp_path):
    folder = tmp_path/"metrics"
    folder.mkdir()
    record(folder, "codegen", "generate", 1.2, 49)
    record(folder, "codegen", "generate", 1.4, 49)
    record(folder, "trading", "order", 0.02, 9)  # 10 calls, most over 10 ms
    rows = {(r["tool"], r["operation"]): r for r in operations(folder)}
    gen, order = rows["codegen", "generate"], rows["trading", "order"]
    assert (gen["count"], gen["budget"], gen["ok"], order["count"], order["budget"], order["ok"]) == (100, 2.0, True, 10, 0.01, False)
    assert 1 < gen["p50"] < 1.5 and gen["p99"] <= 1.5 and order["p99"] > 0.01

def test_the_status_app_shows_p50_p99_beside_each_budget(tmp_path, monkeypatch):
    from aiplatform.platform.status_app import StatusApp
    monkeypatch.delenv(ENV, raising=False)
    settings = load_settings(env={}, platform={"data_dir": tmp_path})
    (tmp_path/"metrics").mkdir()  # as the gateway makes it: the app, in a kernel of its own, reads it by the data folder
    record(tmp_path/"metrics", "codegen", "generate", 0.5, 20)
    record(tmp_path/"metrics", "trading", "order", 0.05, 20)
    page = StatusApp(settings).performance.value
    def row(tool, operation): return re.search(f"<tr><td[^>]*>{tool}</td><td[^>]*>{operation}</td>.*?</tr>", page)[0]
    assert page.count("<tr>") == 3  # the header and the two operations
    assert row("codegen", "generate").count("#1a7f37") == 2 and ">2 s<" in row("codegen", "generate")  # p50 and p99 green, budget 2 s
    assert row("trading", "order").count("#cf222e") == 2 and ">10 ms<" in row("trading", "order")  # red, budget 10 ms
    assert f"Every process recording into {tmp_path/'metrics'}:" in page
