"The Image Analyzer under Voila in headless Chromium: photos, a page of text and a near-duplicate uploaded, analysed, downloaded."
import pytest
from PIL import Image
from playwright.sync_api import expect
from skimage import data
from browser import app_page, download, upload

pytestmark = pytest.mark.browser

expect.set_options(timeout=120_000)  # a fresh kernel loads the face networks and Tesseract

@pytest.fixture(scope="module")
def page(gateway):
    with app_page(gateway, "image_analyzer", "Image Analyzer", timeout=120_000) as page: yield page

def test_uploaded_images_are_analysed_annotated_and_downloaded(page, gateway, tmp_path):
    from aiplatform.ml.vision.ocr import render
    Image.fromarray(data.astronaut()).save(tmp_path/"astronaut.png")
    Image.fromarray(data.astronaut()).resize((200, 200)).save(tmp_path/"astronaut_small.jpg", quality=60)
    Image.fromarray(data.coffee()).save(tmp_path/"coffee.jpg")
    render("Invoice number 4711 is due on Friday".split(), 33).save(tmp_path/"invoice.png")
    (tmp_path/"notes.png").write_text("not an image")
    upload(page, "Upload images", *(tmp_path/n for n in ("astronaut.png", "astronaut_small.jpg", "coffee.jpg", "invoice.png", "notes.png")))
    expect(page.locator(".aip-status")).to_contain_text("4 images ready; left out: notes.png: not an image")
    page.get_by_role("button", name="Analyze").click()
    expect(page.locator(".aip-status")).to_contain_text("4 images analysed")
    expect(page.locator(".aip-duplicates")).to_contain_text("astronaut.png (0 bits), astronaut_small.jpg")
    expect(page.locator(".aip-counts").first).to_contain_text("1 face")
    expect(page.locator(".aip-ocr").nth(3)).to_contain_text("Invoice number 4711")
    expect(page.locator(".aip-meter").first).to_contain_text("Sharpness")
    page.screenshot(path=gateway.root / "image_analyzer.png", full_page=True)
    header, *rows = download(page, "Download CSV", tmp_path/"images.csv").splitlines()
    assert header.startswith("name,width,height,format,faces,people,words,text") and len(rows) == 4
    assert rows[0].startswith("astronaut.png,512,512,PNG,1,")
