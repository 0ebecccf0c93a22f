"""The apps' own Voilà server: kernels preheated before anyone asks, reachable only through the gateway's proxy and
login, gone with the gateway."""
import json, os, re, signal, time
import pytest
from aiplatform.platform.registry import registered_apps
from conftest import http, start_gateway, stop_gateway

APPS = ("index", "status", "backtest_lab", "code_generator")

@pytest.fixture(scope="module")
def warm(tmp_path_factory):
    gw = start_gateway(tmp_path_factory.mktemp("apps"), "app_kernels = 1\nkernel_idle_timeout = 3\n")
    gw.apps = json.loads((gw.root/"data"/"jupyter_server_config.json").read_text())["ServerProxy"]["servers"]["aiplatform/apps"]
    yield gw
    stop_gateway(gw)

def filled(gw, apps=APPS): return {a for a in apps if f"Kernel pool of {a}.ipynb is filled" in gw.log.read_text()}

def test_every_app_has_a_kernel_that_ran_it_before_the_first_visit(warm):
    every = {"index", *(a.name for a in registered_apps())}
    end = time.monotonic() + 240
    while filled(warm, every) != every and time.monotonic() < end: time.sleep(1)
    assert filled(warm, every) == every, warm.log.read_text()[-3000:]
    time.sleep(8)  # well past the idle timeout: kernels kept ready for visitors are not culled
    assert not re.search(r"Culling '\w+' kernel", warm.log.read_text())
    # Rendered from a kernel that already ran the app, the page is quick; a loaded 2-core VM once took over a minute.
    status, _, body = http(warm.url + "aiplatform/apps/voila/render/status.ipynb", token=warm.token, timeout=180)
    assert status == 200 and b"Platform status" in body  # rendered when the kernel was preheated
    assert "Using pre-heated kernel" in warm.log.read_text()
    status, _, body = http(warm.url + "aiplatform/apps/voila/render/backtest_lab.ipynb", token=warm.token, timeout=180)
    assert status == 200 and b"Backtest Lab" in body and b"There was an error when executing cell" not in body  # warm() ran

def kernel_of(page: bytes) -> str: return re.search(rb'"kernelId": "([0-9a-f-]{36})"', page)[1].decode()

def test_a_kernel_waiting_in_the_pool_past_the_idle_timeout_is_still_there_for_the_next_visitor(warm):
    page = lambda: http(warm.url + "aiplatform/apps/voila/render/code_generator.ipynb", token=warm.token)[2]
    page()  # takes the pool's kernel; another one is started for the next visitor
    time.sleep(15)  # five idle timeouts
    kernel = kernel_of(page())  # waited 15 s in the pool: handed out now, it must not be culled before the page connects
    time.sleep(1.5)  # a cull pass (every second here) after the hand-out
    status, _, _ = http(warm.url + f"aiplatform/apps/api/kernels/{kernel}/channels", token=warm.token)
    assert status == 400, status  # it exists: only the WebSocket upgrade is missing (404 for a culled one)

def test_the_apps_server_takes_only_the_gateways_proxy(warm):
    direct = f"http://127.0.0.1:{warm.apps['port']}/aiplatform/apps/voila/render/index.ipynb"
    assert http(direct)[0] in (302, 403)
    assert http(direct + f"?token={warm.token}")[0] in (302, 403)  # the gateway's token is no key here
    assert http(direct, token=warm.token)[0] in (302, 403)
    assert http(direct.replace("voila/render/index.ipynb", ""), headers=warm.apps["request_headers_override"])[0] == 200
    assert http(warm.url + "aiplatform/apps/voila/render/index.ipynb")[0] == 302  # to the gateway's login

def test_the_apps_server_ends_with_the_gateway(tmp_path):
    gw = start_gateway(tmp_path)
    port = json.loads((gw.root/"data"/"jupyter_server_config.json").read_text())["ServerProxy"]["servers"]["aiplatform/apps"]["port"]
    assert http(f"http://127.0.0.1:{port}/aiplatform/apps/")[0] in (302, 403)
    os.kill(gw.proc.pid, signal.SIGKILL)  # the gateway alone, as a crash would: its apps' server must follow
    gw.proc.wait(30)
    end = time.monotonic() + 20
    while time.monotonic() < end:
        try: http(f"http://127.0.0.1:{port}/aiplatform/apps/")
        except OSError: return
        time.sleep(0.3)
    os.killpg(gw.proc.pid, signal.SIGTERM)
    pytest.fail(f"the apps' server on port {port} outlived the gateway")

def test_browsers_keep_what_cannot_change_and_pages_load_no_extension_they_do_not_use(warm):
    import plotly, sys
    from pathlib import Path
    from aiplatform.platform.figures import PLOTLY_URL, plotly_bundle
    status, headers, body = http(warm.url + PLOTLY_URL + f"?v={plotly.__version__}")
    assert status == 200 and "max-age=" in headers["Cache-Control"] and body == plotly_bundle().read_bytes()
    for other in ("plotly.min.js", "..%2F__init__.py", "%2E%2E/__init__.py"):
        assert http(warm.url + PLOTLY_URL.replace("widgetbundle.js", other))[0] in (403, 404), other
    manager = "@jupyter-widgets/jupyterlab-manager/static/"
    entry = next((Path(sys.prefix)/"share/jupyter/labextensions"/manager).glob("remoteEntry.*.js")).name
    status, headers, _ = http(warm.url + f"aiplatform/apps/voila/labextensions/{manager}{entry}?v=1", token=warm.token)
    assert status == 200 and "immutable" in headers["Cache-Control"]
    status, _, page = http(warm.url + "aiplatform/apps/voila/render/index.ipynb", token=warm.token)
    assert b"@jupyter-widgets/jupyterlab-manager" in page and b"jupyterlab-plotly" not in page
