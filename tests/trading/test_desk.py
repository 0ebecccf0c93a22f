"""The Trading Desk under Voila in headless Chromium: connect with a key, a ticket's order acknowledged, the ladder
showing it, another trader's order filling it, the fill, the position and its P&L on the desk; a bot started and
stopped from the bots panel; through the gateway, a logged-in user's cookie trades only with the gateway's XSRF token."""
import json, os, re, signal, urllib.parse, urllib.request
from http.cookiejar import CookieJar
import pytest
from playwright.sync_api import expect
from browser import app_page
from conftest import cli, http
from aiplatform.trading.client import TradingClient

pytestmark = pytest.mark.browser
expect.set_options(timeout=60_000)

@pytest.fixture(scope="module")
def desk(gateway):
    gw = gateway
    keys = {}
    for name in ("tess", "tom"):
        assert cli("users", "add", name, "--role", "trader", env=gw.env).returncode == 0
        keys[name] = cli("users", "key", name, env=gw.env).stdout.strip()
    gw.keys = keys
    try:
        with app_page(gw, "trading_desk", "Trading Desk") as page: yield gw, page
    finally:
        lock = gw.root/"data"/"trading"/"shard-0"/"lock"  # the service the desk started, in a session of its own
        if lock.exists() and lock.read_text().strip(): os.kill(int(lock.read_text()), signal.SIGTERM)

def test_ticket_ack_ladder_fill_and_pnl(desk):
    gw, page = desk
    page.get_by_role("button", name="Connect").click()
    expect(page.locator(".aip-status")).to_contain_text("API key: required")
    page.get_by_label("API key").fill(gw.keys["tess"])
    page.get_by_role("button", name="Connect").click()
    expect(page.locator(".aip-status")).to_contain_text("connected as tess: 1 symbols")
    page.get_by_role("button", name="sell").click()
    page.get_by_label("Price").fill("100")
    page.get_by_label("Qty").fill("5")
    page.get_by_role("button", name="Send order").click()
    expect(page.locator(".aip-status")).to_contain_text("open, 0 of 5 filled")
    expect(page.locator(".aip-ladder")).to_contain_text("100")
    with TradingClient(gw.trading, gw.keys["tom"]) as tom:
        assert tom.order("DEMO", "buy", 3, 100)["status"] == "filled"
    fills = page.locator("table").filter(has_text="liquidity")
    expect(fills).to_contain_text("maker")
    positions = page.locator("table").filter(has_text="unrealized")
    expect(positions).to_contain_text("-3")
    expect(page.locator(".js-plotly-plot .scatterlayer .trace").first).to_be_attached()
    page.screenshot(path=gw.root/"trading_desk.png", full_page=True)

def test_a_bot_from_the_panel(desk):
    gw, page = desk
    page.get_by_label("Params").fill("spread=2, qty=4, fair=100")
    page.get_by_role("button", name="Start bot").click()
    expect(page.locator(".aip-status")).to_contain_text("market_maker started on DEMO")
    bots = page.locator("table").filter(has_text="state")
    expect(bots).to_contain_text("market_maker DEMO #1")
    expect(bots).to_contain_text("running")
    expect(page.locator(".aip-ladder")).to_contain_text("98")  # its bid, 2 ticks under the mid
    page.set_viewport_size({"width": 1280, "height": 720})  # a laptop's: the Bots panel is far below the top
    try:
        page.get_by_label("Params").fill("spread")
        page.get_by_role("button", name="Start bot").click()
        expect(page.locator(".aip-status")).to_contain_text("parameter 'spread': expected name=value")
        box = page.locator(".aip-status").bounding_box()
        assert box and 0 <= box["y"] < 720, box  # in sight where the click was (before: scrolled off the top, the click seemed to do nothing)
    finally: page.set_viewport_size({"width": 1400, "height": 1100})
    page.get_by_role("button", name="Stop all bots").click()
    expect(page.locator(".aip-status")).to_contain_text("1 bot stopped")
    expect(bots).to_contain_text("stopped")

def test_the_gateway_vouches_for_its_user_and_drops_a_forged_claim(desk):
    gw, _ = desk  # token login: Jupyter names an anonymous user per request, never a platform user
    status, _, body = http(gw.url + "aiplatform/trading/positions", token=gw.token, headers={"X-AIPlatform-User": "tess"})
    assert status == 403 and re.fullmatch(r"gateway user '[0-9a-f]{32}': not a platform user \(.*\)", body["error"])
    status, _, body = http(gw.trading + "positions", headers={"X-AIPlatform-User": "tess", "X-AIPlatform-Signature": "1:00"})
    assert (status, body["error"]) == (401, "X-AIPlatform-User: not signed by this platform's gateway")

def test_a_form_on_another_site_never_reaches_the_service_as_the_logged_in_user(desk):
    gw, _ = desk
    jar = CookieJar()
    browser = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    browser.open(gw.url + "login", timeout=30).read()  # the login form, as a browser fills it
    form = urllib.parse.urlencode({"_xsrf": next(c.value for c in jar if c.name == "_xsrf"), "password": gw.token}).encode()
    browser.open(gw.url + "login", form, timeout=30).read()
    request = urllib.request.Request(gw.url + "aiplatform/trading/orders")
    jar.add_cookie_header(request)  # those a browser sends there
    cookie, xsrf = request.get_header("Cookie"), next(c.value for c in jar if c.name == "_xsrf")
    def post(**headers):
        order = json.dumps(dict(cid="xsite", symbol="DEMO", side="buy", qty=1, price=1)).encode()
        return http(gw.url + "aiplatform/trading/orders", data=order, headers={"Cookie": cookie} | headers)
    status, _, body = post(**{"Content-Type": "application/json", "X-XSRFToken": xsrf})  # the gateway's own page's script
    assert status == 403 and re.fullmatch(r"gateway user '[0-9a-f]{32}': not a platform user \(.*\)", body["error"])  # the service's answer
    for origin in ({"Origin": "http://evil.example"}, {}):  # what a form on another site sends, with its origin or none
        status, _, body = post(**{"Content-Type": "text/plain"} | origin)
        assert status in (403, 404) and not isinstance(body, dict), body  # Jupyter's refusal (before: the service's answer, a trader's order placed)
