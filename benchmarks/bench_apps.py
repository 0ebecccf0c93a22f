"""Apps in headless Chromium: how long each app takes to appear, cold and warm, and how long the Backtest Lab's
first default sweep takes to reach the screen after the click.

Ours: the apps' own Voilà server (`aiplatform apps`, started by `aiplatform serve`) with `[server] app_kernels = 1`
kernel per app preheated, behind the gateway at `/aiplatform/apps/`. The peer, in the same run: Voilà's server
extension on a plain Jupyter server over the same apps folder, at `/voila/render/apps/` (how the apps were served
before, inside the gateway, which no longer mounts it: a kernel started and the notebook run at each page view). Cold: the first view after `aiplatform serve` answers (ours includes waiting
for its pool); warm: later views, ours once the pool has refilled. A render counts until the app's title (the
gallery's first card) is visible. Medians are quoted.

Run: `.venv/bin/python benchmarks/bench_apps.py` (about 6 minutes here). `--quick` (run by `make test`): the status
app only, one warm view each, no sweep. Ends with one JSON line.
"""
import argparse, json, os, platform, re, shutil, signal, socket, statistics, subprocess, sys, tempfile, time, urllib.request
from pathlib import Path
from playwright.sync_api import expect, sync_playwright

BIN = Path(sys.executable).parent
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-dev-shm-usage"]
TITLES = {"index": None, "status": "Platform status", "backtest_lab": "Backtest Lab", "code_generator": "Code Generator"}

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]

def start(root: Path, idle: int, warm: bool, only=None):
    "`aiplatform serve` in `root`, preheating one kernel per app (or only for the notebooks named in `only`), culling kernels idle `idle` seconds; its URL, token, process and log."
    port = free_port()
    if only:  # --quick: the other apps' kernels would only compete with the views it checks
        (root/"jupyter").mkdir()
        preheated = "|".join(map(re.escape, only))
        (root/"jupyter"/"voila.json").write_text(json.dumps({"PlatformKernelManager": {"preheat_denylist": [rf"^(?!(.*/)?({preheated})\.ipynb$)"]}}))
    (root/"settings.ini").write_text(f"[platform]\ndata_dir = data\n[server]\nport = {port}\nnotebooks = data\n"
                                     f"app_kernels = 1\nkernel_idle_timeout = {idle}\nmax_kernels = 64\nwarm = {str(warm).lower()}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIPLATFORM_")} | dict(
        AIPLATFORM_SETTINGS=str(root/"settings.ini"), HOME=str(root), JUPYTER_CONFIG_DIR=str(root/"jupyter"),
        JUPYTER_RUNTIME_DIR=str(root/"runtime"))
    with open(root/"server.log", "w") as log:
        proc = subprocess.Popen([str(BIN/"aiplatform"), "serve"], env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}/"
    end = time.monotonic() + 180
    while True:
        try:
            with urllib.request.urlopen(url + "aiplatform/api/health", timeout=2): break
        except OSError:
            if proc.poll() is not None or time.monotonic() > end:
                os.killpg(proc.pid, signal.SIGTERM)
                raise RuntimeError(f"the gateway did not start:\n{(root/'server.log').read_text()[-3000:]}")
            time.sleep(0.2)
    return url, (root/"data"/"jupyter_token").read_text().strip(), proc, root/"server.log", env

def start_peer(root: Path, token: str, env: dict, idle: int):
    "A plain Jupyter server with Voilà's server extension over the gateway's data folder (the apps' notebooks in `apps/`); its URL and process."
    port = free_port()
    argv = [sys.executable, "-m", "jupyter_server", f"--port={port}", "--ServerApp.ip=127.0.0.1", f"--ServerApp.root_dir={root/'data'}",
            f"--IdentityProvider.token={token}", "--ServerApp.open_browser=False", f"--ServerApp.allow_root={os.geteuid() == 0}",
            f"--MappingKernelManager.cull_idle_timeout={idle}", "--MappingKernelManager.cull_interval=5", "--MappingKernelManager.cull_connected=False"]
    with open(root/"peer.log", "w") as log:
        proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url, end = f"http://127.0.0.1:{port}/", time.monotonic() + 120
    while True:
        try:
            with urllib.request.urlopen(url + f"voila/render/apps/index.ipynb?token={token}", timeout=60): return url, proc
        except OSError:
            if proc.poll() is not None or time.monotonic() > end:
                os.killpg(proc.pid, signal.SIGTERM)
                raise RuntimeError(f"the peer did not start:\n{(root/'peer.log').read_text()[-3000:]}")
            time.sleep(0.5)

READY = {"backtest_lab": "Backtest Lab warmed in"}  # apps whose preheated kernel says when it has done its extra work

def pools_filled(log: Path, app: str) -> int:
    "How many kernels for `app` have been made ready so far, by the server's log."
    return log.read_text().count(READY.get(app, f"Kernel pool of {app}.ipynb is filled"))

