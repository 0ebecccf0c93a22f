"""JupyterHub in front of the platform (`aiplatform hub`): from login to a rendered app, a shared service under many
users, and the memory of an idle user server.

Ours: a real Hub on this machine (SQLite, `[hub] app_kernels = 0`: no kernels kept ready, so every figure is a cold
start) running the one shared service it times. Login to app: a user posts the Hub's login form (their name and API
key), the Hub starts their server (`aiplatform singleuser`: the Jupyter server, the extension, the apps' Voilà), and
the timer stops when their gallery page comes back rendered (Voilà ran its notebook: the page ends with
`voila_finish`): 3 users one after another (1 with --quick), then 20 (1) logging in at once; p50 and p99. The peer, in
the same run: the same Hub starting JupyterHub's own `jupyterhub-singleuser` (JupyterLab, with the server extensions
installed here, no apps' Voilà), timed to its Lab page. A shared service: the 20 (1) users each asking the resume
service for their list of resumes, one request after another for 5 s (1 s), through the Hub's proxy with a Hub token;
the peer is the same requests sent straight to the service with an API key. Idle memory: the resident memory of each
user's processes (the server, the apps' Voilà, the gallery's kernel) once idle, median over users, beside the bare
server's.
Last line: a JSON object."""
import argparse, http.cookiejar, json, os, platform, secrets, signal, socket, statistics, subprocess, sys, tempfile, threading, time
import urllib.error, urllib.parse, urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace
import psutil
from timing import percentile

BIN = Path(sys.executable).parent

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]

def request(url, method="GET", data=None, headers=None, opener=None, timeout=120):
    "Status, final URL and body of one request; never raises for an HTTP status."
    req = urllib.request.Request(url, data=data, headers=headers or {}, method=method)
    try: r = (opener or urllib.request.build_opener()).open(req, timeout=timeout)
    except urllib.error.HTTPError as e: return e.code, url, e.read()
    return r.status, r.geturl(), r.read()

