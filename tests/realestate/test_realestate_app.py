"The Real Estate Analyzer under Voila in headless Chromium: a house valued as the form changes (a bad value refused in words), the comparables and charts, the investment case with its sensitivity, and the property report downloaded."
import re
import pytest
from playwright.sync_api import expect
from browser import app_page, download

pytestmark = pytest.mark.browser

expect.set_options(timeout=60_000)

@pytest.fixture(scope="module")
def page(gateway):
    with app_page(gateway, "realestate", "Real Estate Analyzer", timeout=120_000) as page: yield page

def value(page) -> float: return float(re.search(r"Value ([\d,]+)", page.locator(".aip-value").inner_text()).group(1).replace(",", ""))

def test_the_form_values_the_house_as_it_changes(page):
    expect(page.locator(".aip-value")).to_contain_text("90% interval")
    expect(page.locator(".aip-comps tbody tr")).to_have_count(5)
    expect(page.locator(".js-plotly-plot")).to_have_count(2)
    first = value(page)
    lot = page.locator(".aip-field-lotsize input")
    lot.fill("-5"); lot.press("Enter")
    expect(page.locator(".aip-status")).to_contain_text("lotsize -5: expected a lot of 100 to 1,000,000 square feet")
    assert value(page) == first  # the last good value stays
    lot.fill("12000"); lot.press("Enter")
    expect(page.locator(".aip-status")).to_contain_text("Valued in")
    bigger = value(page)
    assert bigger > first
    page.get_by_role("checkbox", name="Central air").click()
    expect(page.locator(".aip-value")).not_to_contain_text(f"Value {bigger:,.0f}")
    assert value(page) < bigger  # central air adds to the price

def test_the_investment_case_and_its_sensitivity(page):
    page.get_by_role("button", name="Analyze investment").click()
    expect(page.locator(".aip-invest")).to_contain_text("IRR")
    expect(page.locator(".aip-sensitivity tbody tr")).to_have_count(9)
    rate = page.locator(".aip-field-rate_pct input")
    rate.fill("150"); rate.press("Enter")
    page.get_by_role("button", name="Analyze investment").click()
    expect(page.locator(".aip-status")).to_contain_text("rate_pct 150.0: expected a mortgage rate from 0 to 100 %")
    rate.fill("6"); rate.press("Enter")
    page.get_by_role("button", name="Analyze investment").click()
    expect(page.locator(".aip-status")).to_contain_text("IRR")

def test_the_property_report_downloads(page, tmp_path):
    page.get_by_role("button", name="Make report").click()
    expect(page.locator(".aip-status")).to_contain_text("Report ready", timeout=120_000)
    report = download(page, "Download the report", tmp_path/"property.html")
    assert "Comparable sales" in report and "IRR by rent, price and rate" in report and "6.0" in report
