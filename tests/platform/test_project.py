"Project conformance: environment.yml matches pyproject, the platform imports no tool, every app has its notebook, README matches the index notebook."
import ast, re, subprocess, sys, tomllib
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
        if m and m[1] not in ("python", "pip", "configurable-http-proxy"): conda[_canon(m[1])] = m[2].strip()  # the Hub's proxy: npm's, in the Makefile
    assert conda == wanted

def test_no_module_of_the_platform_imports_a_tool():
    "The platform finds tools through the registry only: no `aiplatform.platform` module imports a tool's package."
    tools = {p.name for p in (REPO/"aiplatform").iterdir() if p.is_dir() and (p/"__init__.py").exists()} - {"platform"}
    for module in (REPO/"aiplatform"/"platform").glob("*.py"):
        for node in ast.walk(ast.parse(module.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom):  # `from ..codegen import x`, and `from .. import codegen`
                names = [("." * node.level) + node.module] if node.module else [("." * node.level) + a.name for a in node.names]
            for name in names:
                parts = name.lstrip(".").split(".")
                top = parts[1] if parts[0] == "aiplatform" else parts[0] if name.startswith("..") else None
                assert top not in tools, f"{module.name} imports {name}"

def test_every_app_names_its_widget():
    from aiplatform.platform.registry import load, registered_apps
    for app in registered_apps(): assert callable(load(app.widget)), app

def test_readme_is_the_index_notebook():
    md = subprocess.run([sys.executable, "-m", "nbconvert", "--to", "markdown", "--stdout", str(REPO/"nbs"/"index.ipynb")],
                        capture_output=True, text=True, check=True).stdout
    assert (REPO/"README.md").read_text().strip() == md.strip(), "regenerate: jupyter nbconvert --to markdown --stdout nbs/index.ipynb > README.md"