def start_hub(root: Path, names, peer: bool) -> SimpleNamespace:
    "A Hub on free ports with its data in `root`, platform users `names` with keys, and an admin token for its API."
    from aiplatform.core import load_settings
    from aiplatform.platform.auth import add_user, create_key
    from aiplatform.platform.hub import hub_services
    root.mkdir(parents=True)
    admin, port = secrets.token_hex(32), free_port()
    (root/"settings.ini").write_text(f"[platform]\ndata_dir = {root/'data'}\n[server]\napp_kernels = 0\nwarm = false\n"
                                     f"[hub]\nport = {port}\nconfig = {root/'extra.py'}\n"
                                     f"[resume]\nport = {free_port()}\nrate = 10000\n")  # timed here, not refused
    s = load_settings(root/"settings.ini", env={})
    kept = [svc for svc in hub_services(s) if svc["name"] in ("resume", "idle-culler")]  # the service timed here: no other to start
    extra = [f"c.JupyterHub.services = {kept!r} + [dict(name='bench', api_token={admin!r})]",
             "c.JupyterHub.load_roles.append(dict(name='bench', services=['bench'], scopes=['admin:users', 'admin:servers', 'tokens']))"]
    if peer: extra += [f"c.PlatformSpawner.cmd = [{str(BIN/'jupyterhub-singleuser')!r}]", "c.Spawner.default_url = '/lab'",
                       f"c.Spawner.args = {['--allow-root'] if os.geteuid() == 0 else []!r}"]
    (root/"extra.py").write_text("\n".join(extra) + "\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIPLATFORM_")} | {"AIPLATFORM_SETTINGS": str(root/"settings.ini")}
    subprocess.run([str(BIN/"aiplatform"), "init"], env=env, check=True, capture_output=True)
    keys = dict.fromkeys(names)
    for name in keys:
        add_user(name, settings=s)
        keys[name] = create_key(name, settings=s)
    log = open(root/"hub.log", "w")
    proc = subprocess.Popen([str(BIN/"aiplatform"), "hub"], env=env, cwd=root, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url, end = f"http://127.0.0.1:{port}/", time.monotonic() + 180
    while not _up(url):
        if proc.poll() is not None or time.monotonic() > end: raise RuntimeError((root/"hub.log").read_text()[-3000:])
        time.sleep(0.5)
    return SimpleNamespace(url=url, proc=proc, keys=keys, admin=admin, settings=s, root=root)

def _up(url) -> bool:
    try: return request(url + "hub/api/", timeout=5)[0] == 200
    except OSError: return False

def stop_hub(hub):
    os.killpg(hub.proc.pid, signal.SIGTERM)
    hub.proc.wait(120)

def login_to_page(hub, name, page) -> float:
    "Seconds from posting the login form as `name` to their `page` (below /user/<name>/) answering in full."
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    request(hub.url + "hub/login", opener=opener)
    xsrf = next(c.value for c in jar if c.name == "_xsrf")
    form = urllib.parse.urlencode({"_xsrf": xsrf, "username": name, "password": hub.keys[name]}).encode()
    start, target = time.perf_counter(), hub.url + f"user/{name}/{page}"
    request(hub.url + "hub/login", "POST", form, opener=opener)  # the Hub starts the server and shows its progress page
    while time.perf_counter() - start < 600:
        status, final, body = request(target, opener=opener)
        if status >= 500: raise RuntimeError(f"{name}: {status} from {final}; see {hub.root/'hub.log'}")
        if status == 200 and final.split("?")[0] == target and (b"window.voila_finish()" in body or page == "lab"): return time.perf_counter() - start
        time.sleep(0.25)
    raise TimeoutError(f"{name}: {target}")

def logins(hub, names, page) -> list:
    "Seconds from login to `page` for each of `names`, all logging in at once."
    with ThreadPoolExecutor(len(names)) as pool: return list(pool.map(lambda n: login_to_page(hub, n, page), names))

def idle_mb(hub, names) -> float:
    "The median over `names` of the resident memory of the processes their server runs (JUPYTERHUB_USER), in MB."
    mb = dict.fromkeys(names, 0.0)
    for p in psutil.process_iter():
        try:
            env = p.environ()
            if env.get("JUPYTERHUB_USER") in mb and env.get("AIPLATFORM_SETTINGS", str(hub.root/"settings.ini")) == str(hub.root/"settings.ini"):
                mb[env["JUPYTERHUB_USER"]] += p.memory_info().rss / 2**20
        except (psutil.NoSuchProcess, psutil.AccessDenied): pass
    return statistics.median(mb.values())

def service_latencies(hub, names, seconds, direct: bool) -> list:
    "Milliseconds of each request for the resume service's list, by every user at once for `seconds`: through the Hub with a Hub token, or `direct` with an API key."
    if direct: auth, base = {n: f"Bearer {hub.keys[n]}" for n in names}, f"http://127.0.0.1:{hub.settings.resume.port}/"
    else:
        auth = {n: "token " + json.loads(request(hub.url + f"hub/api/users/{n}/tokens", "POST", b'{"expires_in": 3600}',
                                                 {"Authorization": f"token {hub.admin}"})[2])["token"] for n in names}
        base = hub.url + "services/resume/"
    out, lock = [], threading.Lock()
    def client(name):
        headers, mine = {"Authorization": auth[name]}, []
        assert request(base + "resumes", headers=headers)[0] == 200  # the identity checked and cached before timing
        end = time.perf_counter() + seconds
        while (start := time.perf_counter()) < end:
            status, _, _ = request(base + "resumes", headers=headers)
            mine.append((time.perf_counter() - start) * 1e3)
            assert status == 200, status
        with lock: out.extend(mine)
    with ThreadPoolExecutor(len(names)) as pool: list(pool.map(client, names))
    return out

def run(solo: int, users: int, seconds: float, idle_s: float, folder: Path) -> dict:
    res, alone, together = {}, [f"solo{i}" for i in range(solo)], [f"user{i}" for i in range(users)]
    for peer in (False, True):
        hub = start_hub(folder/("peer" if peer else "ours"), alone + together, peer)
        page = "lab" if peer else "aiplatform/apps/voila/render/index.ipynb"
        try:
            first = [login_to_page(hub, name, page) for name in alone]  # one after another
            many = logins(hub, together, page)
            time.sleep(idle_s)
            mb = idle_mb(hub, alone + together)
            tag = "peer_" if peer else ""
            res |= {f"{tag}login_to_app_p50_s": round(statistics.median(first), 2), f"{tag}login_to_app_p50_s_{users}_users": round(statistics.median(many), 2),
                    f"{tag}login_to_app_p99_s_{users}_users": round(percentile(many, 0.99), 2), f"{tag}idle_user_mb": round(mb, 1)}
            if not peer:
                via_hub, direct = service_latencies(hub, together, seconds, False), service_latencies(hub, together, seconds, True)
                res |= {"service_p50_ms": round(percentile(via_hub, 0.5), 1), "service_p99_ms": round(percentile(via_hub, 0.99), 1),
                        "direct_p50_ms": round(percentile(direct, 0.5), 1), "direct_p99_ms": round(percentile(direct, 0.99), 1),
                        "service_requests": len(via_hub)}
        finally: stop_hub(hub)
    return res

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="1 user then 1 more, 1 s of service requests: checks the benchmark still runs")
    args = ap.parse_args()
    solo, users, seconds, idle_s = (1, 1, 1.0, 1.0) if args.quick else (3, 20, 5.0, 5.0)
    with tempfile.TemporaryDirectory() as folder: res = run(solo, users, seconds, idle_s, Path(folder))
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"login to a rendered app, 1 user, p50 of {solo}: ours {res['login_to_app_p50_s']:6.2f} s   bare Jupyter server (Lab page) "
          f"{res['peer_login_to_app_p50_s']:6.2f} s   ratio {res['login_to_app_p50_s'] / res['peer_login_to_app_p50_s']:.2f}")
    for q in ("p50", "p99"):
        ours, peer = res[f"login_to_app_{q}_s_{users}_users"], res[f"peer_login_to_app_{q}_s_{users}_users"]
        print(f"login to a rendered app, {users} at once, {q}: ours {ours:6.2f} s   bare Jupyter server (Lab page) {peer:6.2f} s   ratio {ours / peer:.2f}")
    print(f"resume service, {users} users for {seconds:g} s ({res['service_requests']} requests): through the Hub p50 {res['service_p50_ms']} ms, "
          f"p99 {res['service_p99_ms']} ms   straight to the service p50 {res['direct_p50_ms']} ms, p99 {res['direct_p99_ms']} ms   "
          f"p99 ratio {res['service_p99_ms'] / res['direct_p99_ms']:.2f}")
    print(f"idle user server: ours {res['idle_user_mb']} MB (the server, the apps' Voila, the gallery's kernel)   bare {res['peer_idle_user_mb']} MB   "
          f"ratio {res['idle_user_mb'] / res['peer_idle_user_mb']:.2f}")
    print(json.dumps(res))

if __name__ == "__main__":
    main()
