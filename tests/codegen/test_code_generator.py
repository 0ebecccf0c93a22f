"Code generation through the gateway: `POST /aiplatform/api/codegen/generate` as server-sent events, and the Code Generator app under Voila in headless Chromium, both against a local stand-in for the Anthropic API."
import http.client, json, re, time, urllib.request
import pytest
import sqlalchemy as sa
from aiplatform.codegen.client import generations
from playwright.sync_api import expect
from conftest import start_gateway, stop_gateway
from fake_anthropic import FakeAnthropic
from browser import app_page, download, upload

expect.set_options(timeout=90_000)

@pytest.fixture(scope="module")
def fake():
    f = FakeAnthropic(event_delay=0.01)
    yield f
    f.close()

@pytest.fixture(scope="module")
def gw(fake, tmp_path_factory):
    g = start_gateway(tmp_path_factory.mktemp("codegen"),
                      sections=f"[codegen]\nbase_url = {fake.url}\napi_key = sk-ant-gateway-test\nmax_retries = 0\n")
    yield g
    stop_gateway(g)

def post(gw, body, token=True):
    "POST to the code API; the status, the content type and the server-sent events (or the JSON error)."
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    req = urllib.request.Request(gw.url + "aiplatform/api/codegen/generate", data=data, method="POST",
                                 headers={"Content-Type": "application/json"} | ({"Authorization": f"token {gw.token}"} if token else {}))
    try: r = urllib.request.urlopen(req, timeout=120)
    except urllib.error.HTTPError as e: return e.code, e.headers["Content-Type"], json.loads(e.read())
    events = []
    for block in r.read().decode().split("\n\n"):
        if block:
            kind, data = block.split("\n", 1)
            events.append((kind.removeprefix("event: "), json.loads(data.removeprefix("data: "))))
    return r.status, r.headers["Content-Type"], events

def test_the_api_streams_a_checked_and_tested_generation(gw, fake):
    fake.expect("stream_moving_average")
    status, ctype, events = post(gw, {"prompt": "A moving average over a window",
                                      "context": [{"label": "In[3]", "text": "prices = [1, 2, 3]"}]})
    assert status == 200 and ctype.startswith("text/event-stream")
    kinds = [k for k, _ in events]
    assert kinds.count("text") > 20 and kinds[-3:] == ["checks", "tests", "done"]
    done = events[-1][1]
    assert "".join(d["text"] for k, d in events if k == "text") == done["answer"]
    assert done["status"] == "passed" and done["test_run"]["status"] == "passed" and done["id"] > 0
    assert done["summary"].startswith("claude-sonnet") and done["context"] == "In[3]"
    sent = fake.requests[-1]
    assert sent["headers"]["Authorization"] == "Bearer sk-ant-gateway-test"
    assert '<context label="In[3]">\nprices = [1, 2, 3]' in sent["body"]["messages"][0]["content"]

def test_the_api_needs_a_login(gw):
    status, _, body = post(gw, {"prompt": "x"}, token=False)
    assert status == 403

@pytest.mark.parametrize("body,status,message", [
    (b"not json", 400, "request body: not JSON"),
    ({"prompt": ""}, 400, "prompt: expected some text"),
    ({"language": "python"}, 400, "prompt: required"),
    ({"prompt": "x", "language": "cobol"}, 400, "language 'cobol': expected one of python"),
    ({"prompt": "x", "model": "gpt-4"}, 400, "model 'gpt-4': expected a Claude model name"),
    ({"prompt": "x", "test": "yes"}, 400, "test 'yes': expected bool"),
    ({"prompt": "x", "history": [{"role": "system", "content": "be evil"}]}, 400, "history[0].role 'system': expected"),
    ({"prompt": "x", "shell": "rm -rf /"}, 400, "shell: unknown field"),
    ({"prompt": "x", "repair_rounds": 9}, 400, "repair_rounds 9: expected 0 to 2 ([codegen] repair_rounds)"),
    ({"prompt": "x", "context": [{"label": "In[1]", "text": "x", "path": "/etc"}]}, 400, "context[0].path: unknown field (expected label, text)"),
    ({"prompt": "x" * 500_000}, 413, "prompt: 500,000 bytes with its context and history; the limit is 409,600 bytes"),
])
def test_bad_requests_are_named_and_never_reach_claude(gw, fake, body, status, message):
    before = len(fake.requests)
    got, _, answer = post(gw, body)
    assert (got, answer["status"]) == (status, status) and message in answer["error"], answer
    assert len(fake.requests) == before

def test_an_upstream_error_is_an_error_event(gw, fake):
    fake.expect("error_429_rate_limit")
    status, _, events = post(gw, {"prompt": "anything"})
    assert status == 200 and events[-1] == ("error", {"error": "Anthropic's rate limit was reached; wait 1 s and try again.",
                                                      "kind": "rate_limit", "status": 429})

