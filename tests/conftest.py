"Shared fixtures: a clean platform environment, the `aiplatform` command, and a real Jupyter gateway."
import json, os, secrets, signal, socket, subprocess, sys, time, urllib.error, urllib.request
from http.client import HTTPException
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
import pytest

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
PLUGINS = Path(__file__).parent/"plugins"
pytest_plugins = ["database"]  # its fixtures: `url` (each test's SQLite and PostgreSQL database) and `postgres`

PORTS = range(20_000, 32_000)  # below the system's ephemeral ports (32768 and up), where the servers under test pick theirs
_given = set()

def free_port() -> int:
    """A loopback port free now and given to no other test of this run. A port is often bound only later (a service the
    gateway starts on first use): drawn by the system (`bind` to 0), another xdist worker could get it meanwhile. So each
    worker draws from its own share of `PORTS` (a restarted worker, gw2 of 2, shares gw0's), never twice, beginning
    anywhere in it: another run on this host begins elsewhere."""
    workers, worker = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", 1)), os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    share = len(PORTS) // workers
    first, begin = PORTS.start + share * (int(worker[2:] or 0) % workers), secrets.randbelow(share)
    for k in range(share):
        port = first + (begin + k) % share
        if port in _given: continue
        with socket.socket() as s:
            try: s.bind(("127.0.0.1", port))
            except OSError: continue
        _given.add(port)
        return port
    raise RuntimeError(f"no free port left in {first} to {first + share - 1}")

def clean_env(**extra) -> dict:
    """The test process's environment without any AIPLATFORM_ variable, plus `extra`; the user's cache of derived files (the
    encoder's int8 export) kept where it is when `extra` moves HOME."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIPLATFORM_")}
    env.setdefault("XDG_CACHE_HOME", str(Path.home()/".cache"))
    return env | {k: str(v) for k, v in extra.items()}

def cli(*args, env, stdin=None) -> subprocess.CompletedProcess:
    "Run `aiplatform ARGS` and return the finished process."
    return subprocess.run([str(BIN/"aiplatform"), *map(str, args)], env=env, input=stdin, capture_output=True, text=True, timeout=120)

def http(url, token=None, data=None, headers=None, timeout=60):
    "Status, headers and body (JSON when it parses) of one request; never raises for an HTTP status."
    headers = dict(headers or {})
    if token: headers["Authorization"] = f"token {token}"
    req = urllib.request.Request(url, data=data, headers=headers)
    opener = urllib.request.build_opener(NoRedirect)
    try: r = opener.open(req, timeout=timeout)
    except urllib.error.HTTPError as e: r = e
    body = r.read()
    try: body = json.loads(body)
    except ValueError: pass
    return r.status if hasattr(r, "status") else r.code, r.headers, body

class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs): return None

class PortTaken(ConnectionError):
    "What answered on the port is not HTTP: another program took the free port first (tests run side by side)."

def wait_for(url, proc, timeout=90):
    "Wait until `url` answers 200, failing early if `proc` dies or the port turns out to be another program's."
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None: raise RuntimeError(f"process exited with {proc.returncode}")
        try:
            if http(url)[0] == 200: return
        except HTTPException as e: raise PortTaken(f"{url}: not an HTTP server ({e!r})") from None
        except OSError: pass
        time.sleep(0.3)
    raise TimeoutError(url)

@pytest.fixture
def env(tmp_path):
    "An environment whose data folder is a fresh temporary one and that reads no settings file."
    return clean_env(AIPLATFORM_PLATFORM__DATA_DIR=tmp_path/"data", HOME=tmp_path)

@contextmanager
def standalone_echo(env, username, role):
    "The echo test tool's service run on its own (`aiplatform service echo`): its URL, and an API key of a new `role` user."
    assert cli("users", "add", username, "--role", role, env=env).returncode == 0
    key = cli("users", "key", username, env=env).stdout.strip()
    port = free_port()
    proc = subprocess.Popen([str(BIN/"aiplatform"), "service", "echo", "--port", str(port)], env=env | {"PYTHONPATH": str(PLUGINS)},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}/"
        wait_for(url + "health", proc, timeout=30)
        yield url, key
    finally:
        proc.terminate(); proc.wait(10)

def wait_for_apps(config, proc, timeout=90):
    "Wait until the apps' Voilà server that `serve` started (its port and token are in the gateway's `config`) answers."
    apps = json.loads(config.read_text())["ServerProxy"]["servers"]["aiplatform/apps"]
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None: raise RuntimeError(f"process exited with {proc.returncode}")
        try:
            if http(f"http://127.0.0.1:{apps['port']}/aiplatform/apps/", headers=apps["request_headers_override"])[0] == 200: return
        except OSError: pass
        time.sleep(0.3)
    raise TimeoutError("the apps' Voila server")

def transitions(cluster) -> list:
    """The (key, start, finish) of each task transition `cluster`'s scheduler logged, read in the scheduler's own loop:
    its log is a deque that loop writes, and reading it from the test's thread may meet it mid-change."""
    from distributed import Client
    with Client(cluster) as client:
        return client.run_on_scheduler(lambda dask_scheduler: [(str(t[0]), t[1], t[2]) for t in dask_scheduler.transition_log])

