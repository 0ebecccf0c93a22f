"""A wheel of the package, installed in a fresh virtual environment, serves the gallery and a tool's app and runs a
report: the apps' notebooks come from the registry and the report templates from the package, not from this source
tree (every app is rendered from the source tree by tests/platform/test_apps.py)."""
import os, signal, subprocess, sys, sysconfig, time
from pathlib import Path
import pytest
from conftest import REPO, clean_env, free_port, http, wait_for, wait_for_apps

pytestmark = pytest.mark.slow

@pytest.fixture(scope="module")
def venv(tmp_path_factory):
    "A fresh venv holding only the wheel; the dependencies are read from the test's own environment."
    root = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", root/"dist", REPO], check=True, timeout=600)
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", root/"venv"], check=True, timeout=120)
    site = next((root/"venv"/"lib").glob("python3*/site-packages"))
    (site/"dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")  # after the venv's own: the wheel wins
    wheel = next((root/"dist").glob("aiplatform-*.whl"))
    subprocess.run([sys.executable, "-m", "pip", "--python", root/"venv"/"bin"/"python", "install", "-q", "--no-deps", wheel],
                   check=True, timeout=300)
    return root

def test_the_installed_package_is_the_wheel(venv):
    out = subprocess.run([venv/"venv"/"bin"/"python", "-c", "import aiplatform; print(aiplatform.__file__)"], cwd=venv,
                         capture_output=True, text=True, check=True, env=clean_env())
    assert out.stdout.startswith(str(venv/"venv")), out.stdout

def test_the_wheel_serves_the_gallery_and_an_app_and_runs_a_report(venv):
    port, root = free_port(), venv/"site"
    root.mkdir()
    (root/"settings.ini").write_text(f"[platform]\ndata_dir = data\n[server]\nport = {port}\napp_kernels = 0\nwarm = false\n")
    env = clean_env(AIPLATFORM_SETTINGS=root/"settings.ini", HOME=root, JUPYTER_CONFIG_DIR=root/"jupyter",
                    JUPYTER_RUNTIME_DIR=root/"runtime", PATH=f"{venv/'venv'/'bin'}:{os.environ['PATH']}",
                    JUPYTER_PATH=Path(sys.prefix)/"share"/"jupyter")  # the dependencies' data files (Voilà's templates)
    with open(root/"server.log", "w") as log:
        proc = subprocess.Popen([venv/"venv"/"bin"/"aiplatform", "serve"], cwd=root, env=env, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        url = f"http://127.0.0.1:{port}/"
        wait_for(url + "aiplatform/api/health", proc, timeout=180)
        wait_for_apps(root/"data"/"jupyter_server_config.json", proc)
        token = (root/"data"/"jupyter_token").read_text().strip()
        for app in ("index", "backtest_lab"):  # the gallery, and an app of a tool's package
            status, _, body = http(url + f"aiplatform/apps/voila/render/{app}.ipynb", token=token)
            assert status == 200 and b"There was an error when executing cell" not in body, (app, status, body[-2000:])
        out = subprocess.run([venv/"venv"/"bin"/"aiplatform", "report", "list"], cwd=root, env=env, capture_output=True,
                             text=True, timeout=120)
        assert out.stdout.startswith("backtest_report") and "\nproperty " in out.stdout, out.stderr
        # A report that compiles nothing: the wheel's modules lie at a new path, so each Numba function would compile cold
        # (the backtest report's, 28 s).
        out = subprocess.run([venv/"venv"/"bin"/"aiplatform", "report", "run", "property", "-p", "lotsize", "6000"],
                             cwd=root, env=env, capture_output=True, text=True, timeout=600)
        assert out.returncode == 0 and Path(out.stdout.splitlines()[0]).is_file(), out.stderr
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)
        time.sleep(0.5)
