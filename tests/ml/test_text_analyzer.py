"The Text Analyzer under Voila in headless Chromium: a pasted text, an uploaded table with its charts and download, a search."
import pytest
from playwright.sync_api import expect
from browser import app_page, download, upload

pytestmark = pytest.mark.browser

expect.set_options(timeout=120_000)  # a fresh kernel loads torch and the encoder

@pytest.fixture(scope="module")
def page(gateway):
    with app_page(gateway, "text_analyzer", "Text Analyzer", timeout=120_000) as page: yield page

def test_a_pasted_text_is_analysed_sentence_by_sentence(page, gateway):
    page.get_by_placeholder("Paste a text…").fill("The concert was magnificent and the crowd was joyful. The parking, though, was a nightmare.")
    page.get_by_label("Labels").fill("music, finance")
    page.get_by_role("button", name="Analyze").click()
    expect(page.locator(".aip-status")).to_contain_text("2 sentences analysed")
    expect(page.locator(".aip-sentence.aip-positive")).to_contain_text("magnificent")
    expect(page.locator(".aip-sentence.aip-negative")).to_contain_text("nightmare")
    expect(page.locator(".aip-text-results")).to_contain_text("language en")
    expect(page.locator(".aip-text-results")).to_contain_text("Labels: music")
    page.screenshot(path=gateway.root / "text_analyzer.png", full_page=True)

def test_a_table_gets_a_row_each_charts_and_a_download(page, tmp_path):
    page.get_by_role("tab", name="Table").click()
    table = tmp_path / "reviews.csv"
    table.write_text("id,review\n1,Absolutely love it\n2,Terrible quality and slow delivery\n3,\n4,C'est un excellent produit\n")
    upload(page, "Upload CSV/Parquet", table)
    expect(page.locator(".aip-status")).to_contain_text("reviews.csv: 4 rows")
    page.get_by_role("button", name="Analyze rows").click()
    expect(page.locator(".aip-status")).to_contain_text("4 rows analysed")
    expect(page.locator(".aip-status")).to_contain_text("1 could not be")
    expect(page.locator(".js-plotly-plot").first).to_be_attached()
    expect(page.locator(".aip-rows table")).to_contain_text("texts[2]")
    header, *rows = download(page, "Download CSV", tmp_path / "out.csv").splitlines()
    assert header == "id,review,sentiment,score,language,error" and len(rows) == 4
    assert rows[0].split(",")[2] == "positive" and rows[1].split(",")[2] == "negative" and rows[3].split(",")[4] == "fr"

def test_the_column_is_searched_by_meaning(page):
    page.get_by_role("tab", name="Search").click()
    page.get_by_role("button", name="Index column").click()
    expect(page.locator(".aip-status")).to_contain_text("3 texts indexed")
    page.get_by_label("Query").fill("it arrived late and broke")
    page.get_by_role("button", name="Search").click()
    expect(page.locator(".aip-search tr").nth(1)).to_contain_text("Terrible quality")