GATEWAYS = []  # every gateway this process started: the end of its log goes with a test failing while it wrote there

def start_gateway(root, server="", sections=""):
    """Start `aiplatform serve` on a free port with its data in `root`, the echo test plugin installed, `server` settings lines
    (no preheated app kernels and no background warm unless they say so) and more `sections`; on another port if another
    program took that one between its choice and the gateway's start."""
    if "app_kernels" not in server: server = "app_kernels = 0\n" + server
    if "warm" not in server: server = "warm = false\n" + server  # `make` compiled this source tree's kernels: no second process to check
    for tool in ("ml", "resume"):  # services the proxy starts on a fixed port: a free one, or two gateways side by side would share it
        if f"[{tool}]" not in sections: sections += f"[{tool}]\nport = {free_port()}\n"
    env = clean_env(AIPLATFORM_SETTINGS=root/"settings.ini", PYTHONPATH=PLUGINS, JUPYTER_CONFIG_DIR=root/"jupyter",
                    JUPYTER_RUNTIME_DIR=root/"runtime", HOME=root)
    for attempt in range(3):
        port = free_port()
        (root/"settings.ini").write_text(f"[platform]\ndata_dir = data\n[server]\nport = {port}\nnotebooks = data\n{server}"
                                         f"[services]\nhealth_timeout = 30\n{sections}")
        with open(root/"server.log", "w") as log:
            proc = subprocess.Popen([str(BIN/"aiplatform"), "serve"], env=env, stdout=log, stderr=subprocess.STDOUT,
                                    start_new_session=True)
        url = f"http://127.0.0.1:{port}/"
        try:
            wait_for(url + "aiplatform/api/health", proc)
            wait_for_apps(root/"data"/"jupyter_server_config.json", proc)
            break
        except Exception as e:
            said = (root/"server.log").read_text()
            taken = isinstance(e, PortTaken) or "already in use" in said
            if not taken or attempt == 2: raise RuntimeError(said) from e
            if proc.poll() is None: os.killpg(proc.pid, signal.SIGTERM); proc.wait(30)
    token_file = root/"data"/"jupyter_token"
    gw = SimpleNamespace(url=url, token=token_file.read_text().strip() if token_file.exists() else None, root=root,
                         env=env, proc=proc, log=root/"server.log")
    GATEWAYS.append(gw)
    return gw

def stop_gateway(gw):
    os.killpg(gw.proc.pid, signal.SIGTERM)
    gw.proc.wait(30)

@pytest.fixture(scope="session")
def gateway(tmp_path_factory):
    "A Jupyter gateway started by `aiplatform serve` with token login; its trading service (started by the desk) on a free port; tables past 500 rows trained as jobs."
    port = free_port()
    gw = start_gateway(tmp_path_factory.mktemp("gateway"), sections=f"[trading]\nport = {port}\nsymbols = DEMO\nprice_band_pct = 0\n"
                                                                  f"[ml]\nport = {free_port()}\njob_rows = 500\n")
    gw.trading = f"http://127.0.0.1:{port}/"
    yield gw
    stop_gateway(gw)

@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    "A failure's report keeps the host's state then, what its pages saw go wrong (`browser.watch`) and the end of each gateway log written meanwhile."
    report = (yield).get_result()
    if not report.failed: return
    available = next(int(line.split()[1]) >> 10 for line in open("/proc/meminfo") if line.startswith("MemAvailable"))
    told = [f"memory available {available} MiB, load {os.getloadavg()[0]:.1f}, {sum(d.isdigit() for d in os.listdir('/proc'))} processes"]
    if call.excinfo and (entry := next((e for e in reversed(call.excinfo.traceback) if e.path == item.path), None)):
        told.insert(0, f"at line {entry.lineno + 1}: {str(entry.statement).strip()[:200]} ({call.excinfo.typename})")
    for value in getattr(item, "funcargs", {}).values():
        for page in value if isinstance(value, tuple) else (value,):
            if seen := getattr(page, "aip_seen", None): told += ["its page saw:", *seen[-10:]]
    for gw in GATEWAYS:
        if gw.log.exists() and gw.log.stat().st_mtime >= call.start:
            told += [f"{gw.log}, its last lines:", *(line[:240] for line in gw.log.read_text(errors="replace").splitlines()[-15:])]
    report.user_properties.append(("at the failure", "\n".join(told)))

def pytest_terminal_summary(terminalreporter):
    "After the failures, the state each left (`pytest_runtest_makereport`): short enough to stay in the tail of a CI log."
    for report in terminalreporter.stats.get("failed", []):
        for name, text in report.user_properties:
            if name == "at the failure": terminalreporter.write_sep("-", f"{report.nodeid} ({report.when})"), terminalreporter.write_line(text)
