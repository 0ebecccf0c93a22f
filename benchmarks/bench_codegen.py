"""What code generation adds on our side: the time between a streamed token leaving the anthropic SDK and reaching
the Code Generator's widget or a `%%claude` cell's output, and the sandbox's start-up for a test run.

The real SDK reads a recorded answer (tests/recordings/anthropic/stream_moving_average.json, 26 text deltas of a few tokens) from an
httpx2.MockTransport, so no network time is in the figures. Each token's time is stamped as the SDK's stream yields
it and again when it has reached the widget (its `value` is set and sent to the comm) or the cell (the display
publisher has sent the updated Markdown). Peers, side by side: the SDK's own time per token on the same stream
(iterating `text_stream` and nothing else), and running the same generated test with pytest in a fresh process.
The last line is a JSON object. `--quick` (run by `make test`): 3 runs of each instead of 40 (and 10 of pytest).
"""
import argparse, json, os, statistics, subprocess, sys, tempfile, time
from pathlib import Path
import numpy as np
from anthropic.lib.streaming import MessageStream

REPO = Path(__file__).resolve().parents[1]
RECORDING = REPO/"tests"/"recordings"/"anthropic"/"stream_moving_average.json"
RUNS, PYTEST_RUNS = 40, 10

os.environ |= {"AIPLATFORM_PLATFORM__DATA_DIR": tempfile.mkdtemp(), "ANTHROPIC_API_KEY": "sk-ant-bench"}
from aiplatform.codegen import client as codegen  # noqa: E402  (after the environment is set)
from aiplatform.codegen.sandbox import run_tests  # noqa: E402

left = []  # perf_counter_ns when the SDK yielded each text event
_iter = MessageStream.__iter__
def _timed(self):
    for event in _iter(self):
        if event.type == "text": left.append(time.perf_counter_ns())
        yield event
MessageStream.__iter__ = _timed

def client():
    return codegen.make_client(codegen.Replay(codegen.recording(RECORDING)).http_client())

def overheads(run_once, arrived) -> np.ndarray:
    "Milliseconds from the SDK to the destination, per token, over RUNS generations."
    out = []
    for _ in range(RUNS):
        left.clear(); arrived.clear()
        run_once()
        assert len(left) == len(arrived) > 20, (len(left), len(arrived))
        out += [(b - a) / 1e6 for a, b in zip(left, arrived)]
    return np.array(out)

def widget_path() -> np.ndarray:
    from aiplatform.codegen.app import CodeGenerator
    app, arrived = CodeGenerator(), []
    app.answer.observe(lambda change: change["new"] and arrived.append(time.perf_counter_ns()), "value")  # not the reset
    app.prompt.value = "A moving average of a list over a window"
    def once():
        app.client = client()
        app.generate()
    return overheads(once, arrived)

def cell_path() -> np.ndarray:
    from IPython.core.interactiveshell import InteractiveShell
    import aiplatform
    shell = InteractiveShell.instance()
    aiplatform.load_ipython_extension(shell)
    magics, arrived = shell.magics_manager.registry["ClaudeMagics"], []
    publish = shell.display_pub.publish
    def timed_publish(data, *args, **kwargs):
        publish(data, *args, **kwargs)
        if "text/markdown" in data and kwargs.get("update"): arrived.append(time.perf_counter_ns())
    shell.display_pub.publish = timed_publish
    def once():
        magics.client, magics.memory = client(), []
        magics.claude("--no-tests", "A moving average of a list over a window")
    with open(os.devnull, "w") as null:
        stdout, sys.stdout = sys.stdout, null
        try: return overheads(once, arrived)
        finally: sys.stdout = stdout

def sdk_per_token() -> float:
    "The SDK's own milliseconds per text token on the same stream (the peer)."
    times = []
    for _ in range(RUNS):
        c = client()
        start = time.perf_counter()
        with c.messages.stream(model="claude-sonnet-5-5", max_tokens=1024, messages=[{"role": "user", "content": "x"}]) as s:
            n = sum(1 for _ in s.text_stream)
        times.append((time.perf_counter() - start) * 1e3 / n)
    return statistics.median(times)

CODE, TESTS = "def add(a, b):\n    return a + b\n", "def test_add():\n    assert add(2, 3) == 5\n"

def sandbox_ms() -> float:
    runs = [run_tests(CODE, TESTS) for _ in range(RUNS)]
    assert all(r.status == "passed" for r in runs)
    return statistics.median(r.duration_ms for r in runs)

def pytest_ms() -> float:
    "The same test run by pytest in a fresh process (the peer)."
    with tempfile.TemporaryDirectory() as folder:
        Path(folder, "test_generated.py").write_text(CODE + "\n" + TESTS)
        times = []
        for _ in range(PYTEST_RUNS):
            start = time.perf_counter()
            subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_generated.py"], cwd=folder,
                           check=True, capture_output=True)
            times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)

if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="3 runs of each (a few seconds)")
    quick = ap.parse_args().quick
    if quick: RUNS, PYTEST_RUNS = 3, 3
    widget, cell = widget_path(), cell_path()
    sdk = sdk_per_token()
    ours, peer = sandbox_ms(), pytest_ms()
    p = lambda a, q: float(np.percentile(a, q))
    print(f"{'path':<34}{'p50 ms':>10}{'p99 ms':>10}{'deltas':>9}")
    print(f"{'SDK -> Code Generator widget':<34}{p(widget, 50):>10.3f}{p(widget, 99):>10.3f}{len(widget):>9}")
    print(f"{'SDK -> %%claude cell output':<34}{p(cell, 50):>10.3f}{p(cell, 99):>10.3f}{len(cell):>9}")
    print(f"{'peer: the SDK itself, per token':<34}{sdk:>10.3f}")
    print(f"overhead / SDK time per token: widget {p(widget, 50) / sdk:.2f}x, cell {p(cell, 50) / sdk:.2f}x")
    print(f"sandbox test run (start to result): {ours:.1f} ms; peer pytest in a fresh process: {peer:.1f} ms; "
          f"pytest / sandbox = {peer / ours:.1f}x")
    both = np.concatenate([widget, cell])
    print(json.dumps({"token_overhead_p50_ms": round(p(both, 50), 4), "token_overhead_p99_ms": round(p(both, 99), 4),
                      "widget_p50_ms": round(p(widget, 50), 4), "widget_p99_ms": round(p(widget, 99), 4),
                      "cell_p50_ms": round(p(cell, 50), 4), "cell_p99_ms": round(p(cell, 99), 4),
                      "sdk_per_token_ms": round(sdk, 4), "sandbox_start_ms": round(ours, 1), "pytest_run_ms": round(peer, 1)} | ({"quick": True} if quick else {})))
