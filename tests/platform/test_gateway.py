"The Jupyter gateway started by `aiplatform serve`: its API behind Jupyter's login, and services proxied at /aiplatform/<name>/."
from conftest import cli, http, standalone_echo

def test_health_needs_no_login_and_says_little(gateway):
    status, _, body = http(gateway.url + "aiplatform/api/health")
    assert status == 200 and body == {"status": "ok", "version": body["version"]}

def test_api_needs_jupyter_login(gateway):
    for path in ("aiplatform/api/services", "aiplatform/api/me"):
        assert http(gateway.url + path)[0] == 403
        assert http(gateway.url + path, token="wrong")[0] == 403
        assert http(gateway.url + path, token=gateway.token)[0] == 200

def test_me_is_jupyters_identity(gateway):
    status, _, body = http(gateway.url + "aiplatform/api/me", token=gateway.token)
    assert status == 200 and set(body) == {"username", "name", "platform_user"} and body["username"]

def test_services_lists_the_registered_test_service_healthy(gateway):
    status, _, body = http(gateway.url + "aiplatform/api/services", token=gateway.token)
    [echo] = [s for s in body["services"] if s["name"] == "echo"]
    assert status == 200 and echo["path"] == "aiplatform/echo/" and echo["ok"] is True, echo

def test_proxied_service_answers_behind_the_login(gateway):
    base = gateway.url + "aiplatform/echo/"
    status, _, body = http(base + "health", token=gateway.token)
    assert status == 200 and body["service"] == "echo"
    status, _, body = http(base + "echo", token=gateway.token, data=b'{"n": 1}', headers={"Content-Type": "application/json"})
    assert (status, body) == (200, {"echo": {"n": 1}})
    status, _, body = http(base + "echo", token=gateway.token, data=b"not json")
    assert status == 400 and body["error"].startswith("request body: not JSON")
    assert http(base + "health")[0] in (302, 403)  # no login: sent to the login page, never to the service
    status, _, body = http(gateway.url + "server-proxy/servers-info", token=gateway.token)
    [entry] = [s for s in body["server_processes"] if s["name"] == "aiplatform/echo"]
    assert entry["launcher_entry"]["title"] == "Echo" and entry["launcher_entry"]["path_info"] == "aiplatform/echo/"

def test_service_runs_standalone_and_checks_api_keys(env):
    with standalone_echo(env, "ada", "analyst") as (url, key):
        assert http(url + "whoami", headers={"Authorization": f"Bearer {key}"})[2] == {"user": "ada"}
        status, headers, body = http(url + "whoami")
        assert status == 401 and headers["WWW-Authenticate"].startswith("Bearer") and "Bearer <API key>" in body["error"]
        assert http(url + "whoami", headers={"Authorization": f"Bearer {key}x"})[0] == 401
        status, _, body = http(url + "echo", data=b"x" * (1024 * 1024 + 10))
        assert (status, body["error"]) == (413, "request body: 1048586 bytes, at most 1048576 ([limits] request_kb)")
        assert http(url + "nope")[0] == 404

def test_unknown_service_is_refused(env):
    r = cli("service", "nope", "--port", "1", env=env)
    assert r.returncode == 2 and "service 'nope': not registered" in r.stderr
