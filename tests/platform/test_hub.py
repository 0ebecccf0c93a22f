"A real JupyterHub in front of the platform (`aiplatform hub`): two users log in through Chromium, each to their own server and gallery; roles follow Hub groups; the shared services run once and know each user; PostgreSQL and a Dask cluster behind it all."
import json, os, secrets, signal, subprocess, sys, time
from types import SimpleNamespace
import psutil, pytest
from playwright.sync_api import expect, sync_playwright
from browser import CHROMIUM, FLAGS, told, watch
from conftest import BIN, clean_env, cli, free_port, transitions, wait_for

pytestmark = [pytest.mark.postgres, pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(600)]  # a Hub may start three times (120 s each) in the first test's setup

@pytest.fixture(scope="module")
def hub(tmp_path_factory, postgres):
    "`aiplatform hub` on free ports over PostgreSQL and a Dask cluster; alice (a trader) and bob (no group: a viewer) with keys; a test client of the Hub's API."
    from distributed import LocalCluster
    root, admin_token = tmp_path_factory.mktemp("hub"), secrets.token_hex(32)
    (root/"tester.py").write_text(  # `[hub] config`: loaded after the platform's, as a deployment's own would be
        f"c.JupyterHub.services.append(dict(name='tester', api_token={admin_token!r}))\n"
        "c.JupyterHub.load_roles.append(dict(name='tester', services=['tester'], scopes=['admin:users', 'admin:groups', 'admin:servers', 'tokens']))\n")
    cluster = LocalCluster(n_workers=1, threads_per_worker=2, processes=False, protocol="tcp", dashboard_address=None)
    env = clean_env(AIPLATFORM_SETTINGS=root/"settings.ini", HOME=root, JUPYTER_RUNTIME_DIR=root/"runtime")
    proc = None
    try:
        for attempt in range(3):  # a Hub that fails to start on a loaded host (a port another program took meanwhile, a slow proxy) starts again on other ports
            port = free_port()
            (root/"settings.ini").write_text(
                f"[platform]\ndata_dir = data\n[database]\nurl = {postgres}\n[server]\napp_kernels = 0\nwarm = false\n"
                f"[hub]\nport = {port}\nidentity_ttl = 1\nconfig = {root/'tester.py'}\n[jobs]\ndask_address = {cluster.scheduler_address}\n"
                + "".join(f"[{tool}]\nport = {free_port()}\n" for tool in ("trading", "ml", "resume")))
            with open(root/"hub.log", "w") as log:
                proc = subprocess.Popen([str(BIN/"aiplatform"), "hub"], env=env, cwd=root, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
            url = f"http://127.0.0.1:{port}/"
            try:
                wait_for(url + "hub/api/", proc, timeout=120)
                break
            except BaseException as e:  # the test's own timeout too: nothing of this attempt left running
                alive = proc.poll() is None
                stop_hub(proc, root)
                said = (root/"hub.log").read_text()
                print(f"attempt {attempt + 1}: {e!r}\n{said}", file=sys.stderr)
                if not isinstance(e, Exception): raise
                if attempt == 2:
                    raise RuntimeError(f"the Hub did not answer {url}hub/api/ ({'still running' if alive else 'it exited'}); "
                                       "its warnings and errors:\n" + hub_trouble(said)) from e
        keys = {}
        for name in ("alice", "bob"):
            assert cli("users", "add", name, env=env).returncode == 0
            keys[name] = cli("users", "key", name, env=env).stdout.strip()
        h = SimpleNamespace(url=url, env=env, root=root, proc=proc, keys=keys, admin=admin_token, cluster=cluster, data=root/"data")
        assert api(h, "POST", "users", {"usernames": ["alice", "bob"]})[0] == 201  # as an admin adds them in the Hub's admin page
        assert api(h, "POST", "groups/trader/users", {"users": ["alice"]})[0] == 200
        yield h
    finally:  # the Hub stops its services and the users' servers
        try:
            if proc is not None: stop_hub(proc, root)
        finally: cluster.close()

def stop_hub(proc, root):
    """Stop the Hub, then whatever it started that outlived it: its proxy, services and users' servers each run in a session of
    their own (found by the settings file in their environment, or their folder), and a Hub that fails to start leaves them running."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(180)
    except ProcessLookupError: pass
    except subprocess.TimeoutExpired: os.killpg(proc.pid, signal.SIGKILL)
    finally:
        for p in psutil.process_iter():
            try:
                if p.environ().get("AIPLATFORM_SETTINGS") == str(root/"settings.ini") or p.cwd().startswith(str(root) + os.sep): p.kill()
            except psutil.Error: pass
        (root/"data"/"hub"/"proxy.pid").unlink(missing_ok=True)  # the next Hub would stop whatever process has that number now

def hub_trouble(said: str) -> str:
    "The Hub's warning and error lines in its log `said`, each with what follows it up to the next line of the Hub's, and the proxy's errors; else its last 40 lines."
    lines, keep = [], False
    for line in said.splitlines():
        if line.startswith("[") and line[1:3] in ("D ", "I ", "W ", "E ", "C "): keep = line[1] in "WEC"
        elif "[ConfigProxy]" in line: keep = "error" in line and "404 GET" not in line and "custom error page" not in line
        if keep: lines.append(line)
    return "\n".join(lines or said.splitlines()[-40:])

def api(h, method, path, body=None):
    "The Hub's REST API as the test's admin service."
    data = None if body is None else json.dumps(body).encode()
    return http_method(h.url + "hub/api/" + path, method, data, {"Authorization": f"token {h.admin}"})

def http_method(url, method, data=None, headers=None):
    import urllib.request, urllib.error
    req = urllib.request.Request(url, data=data, headers=headers or {}, method=method)
    try: r = urllib.request.urlopen(req, timeout=60)
    except urllib.error.HTTPError as e: r = e
    body = r.read()
    try: body = json.loads(body)
    except ValueError: pass
    return r.status if hasattr(r, "status") else r.code, body

def start_server(h, name):
    "Start `name`'s server through the Hub's API and wait until it is ready."
    status, _ = api(h, "POST", f"users/{name}/server")
    assert status in (201, 202, 400), status  # 400: already running
    end = time.monotonic() + 120
    while time.monotonic() < end:
        status, user = api(h, "GET", f"users/{name}")
        if user.get("servers", {}).get("", {}).get("ready"): return
        time.sleep(0.5)
    raise TimeoutError(f"{name}'s server")

def user_token(h, name) -> str:
    status, body = api(h, "POST", f"users/{name}/tokens", {"note": "test", "expires_in": 3600})
    assert status == 201, body
    return body["token"]

def login(p, h, name, password):
    "A Chromium page logged in to the Hub as `name`."
    browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
    page = browser.new_context(viewport={"width": 1300, "height": 1000}).new_page()
    page.set_default_timeout(120_000)
    page.seen = watch(page)
    page.goto(h.url + "hub/login")
    page.fill("input[name=username]", name)
    page.fill("input[name=password]", password)
    page.click("input[type=submit], button[type=submit]")
    return page

def test_two_users_log_in_each_to_their_own_gallery_and_not_the_others(hub):
    with sync_playwright() as p:
        pages = {name: login(p, hub, name, hub.keys[name]) for name in ("alice", "bob")}
        for name, page in pages.items():
            page.wait_for_url(f"**/user/{name}/aiplatform/apps/voila/render/index.ipynb")
            expect(page.locator(".aip-who")).to_contain_text(f"{name} · {'trader' if name == 'alice' else 'viewer'}")
            expect(page.locator(".aip-card[data-app=trading_desk]")).to_be_visible()
        answer = pages["bob"].goto(hub.url + "user/alice/aiplatform/apps/voila/render/index.ipynb")
        assert answer.status == 403 and not pages["bob"].locator(".aip-card").count()
        wrong = login(p, hub, "alice", hub.keys["bob"])  # bob's key is not alice's password
        expect(wrong.get_by_text("Invalid username or password")).to_be_visible()
        alice = pages["alice"]  # an app that keeps a user's work: signed in as the Hub's user, no key asked
        alice.click(".aip-card[data-app=resume]")
        with told(alice, alice.seen): expect(alice.get_by_text("Signed in as alice.")).to_be_visible()
        expect(alice.get_by_placeholder("API key (aip_…) to save and open your resumes")).to_be_hidden()

def cookies_of(h, name):
    "A logged-in session of `name` (cookies through the Hub's OAuth) for plain HTTP requests."
    import http.cookiejar, urllib.request
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    opener.open(h.url + "hub/login", timeout=60).read()
    xsrf = next(c.value for c in jar if c.name == "_xsrf")
    form = urllib.parse.urlencode({"_xsrf": xsrf, "username": name, "password": h.keys[name]}).encode()
    opener.open(h.url + "hub/login", form, timeout=120).read()  # then the spawn and its OAuth, followed to the gallery
    return opener

def get(opener, url, method="GET", data=None):
    import urllib.error, urllib.request
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try: r = opener.open(req, timeout=60)
    except urllib.error.HTTPError as e: return e.code, e.read()
    return r.status, r.read()

def test_a_viewer_gets_the_apps_only_and_a_trader_gets_notebooks_without_the_data_folder(hub):
    start_server(hub, "alice"), start_server(hub, "bob")
    bob, alice = cookies_of(hub, "bob"), cookies_of(hub, "alice")
    base = hub.url + "user/bob/"
    assert get(bob, base + "aiplatform/apps/voila/render/index.ipynb")[0] == 200
    for path in ("lab", "api/kernels", "api/contents", "api/sessions", "api/terminals", "files/x.txt", "voila/render/x.ipynb"):
        assert get(bob, base + path)[0] in (403, 404), path
    assert get(bob, base + "api/kernels", "POST", b"{}")[0] in (403, 404)
    status, body = get(alice, hub.url + "user/alice/api/contents")
    assert status == 200 and get(alice, hub.url + "user/alice/lab")[0] == 200
    names = {item["name"] for item in json.loads(body)["content"]}
    assert not names & {"admin.key", "gateway.secret", "jupyter_token", "hub", "aiplatform.db"}, names
    for path in ("../admin.key", "../../data/admin.key", "..%2Fadmin.key"):
        assert get(alice, hub.url + "user/alice/api/contents/" + path)[0] in (400, 403, 404), path

def me(opener, h, name):
    return json.loads(get(opener, h.url + f"user/{name}/aiplatform/api/me")[1])["platform_user"]["role"]

def test_a_role_changed_in_the_hub_is_the_platforms(hub):
    start_server(hub, "bob")
    bob = cookies_of(hub, "bob")
    assert me(bob, hub, "bob") == "viewer" and get(bob, hub.url + "user/bob/api/contents")[0] == 403
    assert api(hub, "POST", "groups/analyst/users", {"users": ["bob"]})[0] == 200
    time.sleep(1.5)  # [hub] identity_ttl = 1
    assert me(bob, hub, "bob") == "analyst" and get(bob, hub.url + "user/bob/api/contents")[0] == 200
    assert cli("users", "list", env=hub.env).stdout.count("analyst") == 1
    assert api(hub, "DELETE", "groups/analyst/users", {"users": ["bob"]})[0] == 200
    time.sleep(1.5)
    assert me(bob, hub, "bob") == "viewer" and get(bob, hub.url + "user/bob/api/contents")[0] == 403

def test_the_shared_services_run_once_and_know_each_user(hub):
    tokens = {name: user_token(hub, name) for name in ("alice", "bob")}
    svc = lambda name, path, method="GET", body=None: http_method(hub.url + f"services/resume/{path}", method, body and json.dumps(body).encode(),
                                                                  {"Authorization": f"token {tokens[name]}", "Content-Type": "application/json"})
    resume = {"basics": {"name": "Alice Example"}}
    status, body = svc("alice", "resumes/cv", "PUT", {"resume": resume, "note": "first"})
    assert status == 200 and body["version"] == 1, body
    assert [r["name"] for r in svc("alice", "resumes")[1]["resumes"]] == ["cv"]
    assert svc("bob", "resumes")[1]["resumes"] == []
    assert svc("bob", "resumes/cv")[0] == 404
    assert http_method(hub.url + "services/resume/resumes", "GET", None, {"Authorization": "token nope"})[0] == 401
    status, body = http_method(hub.url + "services/resume/resumes", "GET", None, {"Authorization": f"Bearer {hub.keys['bob']}"})
    assert status == 200 and body["resumes"] == []  # a platform key as well
    assert len([line for line in subprocess.run(["pgrep", "-fa", "aiplatform service resume"], capture_output=True, text=True).stdout.splitlines()
                if str(hub.root) in open(f"/proc/{line.split()[0]}/environ", "rb").read().decode(errors="replace")]) == 1

def test_a_users_job_runs_on_the_dask_cluster_and_only_its_owner_sees_it(hub):
    from aiplatform.core import load_settings
    from aiplatform.jobs.runs import get_run, submit
    s = load_settings(hub.root/"settings.ini", env={"AIPLATFORM_PLATFORM__DATA_DIR": str(hub.data)})
    id = submit("property", {"lotsize": 6000}, user="alice", settings=s)
    end = time.monotonic() + 180
    while (run := get_run(id, settings=s)).status not in ("succeeded", "failed") and time.monotonic() < end: time.sleep(1)
    assert run.status == "succeeded", run.error
    assert any(f"aiplatform-run-{id}-" in key for key, *_ in transitions(hub.cluster))  # the Hub's scheduler sent it to the cluster
    start_server(hub, "alice"), start_server(hub, "bob")
    alice, bob = cookies_of(hub, "alice"), cookies_of(hub, "bob")
    page = f"aiplatform/api/jobs/runs/{id}/html"
    assert get(alice, hub.url + "user/alice/" + page)[0] == 200
    assert get(bob, hub.url + "user/bob/" + page)[0] == 404
