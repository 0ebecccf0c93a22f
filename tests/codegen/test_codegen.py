"Code generation through the real anthropic SDK over an httpx2 MockTransport replaying recorded responses: streaming, every error, the repair loop, cancelling, history."
import json, os, subprocess, sys, threading
import pytest
from aiplatform.codegen import client as codegen
from aiplatform.core import ConfigError, TooLarge, ValidationError, get_settings
from conftest import clean_env
from fake_anthropic import RECORDINGS

def rec(name): return codegen.recording(RECORDINGS/f"{name}.json")

def deltas(name) -> list[str]:
    "The text pieces a recorded stream carries."
    events = [json.loads(line[6:]) for line in rec(name)["body"].splitlines() if line.startswith("data: ")]
    return [e["delta"]["text"] for e in events if e["type"] == "content_block_delta"]

@pytest.fixture(autouse=True)
def platform(tmp_path, monkeypatch):
    "A fresh data folder, a key, no retries unless a test asks, and settings read again."
    for k in list(os.environ):
        if k.startswith("AIPLATFORM_"): monkeypatch.delenv(k)
    monkeypatch.setenv("AIPLATFORM_PLATFORM__DATA_DIR", str(tmp_path/"data"))
    monkeypatch.setenv("AIPLATFORM_CODEGEN__MAX_RETRIES", "0")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test-key")
    monkeypatch.chdir(tmp_path)
    get_settings(reload=True)
    yield monkeypatch
    get_settings(reload=True)

def settings(monkeypatch, **values):
    for k, v in values.items(): monkeypatch.setenv(f"AIPLATFORM_CODEGEN__{k.upper()}", str(v))
    get_settings(reload=True)

def run(*names, **kwargs):
    "Generate against the recordings `names`; the replay and the result (or the error)."
    replay = codegen.Replay(*(rec(n) if isinstance(n, str) else n for n in names))
    try: result = codegen.generate(kwargs.pop("prompt", "A moving average over a window"),
                                   client=codegen.make_client(replay.http_client()), **kwargs)
    except Exception as e: result = e
    return replay, result

def edited(name, old, new) -> dict:
    "Recording `name` with `old` replaced by `new` in its text, sent as one delta."
    r = rec(name)
    text = "".join(deltas(name)).replace(old, new)
    events = r["body"].split("\n\n")
    first = next(i for i, e in enumerate(events) if "content_block_delta" in e)
    delta = {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text}}
    kept = [e for e in events if "content_block_delta" not in e]
    kept.insert(first, f"event: content_block_delta\ndata: {json.dumps(delta)}")
    return r | {"body": "\n\n".join(kept)}

def test_importing_needs_no_key_the_call_says_how_to_set_one():
    env = clean_env(HOME="/nonexistent")
    env.pop("ANTHROPIC_API_KEY", None)
    code = ("import aiplatform.codegen.client as c, aiplatform.codegen.magics\n"
            "try: c.generate('hi')\nexcept Exception as e: print(type(e).__name__, e)")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"ConfigError {codegen.NO_KEY}"

def test_the_answer_streams_in_order_and_everything_is_recorded(platform):
    pieces = []
    replay, g = run("stream_moving_average", listener=lambda kind, data: pieces.append(data) if kind == "text" else None)
    assert pieces == deltas("stream_moving_average") and "".join(pieces) == g.answer
    [request] = replay.requests
    assert request["stream"] is True and request["model"] == codegen.default_model()
    assert request["max_tokens"] == get_settings().codegen.max_tokens and "# tests" in request["system"]
    assert (g.status, g.rounds, g.test_run.passed, g.input_tokens) == ("passed", 1, 3, 412)
    assert g.output_tokens > 0 and g.cost_usd == pytest.approx((412 * 3 + g.output_tokens * 15) / 1e6)
    stored = codegen.get_generation(g.id)
    assert (stored.prompt, stored.code, stored.tests, stored.status) == (g.prompt, g.code, g.tests, "passed")
    assert stored.test_run.passed == 3 and stored.latency_ms > 0

