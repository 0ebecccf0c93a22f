"The Documents app under Voila in headless Chromium: many files uploaded (a zip among them) or a folder chosen, analysed with progress; the charts, table, one document's view and the CSV download."
import zipfile
import pytest
from playwright.sync_api import expect
from browser import app_page, download, upload
from aiplatform.documents.extract import text_pdf

pytestmark = pytest.mark.browser

expect.set_options(timeout=120_000)  # a fresh kernel loads the encoder

@pytest.fixture(scope="module")
def page(gateway):
    inbox = gateway.root/"data"/"documents"/"inbox"
    inbox.mkdir(parents=True, exist_ok=True)
    (inbox/"lease.md").write_text("# Lease\n\nThe lease runs for five years. The landlord has been helpful and kind.")
    with app_page(gateway, "documents", "Documents", timeout=120_000) as page: yield page

def test_uploaded_documents_are_analysed_shown_and_downloaded(page, gateway, tmp_path):
    (tmp_path/"q3.pdf").write_bytes(text_pdf([["Quarterly results were excellent.", "Sales grew in every region."]], title="Q3 results"))
    (tmp_path/"torn.pdf").write_bytes(text_pdf([["x"]])[:150])
    with zipfile.ZipFile(tmp_path/"mail.zip", "w") as z:
        z.writestr("outage.txt", "The outage was a disaster. Customers were angry and support failed.")
        z.writestr("notice.html", "<html><title>Notice</title><p>The office moves to the third floor on Monday.</p></html>")
    upload(page, "Upload documents", tmp_path/"q3.pdf", tmp_path/"torn.pdf", tmp_path/"mail.zip")
    expect(page.locator(".aip-status")).to_contain_text("3 files uploaded")
    page.get_by_role("button", name="Analyze").click()
    expect(page.locator(".aip-status")).to_contain_text("4 documents analysed")
    expect(page.locator(".aip-status")).to_contain_text("1 could not be read")
    expect(page.locator(".js-plotly-plot").first).to_be_attached()
    expect(page.locator(".aip-docs")).to_contain_text("torn.pdf: damaged")
    expect(page.locator(".aip-docs")).to_contain_text("mail.zip/outage.txt")
    page.get_by_label("Document").select_option("q3.pdf")
    expect(page.locator(".aip-doc")).to_contain_text("Q3 results")
    expect(page.locator(".aip-doc-text")).to_contain_text("Sales grew in every region.")
    page.screenshot(path=gateway.root/"documents.png", full_page=True)
    header, *rows = download(page, "Download CSV", tmp_path/"out.csv").splitlines()
    assert header.startswith("name,kind,pages,words,language") and len(rows) == 4
    sentiment = {r.split(",")[0]: r for r in rows}
    assert ",negative," in sentiment["mail.zip/outage.txt"] and ",positive," in sentiment["q3.pdf"]

def test_a_folder_of_the_data_folder_is_read_in_place(page):
    page.get_by_label("Read from").select_option("documents/inbox")
    page.get_by_role("button", name="Analyze").click()
    expect(page.locator(".aip-status")).to_contain_text("1 document analysed")
    expect(page.locator(".aip-docs")).to_contain_text("lease.md")
