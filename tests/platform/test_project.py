"Project conformance: environment.yml matches pyproject, every service has its proxy entry, README matches the index notebook."
import re, subprocess, sys, tomllib
from importlib.metadata import entry_points
from packaging.requirements import Requirement
from conftest import REPO

def _canon(name): return re.sub(r"[-_.]+", "-", name).lower()

def test_environment_yml_lists_pyprojects_dependencies():
    project = tomllib.loads((REPO/"pyproject.toml").read_text())["project"]
    wanted = {}
    for spec in project["dependencies"] + project["optional-dependencies"]["dev"]:
        req = Requirement(spec)
        wanted[_canon(req.name)] = str(req.specifier)
    conda = {}
    for line in (REPO/"environment.yml").read_text().split("dependencies:")[1].splitlines():
        m = re.fullmatch(r"\s+- ([A-Za-z0-9_.-]+)(.*)", line)
        if m and m[1] not in ("python", "pip"): conda[_canon(m[1])] = m[2].strip()
    assert conda == wanted

def test_every_service_has_its_proxy_entry():
    project = tomllib.loads((REPO/"pyproject.toml").read_text())["project"]["entry-points"]
    services = project.get("aiplatform.platform.services", {})
    proxies = project.get("jupyter_serverproxy_servers", {})
    assert proxies == {f"aiplatform/{name}": f"aiplatform.platform.services:proxy.{name}" for name in services}

def test_every_app_has_its_notebook():
    for ep in entry_points(group="aiplatform.apps"):
        nb = REPO/"nbs"/"apps"/f"{ep.name}.ipynb"
        assert nb.is_file() and ep.load().name == ep.name

def test_readme_is_the_index_notebook():
    md = subprocess.run([sys.executable, "-m", "nbconvert", "--to", "markdown", "--stdout", str(REPO/"nbs"/"index.ipynb")],
                        capture_output=True, text=True, check=True).stdout
    assert (REPO/"README.md").read_text().strip() == md.strip(), "regenerate: jupyter nbconvert --to markdown --stdout nbs/index.ipynb > README.md"
