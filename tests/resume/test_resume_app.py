"The Resume Builder under Voila in headless Chromium: the form edits the live preview, themes and paper, downloads in every format, a job match, saving and opening versions as a signed-in user, and a rewrite asked of Claude with no key configured."
import pytest
from playwright.sync_api import expect
from browser import app_page
from conftest import cli, http

pytestmark = pytest.mark.browser

expect.set_options(timeout=60_000)

@pytest.fixture(scope="module")
def page(gateway):
    with app_page(gateway, "resume", "Resume Builder", timeout=120_000) as page: yield page

def preview(page): return page.frame_locator("iframe.aip-resume-preview")

def test_the_form_edits_the_preview_in_each_theme(page):
    expect(preview(page).locator("h1")).to_have_text("Richard Hendriks")
    name = page.locator(".widget-tab-contents .widget-text input").first
    name.fill("Ada <b>Lovelace</b>")
    expect(preview(page).locator("h1")).to_have_text("Ada <b>Lovelace</b>")  # shown as written, not as markup
    page.get_by_label("Theme").select_option("modern")
    expect(preview(page).locator("aside")).to_contain_text("Skills")
    page.get_by_role("tab", name="work").click()
    page.get_by_role("button", name="Add work").click()
    date = page.locator(".widget-tab-contents input[placeholder='YYYY-MM']:visible").nth(4)  # the new entry's start
    date.fill("2020/01")
    expect(page.locator(".aip-status")).to_contain_text("work[2].startDate '2020/01': expected YYYY, YYYY-MM or YYYY-MM-DD")
    date.fill("2020-01")
    expect(page.locator(".aip-status")).to_contain_text("Preview up to date")
    expect(preview(page).locator(".section-work .when").last).to_have_text("Jan 2020 – Present")

def test_downloads_in_every_format(page, tmp_path):
    page.get_by_role("tab", name="basics").click()
    page.locator(".widget-tab-contents .widget-text input").first.fill("Ada <b>Lovelace</b>")
    page.get_by_text("Fit the PDF to one page").click()
    page.get_by_role("button", name="Make downloads").click()
    expect(page.locator(".aip-status")).to_contain_text("Downloads ready")
    found = {}
    for label, ext in (("Download PDF", "pdf"), ("Download DOCX", "docx"), ("Download HTML", "html"), ("Download Markdown", "md"),
                       ("Download JSON", "json"), ("Download YAML", "yaml")):
        with page.expect_download() as dl: page.get_by_text(label, exact=True).click()
        path = tmp_path/dl.value.suggested_filename
        dl.value.save_as(path)
        found[ext] = path.read_bytes()
        assert path.suffix == f".{ext}"
    assert found["pdf"][:5] == b"%PDF-" and found["docx"][:2] == b"PK" and b"Ada &lt;b&gt;Lovelace" in found["html"]
    assert b'"name": "Ada <b>Lovelace</b>"' in found["json"] and found["md"].startswith(b"# Ada &lt;b\\>Lovelace")

def test_a_job_match_scores_and_names_what_is_missing(page):
    page.get_by_placeholder("Paste a job description").fill(
        "We are hiring a Python engineer for video compression: MP4 codecs, SQL stores, Kubernetes and AWS.")
    page.get_by_role("button", name="Match").click()
    expect(page.locator(".aip-match")).to_contain_text("Score")
    expect(page.locator(".aip-match")).to_contain_text("AWS")
    expect(page.locator(".aip-status")).to_contain_text("Matched: score")

def test_a_signed_in_user_saves_and_opens_versions(page, gateway):
    assert cli("users", "add", "rita", env=gateway.env).returncode in (0, 2)
    key = cli("users", "key", "rita", env=gateway.env).stdout.strip()
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator(".aip-status")).to_contain_text("Authorization header: expected 'Bearer <API key>'")
    page.locator("button[title='Save']").click()
    expect(page.locator(".aip-status")).to_contain_text("API key: sign in first")
    page.get_by_placeholder("API key (aip_…) to save and open your resumes").fill(key)
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator(".aip-status")).to_contain_text("Signed in as rita")
    page.locator("button[title='Save']").click()
    expect(page.locator(".aip-status")).to_contain_text("Saved main version 1")
    page.locator(".widget-tab-contents .widget-text input").first.fill("Someone Else")
    page.locator("button[title='Save']").click()
    expect(page.locator(".aip-status")).to_contain_text("Saved main version 2")
    page.get_by_label("Version").select_option(index=1)  # newest first
    page.get_by_role("button", name="Open").click()
    expect(preview(page).locator("h1")).to_have_text("Ada <b>Lovelace</b>")

def test_a_rewrite_without_a_claude_key_says_how_to_set_one(page):
    page.get_by_label("Part").select_option("work[0].highlights[0]")
    page.get_by_role("button", name="Suggest a rewrite").click()
    expect(page.locator(".aip-status")).to_contain_text("No Anthropic API key")

def test_the_gateway_proxies_the_resume_service(gateway):
    status, _, body = http(gateway.url + "aiplatform/resume/health", token=gateway.token)
    assert status == 200 and body["service"] == "resume"
    status, _, body = http(gateway.url + "aiplatform/resume/resumes", token=gateway.token)  # token login: no platform user
    assert status == 403 and "not a platform user" in body["error"]
