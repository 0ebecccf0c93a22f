"The Claude magics in a real AI Platform kernel, talking over HTTP to a local stand-in for the Anthropic API."
import pytest
from jupyter_client.manager import start_new_kernel
from conftest import clean_env
from fake_anthropic import FakeAnthropic

@pytest.fixture(scope="module")
def fake():
    f = FakeAnthropic()
    yield f
    f.close()

def start(tmp_path, **env):
    return start_new_kernel(kernel_name="aiplatform", cwd=str(tmp_path), env=clean_env(
        AIPLATFORM_PLATFORM__DATA_DIR=tmp_path/"data", JUPYTER_RUNTIME_DIR=tmp_path/"runtime", HOME=tmp_path, **env))

@pytest.fixture(scope="module")
def kernel(fake, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("kernel")
    km, kc = start(tmp, AIPLATFORM_CODEGEN__BASE_URL=fake.url, AIPLATFORM_CODEGEN__MAX_RETRIES=0,
                   ANTHROPIC_API_KEY="sk-ant-kernel-test")
    yield kc
    kc.stop_channels()
    km.shutdown_kernel(now=True)

def execute(kc, code):
    "Run `code`; the reply content and the messages it published."
    messages = []
    reply = kc.execute_interactive(code, timeout=120, output_hook=messages.append)
    return reply["content"], messages

def result(kc, code):
    "The text of `code`'s result."
    return [m["content"]["data"]["text/plain"] for m in execute(kc, code)[1] if m["msg_type"] == "execute_result"][0]

def next_input(reply):
    return [p["text"] for p in reply.get("payload", []) if p["source"] == "set_next_input"]

def shown(messages, kind="text/markdown"):
    return [m["content"]["data"][kind] for m in messages if m["msg_type"] in ("display_data", "update_display_data")
            and kind in m["content"]["data"]]

def test_a_cell_streams_its_answer_and_the_code_goes_below_unrun(kernel, fake):
    fake.expect("stream_moving_average")
    execute(kernel, "prices = [101.5, 102.25, 101.0]")
    reply, messages = execute(kernel, "%%claude\nWrite a moving average for {prices}")
    assert reply["status"] == "ok", reply
    updates = shown(messages)
    assert len(updates) > 20 and all(b.startswith(a) for a, b in zip(updates, updates[1:]))  # it grew piece by piece
    assert updates[-1].startswith("Here is a moving average")
    [code] = next_input(reply)
    assert code.startswith("def moving_average(values, window):")
    summary = shown(messages, "text/html")[-1]
    assert "claude-sonnet" in summary and "412 in /" in summary and "$0.0" in summary and "3/3 passed" in summary
    sent = fake.requests[-1]["body"]["messages"][-1]["content"]
    assert "prices: list of 3 items (float)" in sent and "101.5" not in sent  # names and shapes, not data
    assert result(kernel, "'moving_average' in dir()") == "False"  # it never ran

def test_in_out_and_err_references_attach_the_notebook(kernel, fake):
    fake.expect("stream_fix_mean")
    _, _ = execute(kernel, "def mean(values): return sum(values) / len(values)")
    reply, _ = execute(kernel, "mean([])")
    failing = reply["execution_count"]
    reply, _ = execute(kernel, "41 + 1")
    out = reply["execution_count"]
    reply, _ = execute(kernel, f"%%claude -f markdown\nWhy does {{In[{failing}]}} fail with {{Err[{failing}]}}? See {{Out[{out}]}}.")
    assert reply["status"] == "ok" and next_input(reply) == []  # markdown: nothing goes into a cell
    sent = fake.requests[-1]["body"]["messages"][-1]["content"]
    assert f'<context label="In[{failing}]">\nmean([])' in sent and "ZeroDivisionError: division by zero" in sent
    assert f'<context label="Out[{out}]">\nOut[{out}]: int = 42' in sent
    assert f"Why does cell In[{failing}] fail with the error Err[{failing}]? See the output Out[{out}]." in sent

def test_claude_fix_explains_and_puts_the_fixed_cell_below(kernel, fake):
    fake.expect("stream_fix_mean")
    execute(kernel, "mean([])")
    reply, messages = execute(kernel, "%claude fix")
    assert reply["status"] == "ok"
    assert next_input(reply)[0].startswith("def mean(values):") and "Why it failed" in shown(messages)[-1]
    sent = fake.requests[-1]["body"]
    assert "ZeroDivisionError" in sent["messages"][-1]["content"] and len(sent["messages"]) > 1  # memory went along

def test_dataframes_send_columns_not_rows_unless_asked(kernel, fake):
    fake.expect("stream_sharpe_markdown", "stream_sharpe_markdown")
    execute(kernel, "import pandas as pd\ntrades = pd.DataFrame({'account': ['ACC-7781'], 'pnl': [12.5]})")
    execute(kernel, "%%claude -f text\nSummarise {trades}")
    assert "account (str), pnl (float64)" in fake.requests[-1]["body"]["messages"][-1]["content"]
    assert "ACC-7781" not in fake.requests[-1]["body"]["messages"][-1]["content"]
    execute(kernel, "%%claude -f text -r\nSummarise {trades}")
    assert "ACC-7781" in fake.requests[-1]["body"]["messages"][-1]["content"]

def test_history_lists_and_searches_the_generations(kernel):
    reply, messages = execute(kernel, "%claude history moving")
    [table] = [m["content"]["data"]["text/html"] for m in messages if m["msg_type"] == "execute_result"]
    assert "Write a moving average for `prices`<" in table and "passed" in table and "Summarise" not in table

def test_memory_is_kept_per_notebook_and_reset_forgets(kernel, fake):
    fake.expect("stream_sharpe_markdown")
    execute(kernel, "%claude reset")
    execute(kernel, "%%claude -f markdown\nWhat is the Sharpe ratio?")
    assert len(fake.requests[-1]["body"]["messages"]) == 1

def test_errors_are_one_line_without_a_traceback(kernel, fake):
    fake.expect("error_401_invalid_key")
    reply, messages = execute(kernel, "%%claude\nanything")
    assert reply["status"] == "error" and reply["ename"] == "UsageError"
    assert reply["evalue"].startswith("Anthropic refused the API key") and "Traceback" not in reply["evalue"]
    reply, _ = execute(kernel, "%%claude\nexplain {Err[999]}")
    assert reply["evalue"] == "Err[999]: cell 999 raised no error"
    reply, _ = execute(kernel, "%claude frobnicate")
    assert "%claude: expected fix, history [words] or reset" in reply["evalue"]

def test_without_a_key_the_magic_says_how_to_set_one(tmp_path):
    km, kc = start(tmp_path)
    try:
        reply, _ = execute(kc, "%%claude\nanything")
        assert reply["status"] == "error" and "set the ANTHROPIC_API_KEY environment variable" in reply["evalue"]
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
