"The Backtest Lab under Voila in headless Chromium: a sweep on synthetic data, its heatmap, equity, trades and download; uploads."
import pytest
from playwright.sync_api import expect
from browser import app_page, download, upload

pytestmark = pytest.mark.browser

expect.set_options(timeout=120_000)  # the first sweep in a fresh kernel loads vectorbt

@pytest.fixture(scope="module")
def page(gateway):
    with app_page(gateway, "backtest_lab", "Backtest Lab", timeout=120_000) as page: yield page

def test_a_sweep_fills_every_view(page, gateway, tmp_path):
    page.get_by_role("button", name="Synthetic").click()
    page.get_by_label("fast").fill("5:20:5")
    page.get_by_label("slow").fill("30, 60")
    page.get_by_role("button", name="Run sweep").click()
    expect(page.locator(".aip-status")).to_contain_text("8 combinations over 5,000 bars")
    expect(page.locator(".js-plotly-plot .heatmaplayer").first).to_be_attached()
    expect(page.locator(".js-plotly-plot .scatterlayer .trace").first).to_be_attached()
    expect(page.locator(".aip-trades table")).to_contain_text("entry_price")
    header, *rows = download(page, "Download CSV", tmp_path / "sweep.csv").splitlines()
    assert header == "fast,slow,total_return,sharpe,sortino,max_drawdown,win_rate,trades" and len(rows) == 8
    page.screenshot(path=gateway.root / "backtest_lab.png", full_page=True)

def test_a_bad_range_is_named_and_the_results_stay(page):
    page.get_by_label("slow").fill("60:30")
    page.get_by_role("button", name="Run sweep").click()
    expect(page.locator(".aip-status")).to_contain_text("slow '60:30': expected start:stop:step")
    expect(page.locator(".aip-trades table")).to_be_visible()

def test_uploads_are_checked(page, tmp_path):
    page.get_by_role("button", name="Upload").click()
    bad = tmp_path / "prices.csv"
    bad.write_text("Date,Open,High,Low,Close,Volume\n2024-01-02,10,11,9,10.5,100\n2024-01-01,10,11,9,10.5,100\n")
    upload(page, "Upload CSV/Parquet", bad)
    expect(page.locator(".aip-status")).to_contain_text("prices.csv: column 'ts' row 1: unsorted timestamp")
    good = tmp_path / "mine.csv"
    good.write_text("Date,Open,High,Low,Close,Volume\n" + "".join(
        f"2024-01-{d:02d},{10 + d % 3},{12 + d % 3},{9 + d % 3},{11 + d % 3},100\n" for d in range(1, 31)))
    upload(page, "Upload CSV/Parquet", good)
    expect(page.locator(".aip-status")).to_contain_text("mine.csv: 30 bars")
    page.get_by_label("fast").fill("2, 3")
    page.get_by_label("slow").fill("5")
    page.get_by_role("button", name="Run sweep").click()
    expect(page.locator(".aip-status")).to_contain_text("2 combinations over 30 bars")