def test_the_key_from_settings_goes_in_the_header_only(platform):
    settings(platform, api_key="sk-ant-from-settings")
    seen = []
    import httpx2
    def handler(request):
        seen.append(request)
        r = rec("stream_sharpe_markdown")
        return httpx2.Response(r["status"], headers=r["headers"], content=r["body"].encode())
    client = codegen.make_client(httpx2.Client(transport=httpx2.MockTransport(handler)))
    codegen.generate("What is the Sharpe ratio?", client=client, test=False)
    assert seen[0].headers["authorization"] == "Bearer sk-ant-from-settings" and b"sk-ant" not in seen[0].content

ERRORS = [  # recording, retries, requests made, kind, words of the message
    ("error_401_invalid_key", 2, 1, "invalid_key", "Anthropic refused the API key: set a valid ANTHROPIC_API_KEY"),
    ("error_429_rate_limit", 1, 2, "rate_limit", "Anthropic's rate limit was reached (tried 2 times); wait 1 s and try again."),
    ("error_529_overloaded", 2, 3, "overloaded", "Anthropic's API is overloaded (tried 3 times); try again in a moment."),
    ("error_400_prompt_too_long", 2, 1, "context_too_long", "is too long for claude-sonnet"),
    ("stream_overloaded_midway", 2, 1, "overloaded", "Anthropic's API is overloaded; try again in a moment."),
    ({"raise": "connect"}, 1, 2, "network", "Could not reach the Anthropic API (tried 2 times)"),
]

@pytest.mark.parametrize("recording,retries,requests,kind,words", ERRORS, ids=[str(e[3]) + "-" + str(e[1]) for e in ERRORS])
def test_each_error_is_one_sentence_after_the_sdks_retries(platform, recording, retries, requests, kind, words):
    settings(platform, max_retries=retries)
    replay, e = run(*[recording] * requests)
    assert isinstance(e, codegen.ClaudeError) and e.kind == kind and words in str(e), repr(e)
    assert len(replay.requests) == requests and "\n" not in str(e) and "Traceback" not in str(e)
    [stored] = codegen.history()
    assert (stored.status, stored.error) == ("error", str(e))

def test_a_retry_after_an_overload_succeeds(platform):
    settings(platform, max_retries=1)
    replay, g = run("error_529_overloaded", "stream_moving_average")
    assert len(replay.requests) == 2 and g.status == "passed"

def test_a_prompt_over_the_limit_never_leaves(platform):
    settings(platform, max_prompt_kb=2)
    replay, e = run("stream_moving_average", prompt="short", context=[("In[1]", "x" * 3000)])
    assert isinstance(e, TooLarge) and "prompt: 3,0" in str(e) and "the limit is 2,048 bytes ([codegen] max_prompt_kb)" in str(e)
    assert replay.requests == [] and codegen.history() == []

@pytest.mark.parametrize("kwargs,message", [
    (dict(prompt="  "), "prompt: expected some text"),
    (dict(language="cobol"), "language 'cobol': expected one of python"),
    (dict(model="gpt-4"), "model 'gpt-4': expected a Claude model name"),
])
def test_bad_arguments_are_named(platform, kwargs, message):
    replay, e = run("stream_moving_average", **kwargs)
    assert isinstance(e, ValidationError) and message in str(e) and replay.requests == []

def test_failing_tests_go_back_to_claude_until_they_pass(platform):
    events = []
    replay, g = run("stream_word_counts_broken", "stream_word_counts_fixed", prompt="Count words ignoring case",
                    listener=lambda kind, data: events.append(kind))
    assert (g.status, g.rounds, g.test_run.passed) == ("passed", 2, 3)
    second = replay.requests[1]["messages"]
    assert [m["role"] for m in second] == ["user", "assistant", "user"]
    assert second[1]["content"] == "".join(deltas("stream_word_counts_broken"))
    assert "test_counts_ignore_case" in second[2]["content"] and "AssertionError" in second[2]["content"]
    assert [e for e in events if e != "text"] == ["checks", "tests", "round", "checks", "tests"]
    assert g.input_tokens == 405 + 702

