"Headless Debian Chromium for the browser tests: its flags, what went wrong in a page, an app opened from the gallery, uploads and downloads."
import shutil, time
from contextlib import contextmanager
from playwright.sync_api import expect, sync_playwright

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",  # a microphone that beeps, allowed without asking
         "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]

def watch(page) -> list:
    "What goes wrong in `page` from now on, kept to name in a failure: console errors, failed requests, error responses, closed WebSockets, a crash."
    seen = []
    page.on("console", lambda m: m.type == "error" and seen.append(f"console: {m.text[:300]}"))
    page.on("requestfailed", lambda r: seen.append(f"failed: {r.url} ({r.failure})"))
    page.on("response", lambda r: r.status >= 400 and seen.append(f"{r.status}: {r.url}"))
    page.on("websocket", lambda ws: ws.on("close", lambda _: seen.append(f"{time.strftime('%T')} websocket closed: {ws.url}")))
    page.on("crash", lambda _: seen.append(f"{time.strftime('%T')} the page crashed"))
    page.aip_seen = seen  # told with a failure (conftest's `pytest_runtest_makereport`)
    return seen

@contextmanager
def told(page, seen):
    "An expectation inside that fails names the page's address and what `watch` saw go wrong there."
    try: yield
    except AssertionError as e: raise AssertionError(f"{e}\nat {page.url}, after:\n" + "\n".join(seen[-40:])) from None

@contextmanager
def app_page(gw, app, title, timeout=90_000):
    "A Chromium page opened on the gallery of gateway `gw`, after a click on `app`'s card, once the app shows `title`."
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        context = browser.new_context(viewport={"width": 1400, "height": 1100}, accept_downloads=True)
        context.grant_permissions(["clipboard-read", "clipboard-write"], origin=gw.url.rstrip("/"))
        page = context.new_page()
        page.set_default_timeout(timeout)
        seen = watch(page)
        page.goto(gw.url + f"aiplatform/apps/voila/render/index.ipynb?token={gw.token}")
        page.click(f".aip-card[data-app={app}]")
        page.wait_for_url(f"**/aiplatform/apps/voila/render/{app}.ipynb")
        with told(page, seen): expect(page.get_by_text(title, exact=True)).to_be_visible()
        yield page
        browser.close()

def upload(page, button, *paths):
    "Choose the files `paths` in the file chooser that the button named `button` opens."
    with page.expect_file_chooser() as chooser:
        page.get_by_role("button", name=button).click()
    chooser.value.set_files([str(p) for p in paths])

def download(page, link, path):
    "Save what a click on the text `link` downloads to `path`; its text."
    with page.expect_download() as dl:
        page.get_by_text(link).click()
    dl.value.save_as(path)
    return path.read_text()