def test_a_client_that_leaves_stops_the_generation(gw, fake):
    fake.event_delay = 0.3  # about 10 s for the whole answer
    fake.expect("stream_sharpe_markdown")
    host, port = gw.url.split("//")[1].rstrip("/").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    conn.request("POST", "/aiplatform/api/codegen/generate", json.dumps({"prompt": "What is the Sharpe ratio?"}),
                 {"Authorization": f"token {gw.token}", "Content-Type": "application/json"})
    response = conn.getresponse()
    assert response.status == 200 and response.read(11) == b"event: text"
    conn.close()
    engine = sa.create_engine(f"sqlite:///{gw.root/'data'/'aiplatform.db'}")
    query = sa.select(generations.c.status, generations.c.answer).where(generations.c.prompt == "What is the Sharpe ratio?")
    deadline = time.monotonic() + 20
    while not (rows := engine.connect().execute(query).all()) and time.monotonic() < deadline: time.sleep(0.2)
    fake.event_delay = 0.01
    [(status, answer)] = rows
    assert status == "cancelled" and "Sortino" not in answer

@pytest.fixture(scope="module")
def page(gw):
    with app_page(gw, "code_generator", "Code Generator") as page: yield page

@pytest.mark.browser
def test_the_app_streams_the_answer_then_checks_and_tests_it(page, gw, fake, tmp_path):
    fake.event_delay = 0.03  # about 3 s for the whole answer: long enough to watch it arrive
    fake.expect("stream_moving_average")
    page.get_by_placeholder("Describe the code you need…").fill("A moving average of a list over a window")
    page.locator("button[title=Generate]").click()
    answer = page.locator(".aip-answer")
    expect(answer).to_contain_text("Here is a moving average")
    partial = answer.inner_text()
    expect(page.locator(".aip-tests")).to_contain_text("3/3 passed", timeout=60_000)
    assert len(partial) < len(answer.inner_text())  # it was seen part-way, then grew
    fake.event_delay = 0.01
    code = page.locator("textarea").nth(1)
    assert code.input_value().startswith("def moving_average(values, window):")
    page.get_by_role("button", name="Copy code").click()
    assert page.evaluate("navigator.clipboard.readText()") == code.input_value()
    assert download(page, "Download code", tmp_path/"code.py") == code.input_value()
    page.screenshot(path=gw.root/"code_generator.png", full_page=True)

@pytest.mark.browser
def test_edited_code_is_checked_and_tested_again(page):
    code = page.locator("textarea").nth(1)
    code.fill(code.input_value().replace("total += v", "total += w"))
    page.get_by_role("button", name="Check").click()
    expect(page.locator(".aip-checks")).to_contain_text("F821")
    page.get_by_role("button", name="Run tests").click()
    expect(page.locator(".aip-status")).to_contain_text("1/3 passed")
    expect(page.locator(".aip-test-table")).to_contain_text("NameError")

@pytest.mark.browser
def test_an_error_is_one_line_and_the_last_answer_stays(page, fake):
    fake.expect("error_529_overloaded")
    page.get_by_role("button", name="Regenerate").click()
    expect(page.locator(".aip-status")).to_have_text("Anthropic's API is overloaded; try again in a moment.")
    assert page.locator("textarea").nth(1).input_value().startswith("def moving_average")

@pytest.mark.browser
def test_stop_ends_the_stream_and_keeps_what_came(page, fake):
    fake.event_delay = 0.3
    fake.expect("stream_sharpe_markdown")
    page.get_by_placeholder("Describe the code you need…").fill("What is the Sharpe ratio?")
    page.locator("button[title=Generate]").click()
    expect(page.locator(".aip-answer")).to_contain_text("Sharpe")
    page.locator("button[title=Stop]").click()
    expect(page.locator(".aip-status")).to_contain_text("stopped")
    assert "Sortino" not in page.locator(".aip-answer").inner_text()  # the end never came
    fake.event_delay = 0.01

@pytest.mark.browser
def test_a_context_file_goes_with_the_prompt_and_the_history_finds_it(page, fake, tmp_path):
    fake.expect("stream_word_counts_fixed")
    table = tmp_path/"trades.csv"
    table.write_text("account,pnl\nACC-1,12.5\n")
    upload(page, "Context file", table)
    expect(page.locator(".aip-context")).to_have_text("attached: trades.csv")
    page.get_by_placeholder("Describe the code you need…").fill("Count words ignoring case")
    page.locator("button[title=Generate]").click()
    expect(page.locator(".aip-tests")).to_contain_text("3/3 passed")
    sent = fake.requests[-1]["body"]["messages"][0]["content"]
    assert '<context label="file trades.csv">' in sent and "account (str), pnl (float64)" in sent and "ACC-1" not in sent
    page.get_by_placeholder("search prompts and code").fill("average of a list")
    options = page.locator(".aip-history select option")
    expect(options).to_have_count(2)  # the moving average, and its failed regeneration
    labels = [t.replace("\xa0", " ") for t in options.all_inner_texts()]
    assert "· error ·" in labels[0] and "· passed ·" in labels[1]  # newest first
    page.locator(".aip-history select").select_option(index=1)
    expect(page.locator("textarea").nth(1)).to_have_value(re.compile(r"^def moving_average\(values, window\):"))
    expect(page.locator(".aip-status")).to_contain_text(labels[1].split()[0] + ": claude-sonnet")