def test_repair_rounds_are_limited(platform):
    replay, g = run("stream_word_counts_broken", "stream_word_counts_broken", prompt="Count words", repair_rounds=1)
    assert (g.status, g.rounds, len(replay.requests)) == ("failed", 2, 2)
    replay, g = run("stream_word_counts_broken", prompt="Count words", repair_rounds=0)
    assert (g.status, g.rounds, len(replay.requests)) == ("failed", 1, 1)

def test_code_that_cannot_work_is_invalid_and_repaired(platform):
    replay, g = run(edited("stream_moving_average", "total += v", "total += undefined_name"), "stream_moving_average")
    assert (g.status, g.rounds) == ("passed", 2)
    assert "F821" in replay.requests[1]["messages"][2]["content"] and "undefined_name" in replay.requests[1]["messages"][2]["content"]

def test_cancelling_stops_the_stream_and_keeps_what_came(platform):
    cancel = threading.Event()
    def listener(kind, data):
        if kind == "text": cancel.set()
    replay, g = run("stream_moving_average", listener=listener, cancel=cancel)
    assert g.status == "cancelled" and g.answer == deltas("stream_moving_average")[0]
    assert codegen.get_generation(g.id).status == "cancelled"

def test_history_search_needs_every_word_and_takes_wildcards_literally(platform):
    run("stream_moving_average", prompt="A moving average over a window")
    run("stream_sharpe_markdown", prompt="Explain the Sharpe ratio, 100% plainly", test=False)
    run("stream_word_counts_fixed", prompt="count_words ignoring case")
    assert [g.prompt for g in codegen.history("moving WINDOW")] == ["A moving average over a window"]
    assert [g.prompt for g in codegen.history("100%")] == ["Explain the Sharpe ratio, 100% plainly"]
    assert codegen.history("a_moving") == [] and [g.prompt for g in codegen.history("count_w")] == ["count_words ignoring case"]
    assert [g.prompt for g in codegen.history("def moving_average")] == ["A moving average over a window"]  # code too
    assert len(codegen.history()) == 3 and len(codegen.history(limit=1)) == 1
    with pytest.raises(ValidationError, match="limit 0: expected 1 to 1000"): codegen.history(limit=0)

def test_context_reaches_claude_labelled_and_is_stored_by_label(platform):
    import pandas as pd
    df = pd.DataFrame({"close": [101.25, 102.5], "account": ["ACC-SECRET-1", "ACC-SECRET-2"]})
    context = [("variable df", codegen.describe("df", df)), ("Err[3]", "ZeroDivisionError: division by zero")]
    replay, g = run("stream_moving_average", context=context)
    sent = replay.requests[0]["messages"][0]["content"]
    assert '<context label="variable df">' in sent and "close (float64)" in sent and "ZeroDivisionError" in sent
    assert "ACC-SECRET" not in sent and "101.25" not in sent  # no rows unless asked
    assert codegen.get_generation(g.id).context == "variable df, Err[3]"

def test_the_default_model_is_the_newest_sonnet_the_sdk_lists(platform):
    sonnets = [m for m in codegen.sdk_models() if m.startswith("claude-sonnet-") and m.count("-") <= 3]
    assert codegen.default_model() in sonnets
    settings(platform, model="claude-opus-4-8")
    assert codegen.default_model() == "claude-opus-4-8"

def test_wrong_prices_setting_is_named(platform):
    settings(platform, prices="sonnet three fifteen")
    with pytest.raises(ConfigError, match=r"\[codegen\] prices: 'sonnet three fifteen': expected 'family input output'"):
        codegen.cost("claude-sonnet-5", 1, 1)