def view(browser, url: str, app: str) -> float:
    "Seconds from asking for the page to the app's title on screen."
    page = browser.new_page()
    page.set_default_timeout(180_000)
    start = time.perf_counter()
    page.goto(url)
    if TITLES[app] is None: expect(page.locator(".aip-card").first).to_be_visible(timeout=180_000)
    else: expect(page.get_by_text(TITLES[app], exact=True)).to_be_visible(timeout=180_000)
    seconds = time.perf_counter() - start
    page.close()
    return seconds

def first_sweep(browser, url: str) -> float:
    "Seconds from the click on Run sweep (the defaults) to the heatmap on screen, in a page just opened."
    page = browser.new_page()
    page.set_default_timeout(180_000)
    page.goto(url)
    expect(page.get_by_text("Backtest Lab", exact=True)).to_be_visible(timeout=180_000)
    start = time.perf_counter()
    page.get_by_role("button", name="Run sweep").click()
    expect(page.locator(".js-plotly-plot .heatmaplayer").first).to_be_attached(timeout=180_000)
    seconds = time.perf_counter() - start
    page.close()
    return seconds

def wait_refill(log: Path, app: str, seen: int, limit=180):
    "Wait until the app's pool has been filled more than `seen` times, and its notebook has run: the last view's kernel is replaced."
    end = time.monotonic() + limit
    while pools_filled(log, app) <= seen:
        if time.monotonic() > end: raise TimeoutError(f"{app}: no kernel made ready in {limit} s")
        time.sleep(0.2)
    time.sleep(3)  # "filled" is said when the kernel starts the notebook, not when it has run it

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="the status app only, one warm view each, no sweep")
    args = ap.parse_args()
    apps, warm_n = (["status"], 1) if args.quick else (list(TITLES), 3)
    # The full run's views leave dozens of kernels, culled as it goes; a quick run's four wait (on a loaded machine), and
    # it skips `aiplatform serve`'s background warm-up (make has compiled the caches), which competes with the kernels.
    idle, warm = (600, False) if args.quick else (20, True)
    root = Path(tempfile.mkdtemp(prefix="bench-apps-"))
    url, token, proc, log, env = start(root, idle, warm, ["index", *apps] if args.quick else None)
    rows, peer_proc = {}, None
    try:
        peer_url, peer_proc = start_peer(root, token, env, idle)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS).new_context(viewport={"width": 1400, "height": 1000})
            login = browser.new_page()
            login.goto(url + f"aiplatform/apps/?token={token}")  # the gateway's login cookie, for every page after
            login.goto(peer_url + f"api/status?token={token}")  # and the peer's
            login.close()
            ours = lambda a: url + f"aiplatform/apps/voila/render/{a}.ipynb"
            peer = lambda a: peer_url + f"voila/render/apps/{a}.ipynb"
            seen = {}
            for app in apps:
                seen[app] = pools_filled(log, app)
                r = rows[app] = {"ours_cold": view(browser, ours(app), app), "peer_cold": view(browser, peer(app), app)}
                ours_warm, peer_warm = [], []
                for _ in range(warm_n):
                    wait_refill(log, app, seen[app])
                    seen[app] = pools_filled(log, app)
                    ours_warm.append(view(browser, ours(app), app))
                    peer_warm.append(view(browser, peer(app), app))
                r["ours_warm"], r["peer_warm"] = statistics.median(ours_warm), statistics.median(peer_warm)
            if not args.quick:
                wait_refill(log, "backtest_lab", seen["backtest_lab"])
                rows["sweep"] = {"ours": first_sweep(browser, ours("backtest_lab")), "peer": first_sweep(browser, peer("backtest_lab"))}
            browser.browser.close()
    except Exception:
        print(log.read_text()[-4000:], file=sys.stderr)  # what the server said, before its folder goes
        raise
    finally:
        for p in (proc, peer_proc):
            if p is not None: os.killpg(p.pid, signal.SIGTERM), p.wait(30)
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"{'app':<16}{'ours cold':>11}{'ours warm':>11}{'peer cold':>11}{'peer warm':>11}{'warm: peer/ours':>17}")
    for app in apps:
        r = rows[app]
        print(f"{app:<16}{r['ours_cold']:>10.2f}s{r['ours_warm']:>10.2f}s{r['peer_cold']:>10.2f}s{r['peer_warm']:>10.2f}s"
              f"{r['peer_warm'] / r['ours_warm']:>16.1f}x")
    if "sweep" in rows:
        s = rows["sweep"]
        print(f"Backtest Lab, first default sweep, click to heatmap: ours {s['ours']:.2f} s, peer {s['peer']:.2f} s "
              f"(peer/ours {s['peer'] / s['ours']:.1f}x)")
    result = {f"{app}_{k}_s": round(v, 3) for app in apps for k, v in rows[app].items()}
    if "sweep" in rows: result |= {"sweep_click_ours_s": round(rows["sweep"]["ours"], 3), "sweep_click_peer_s": round(rows["sweep"]["peer"], 3)}
    result["warm_render_max_s"] = round(max(rows[a]["ours_warm"] for a in apps), 3)
    print(json.dumps(result))
    shutil.rmtree(root, ignore_errors=True)

if __name__ == "__main__":
    main()
