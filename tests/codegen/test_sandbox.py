"The sandbox that runs generated tests: its limits hold, secrets stay out of reach, outcomes are reported by name."
import time
import pytest
from aiplatform.core import get_settings
from aiplatform.codegen.sandbox import check_code, ruff_bin, run_tests
from conftest import REPO

@pytest.fixture(autouse=True)
def secrets(tmp_path, monkeypatch):
    "A caller with an API key in its environment and in a settings file of its data folder."
    settings = tmp_path/"data"/"settings.ini"
    settings.parent.mkdir()
    settings.write_text("[codegen]\napi_key = sk-ant-in-a-file\n")
    monkeypatch.setenv("AIPLATFORM_PLATFORM__DATA_DIR", str(tmp_path/"data"))
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-in-the-environment")
    get_settings(reload=True)
    yield settings
    get_settings(reload=True)

def test_passing_and_failing_tests_are_reported_by_name():
    run = run_tests("def add(a, b):\n    return a + b\n", "def test_ok():\n    assert add(1, 2) == 3\n\n"
                    "def test_bad():\n    assert add(1, 2) == 4, 'wrong sum'\n\ndef test_raises():\n    add(1)\n")
    assert run.status == "failed" and [(t["name"], t["outcome"]) for t in run.tests] == [
        ("test_ok", "passed"), ("test_bad", "failed"), ("test_raises", "error")]
    assert "AssertionError: wrong sum" in run.tests[1]["error"] and 'File "tests.py", line 5' in run.tests[1]["error"]
    assert "missing 1 required positional argument" in run.tests[2]["error"]
    assert run.summary.startswith("tests: 1/3 passed") and "test_bad" in run.failure

def test_an_endless_loop_is_killed_at_the_time_limit():
    start = time.perf_counter()
    run = run_tests("def spin():\n    while True:\n        pass\n", "def test_spin():\n    spin()\n", timeout=1.5)
    assert run.status == "timeout" and time.perf_counter() - start < 5
    assert run.summary == "tests: stopped at the time limit"

def test_an_endless_loop_that_forks_threads_is_killed_too():
    code = "import threading\ndef spin():\n    while True: pass\n"
    tests = "def test_threads():\n    for _ in range(4): threading.Thread(target=spin, daemon=True).start()\n    spin()\n"
    start = time.perf_counter()
    assert run_tests(code, tests, timeout=1).status == "timeout" and time.perf_counter() - start < 5

@pytest.mark.parametrize("hog", ["x = bytearray(4 << 30)", "x = []\n    while True: x.append(' ' * 65536)"])
def test_a_memory_hog_is_stopped_at_the_memory_limit(hog):
    run = run_tests("", f"def test_hog():\n    {hog}\n", timeout=30, memory_mb=256)
    assert run.status == "memory" and run.summary == "tests: stopped at the memory limit"
    assert "memory limit" in run.failure

def test_generated_tests_cannot_reach_the_api_key(secrets):
    tests = ("import os\n"
             "def test_environment():\n    assert not any('sk-ant' in v for v in os.environ.values())\n\n"
             f"def test_settings_file():\n    open({str(secrets)!r}).read()\n\n"
             "def test_parent_environment():\n    open(f'/proc/{os.getppid()}/environ').read()\n\n"
             f"def test_repository_settings():\n    open({str(REPO/'settings.ini')!r}).read()\n\n"
             "def test_home_folder():\n    open(os.path.expanduser('~/../../etc/passwd')).read()\n\n"
             "def test_own_proc_entry():\n    assert open('/proc/self/status').read().startswith('Name:')\n")
    run = run_tests("", tests)
    assert [t["outcome"] for t in run.tests] == ["passed", "error", "error", "error", "error", "passed"], run.tests
    assert f"No such file or directory: {str(secrets)!r}" in run.tests[1]["error"]  # the data folder is not there
    assert "sk-ant" not in run.stdout + run.stderr + str(run.tests)

def test_writes_stay_in_the_folder_there_is_no_network_and_processes_stay_inside(tmp_path):
    tests = (f"import os, socket, subprocess\n"
             f"def test_write_inside():\n    open('out.txt', 'w').write('ok')\n    assert open('out.txt').read() == 'ok'\n\n"
             f"def test_write_outside():\n    open({str(tmp_path/'escape.txt')!r}, 'w').write('x')\n\n"
             f"def test_network():\n    socket.create_connection(('127.0.0.1', 9))\n\n"
             f"def test_process():\n    assert subprocess.run(['ls', {str(tmp_path)!r}]).returncode != 0\n\n"
             f"def test_system():\n    assert os.system('touch {tmp_path/'escape.txt'}') != 0\n")
    run = run_tests("", tests)
    assert [t["outcome"] for t in run.tests] == ["passed", "error", "error", "passed", "passed"], run.tests
    assert not (tmp_path/"escape.txt").exists()
    assert "No such file or directory" in run.tests[1]["error"] and "Connection refused" in run.tests[2]["error"]

def test_code_that_does_not_load_is_an_error_and_no_tests_is_said():
    run = run_tests("def f(:\n", "def test_f():\n    pass\n")
    assert run.status == "error" and "SyntaxError" in run.error and 'File "code.py", line 1' in run.error
    assert run_tests("x = 1", "").status == "no_tests"

def test_output_is_captured_and_the_libraries_load():
    run = run_tests("import numpy as np, pandas as pd\nprint('hello from the sandbox')",
                    "def test_pandas():\n    assert pd.Series(np.arange(4)).sum() == 6\n")
    assert run.status == "passed" and run.stdout == "hello from the sandbox\n"

def test_limits_are_checked():
    with pytest.raises(Exception, match="memory_mb 10: expected 64 to 65536"): run_tests("", "", memory_mb=10)

@pytest.mark.skipif(ruff_bin() is None, reason="ruff is not installed")
def test_checks_tell_errors_from_warnings():
    checks = check_code("import os\nimport sys\n\ndef f():\n    return undefined + sys.maxsize\n")
    assert [(c.rule, c.fatal, c.line) for c in checks] == [("F401", False, 1), ("F821", True, 5)]
    assert check_code("def f():\n    return df\n", known=["df"]) == []
    assert [c.rule for c in check_code("x = (\n")] == ["syntax"]
