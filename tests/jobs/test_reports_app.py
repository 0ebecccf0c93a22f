"The Reports app under Voila in headless Chromium: a schedule previewed and saved, a run now followed to its page, opened from the history."
import re
import pytest
from playwright.sync_api import expect
from browser import app_page

pytestmark = pytest.mark.browser

expect.set_options(timeout=120_000)  # a backtest report runs in a fresh papermill kernel

@pytest.fixture(scope="module")
def page(gateway):
    with app_page(gateway, "reports", "Reports", timeout=120_000) as page: yield page

def test_a_report_is_scheduled_run_and_opened(page, gateway):
    page.get_by_label("symbol").fill("EURUSD")
    page.get_by_label("splits").fill("two")
    page.get_by_role("button", name="Run now").click()
    expect(page.locator(".aip-status")).to_contain_text("parameter splits = 'two': expected a value like its default 4")
    page.get_by_label("splits").fill("2")
    page.get_by_label("Cron").fill("0 6 * * mon-fri")
    page.get_by_label("Time zone").fill("Europe/London")
    expect(page.locator(".aip-preview")).to_contain_text("Next: ")
    page.get_by_label("Name").fill("fx-daily")
    page.get_by_role("button", name="Schedule").click()
    expect(page.locator(".aip-status")).to_contain_text("schedule fx-daily saved: backtest_report at 0 6 * * mon-fri (Europe/London)")
    expect(page.locator(".aip-schedules")).to_contain_text("fx-daily")
    page.get_by_role("button", name="Run now").click()
    expect(page.locator(".aip-status")).to_contain_text("succeeded in")
    run = re.search(r"run (\d+) succeeded", page.locator(".aip-status").inner_text())[1]  # not always 1: other files' tests may have run jobs on the same gateway
    page.screenshot(path=gateway.root / "reports.png", full_page=True)
    with page.expect_popup() as popup: page.locator(".aip-page").first.click()
    report = popup.value
    expect(report.get_by_text("EURUSD").first).to_be_visible()
    assert report.url.endswith(f"/aiplatform/api/jobs/runs/{run}/html")

def test_serve_runs_the_jobs_scheduler_beside_the_gateway(gateway):
    from pathlib import Path
    children = [p for p in Path("/proc").iterdir() if p.name.isdigit() and (p/"status").exists()]
    def parent(p):
        try: return int(next(line for line in (p/"status").read_text().splitlines() if line.startswith("PPid:")).split()[1])
        except (OSError, StopIteration): return None
    def command(p):
        try: return (p/"cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError: return ""
    assert any(parent(p) == gateway.proc.pid and "aiplatform background jobs" in command(p) for p in children)
