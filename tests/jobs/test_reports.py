"Reports: `aiplatform report run` executes a template with papermill and writes an HTML page that shows its figures offline."
import pytest
from playwright.sync_api import sync_playwright
from conftest import REPO, clean_env, cli
from browser import CHROMIUM, FLAGS

@pytest.fixture(scope="module")
def env(tmp_path_factory):
    return clean_env(AIPLATFORM_PLATFORM__DATA_DIR=tmp_path_factory.mktemp("data"), AIPLATFORM_SERVER__NOTEBOOKS=REPO / "nbs")

@pytest.mark.browser
@pytest.mark.slow  # papermill runs the report: ~13 s
def test_report_run_renders_html_with_its_figures(env, tmp_path):
    r = cli("report", "run", "backtest_report", "-p", "symbol", "EURUSD", "-p", "grid", '{"fast": [5, 10], "slow": [50, 100]}',
            "-p", "splits", "2", "--out", str(tmp_path), env=env)
    assert r.returncode == 0, r.stderr
    page_path, notebook = (tmp_path / "backtest_report.html"), (tmp_path / "backtest_report.ipynb")
    assert r.stdout.splitlines()[:2] == [str(page_path), str(notebook)]
    text = page_path.read_text()
    assert "EURUSD" in text and "Walk-forward" in text and "import" not in text.split("<body")[1].split("plotly")[0]
    with sync_playwright() as p:  # offline: plotly.js is inside the page
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = browser.new_page()
        page.route("http*://**", lambda route: route.abort())
        page.goto(page_path.as_uri())
        page.wait_for_selector(".js-plotly-plot .heatmaplayer", state="attached")
        assert page.locator(".js-plotly-plot").count() == 2
        browser.close()

def test_report_list_names_the_parameters(env):
    r = cli("report", "list", env=env)
    assert r.returncode == 0 and r.stdout.startswith("backtest_report") and "symbol, strategy, grid" in r.stdout

@pytest.mark.parametrize("args, message", [
    (["-p", "colour", "red"], "parameter 'colour': report 'backtest_report' has symbol"),
    (["-p", "splits", "__import__('os').system('id')"], "parameter splits = "),
    (["-p", "symbol", "NOPE"], "cell 3 failed with NotFound: bars 'NOPE': not in the store"),
])
def test_bad_parameters_are_named(env, tmp_path, args, message):
    r = cli("report", "run", "backtest_report", *args, "--out", str(tmp_path), env=env)
    assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr

def test_unknown_report(env):
    r = cli("report", "run", "nope", env=env)
    assert r.returncode == 2 and "report 'nope': no template (reports: backtest_report, bot_session, documents, image_folder, property, tabular_training)" in r.stderr
