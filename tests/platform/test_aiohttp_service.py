"""A service written with aiohttp, run as `aiplatform service` runs one: its own process, `/health` open, its routes
behind an API key, errors as the platform's JSON, its requests in its `/metrics`."""
import os, signal, subprocess, sys, textwrap
from conftest import clean_env, free_port, http, wait_for
from aiplatform.core import load_settings
from aiplatform.platform.auth import add_user, create_key

SERVICE = textwrap.dedent("""
    import sys
    from aiohttp import web
    from aiplatform.core import get_settings
    from aiplatform.platform import services
    from aiplatform.platform.registry import Service

    async def whoami(request):
        return web.json_response({"user": (await services.caller(request, "trader")).username})

    def make_app(settings): return services.aiohttp_service("demo_aio", [web.get("/whoami", whoami)], settings)

    sys.modules["demo_aio"] = sys.modules[__name__]
    services.get_service = lambda name: Service(name, "Demo", "An aiohttp service.", "demo_aio:make_app")
    services.run_service("demo_aio", int(sys.argv[1]), settings=get_settings())
""")

def test_an_aiohttp_service_runs_as_its_own_process(tmp_path):
    settings = load_settings(env={}, platform={"data_dir": tmp_path})
    add_user("tess", "trader", settings=settings)
    key = create_key("tess", settings=settings)
    (tmp_path/"service.py").write_text(SERVICE)
    port = free_port()
    proc = subprocess.Popen([sys.executable, tmp_path/"service.py", str(port)], env=clean_env(AIPLATFORM_PLATFORM__DATA_DIR=tmp_path),
                            start_new_session=True)
    try:
        url = f"http://127.0.0.1:{port}/"
        wait_for(url + "health", proc, timeout=60)
        assert http(url + "whoami", token=None, headers={"Authorization": f"Bearer {key}"})[::2] == (200, {"user": "tess"})
        status, headers, body = http(url + "whoami")
        assert (status, body, headers["WWW-Authenticate"]) == (401, {"error": "Authorization header: expected 'Bearer <API key>'", "status": 401},
                                                              'Bearer realm="aiplatform"')
        assert http(url + "orders/7")[::2] == (404, {"error": "path '/orders/7': not found", "status": 404})
        status, _, text = http(url + "metrics", headers={"Authorization": f"Bearer {key}"})
        assert status == 200 and 'route="/whoami"' in text.decode() and 'route="(unmatched)"' in text.decode()
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(10)
