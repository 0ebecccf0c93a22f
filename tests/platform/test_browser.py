"The gallery under Voila in headless Debian Chromium driven by Playwright: it renders, and its status card opens the status app."
import pytest
from playwright.sync_api import expect, sync_playwright
from browser import CHROMIUM, FLAGS, watch
from conftest import cli, clean_env, http, start_gateway, stop_gateway

pytestmark = pytest.mark.browser

@pytest.fixture(scope="module")
def page(tmp_path_factory):
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.set_default_timeout(90_000)
        watch(page)
        yield page
        browser.close()

def test_login_opens_the_gallery_as_home_page(gateway, page, tmp_path):
    page.goto(gateway.url + "login")
    page.fill("input[name=password]", gateway.token)  # Jupyter's login form takes the token
    page.click("button[type=submit], input[type=submit]")
    expect(page.locator(".aip-card[data-app=status]")).to_be_visible()
    assert page.url.startswith(gateway.url + "aiplatform/apps/voila/render/index.ipynb")
    expect(page.locator(".aip-card[data-app=status] h3")).to_have_text("Platform status")
    page.screenshot(path=gateway.root/"gallery.png", full_page=True)

def test_status_card_opens_the_status_app(gateway, page):
    page.goto(gateway.url + "aiplatform/apps/voila/render/index.ipynb")
    page.click(".aip-card[data-app=status]")
    page.wait_for_url("**/aiplatform/apps/voila/render/status.ipynb")
    expect(page.get_by_text("Platform status", exact=True)).to_be_visible()
    overview = page.locator("table").first
    expect(overview).to_contain_text("data folder")
    expect(overview).to_contain_text(str(gateway.root/"data"))
    page.get_by_role("tab", name="Settings").click()
    expect(page.get_by_role("cell", name="port", exact=True).first).to_be_visible()  # [server] port, [trading] port
    expect(page.get_by_role("cell", name=str(gateway.root/"settings.ini")).first).to_be_visible()
    page.get_by_role("tab", name="Services").click()
    expect(page.get_by_text("aiplatform/echo/")).to_be_visible()
    page.screenshot(path=gateway.root/"status.png", full_page=True)

def test_password_login(tmp_path, page):
    r = cli("password", env=clean_env(AIPLATFORM_PLATFORM__DATA_DIR=tmp_path/"x"), stdin="correct horse battery\n")
    hashed = r.stdout.strip()
    assert r.returncode == 0 and hashed.startswith("argon2:") and "correct" not in hashed
    gw = start_gateway(tmp_path, f"auth = password\npassword = {hashed}\n")
    try:
        assert http(gw.url + "aiplatform/api/me")[0] == 403
        page.goto(gw.url + "login")
        page.fill("input[name=password]", "wrong password")
        page.click("button[type=submit], input[type=submit]")
        expect(page.locator("input[name=password]")).to_be_visible()
        page.fill("input[name=password]", "correct horse battery")
        page.click("button[type=submit], input[type=submit]")
        expect(page.locator(".aip-card[data-app=status]")).to_be_visible()
    finally: stop_gateway(gw)
