"""The code sandbox against hostile code: each escape that worked against the audit-hook sandbox (issue 10), done
through ctypes so no Python-level check can see it, and each must now fail because the kernel refuses it."""
import json, os, platform, socket, subprocess, sys, time, uuid
import pytest
from aiplatform.codegen import sandbox
from aiplatform.codegen.client import Generation, _verify
from aiplatform.core import get_settings
from aiplatform.codegen.sandbox import PROCESS_LIMIT, TestRun, run_tests

LIBC = "import ctypes, os\nlibc = ctypes.CDLL(None, use_errno=True)\n"

@pytest.fixture(autouse=True)
def data_folder(tmp_path, monkeypatch):
    "A caller holding the Anthropic key in its environment and an admin key and settings in its data folder."
    data = tmp_path/"data"
    data.mkdir()
    (data/"admin.key").write_text("aip_admin_secret")
    (data/"settings.ini").write_text("[codegen]\napi_key = sk-ant-in-a-file\n")
    monkeypatch.setenv("AIPLATFORM_PLATFORM__DATA_DIR", str(data))
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-in-the-environment")
    get_settings(reload=True)
    yield data
    get_settings(reload=True)

def outcomes(run): return {t["name"]: t["outcome"] for t in run.tests}

def test_native_code_cannot_read_any_environment(tmp_path):
    """A caller started with the key in its environment (as a kernel or the gateway is): libc.system in a shell reads
    its parent's environ and every process's; no key anywhere."""
    tests = ("def test_parent():\n    cmd = \"tr '\\\\0' '\\\\n' < /proc/%d/environ | grep -q 'sk[-]ant'\" % os.getppid()\n"
             "    assert libc.system(cmd.encode()) != 0\n\n"
             "def test_every_process():\n    assert libc.system(b\"grep -rqs 'sk[-]ant' /proc/*/environ /proc/*/cmdline\") != 0\n\n"
             "def test_own():\n    assert not any('sk-ant' in v for v in os.environ.values())\n")
    caller = ("import json, sys\nfrom aiplatform.codegen.sandbox import run_tests\n"
              "print(json.dumps(run_tests(sys.argv[1], sys.argv[2]).to_dict()))\n")
    out = subprocess.run([sys.executable, "-c", caller, LIBC, tests], capture_output=True, text=True, timeout=120,
                         env=os.environ | {"ANTHROPIC_API_KEY": "sk-ant-in-the-environment", "HOME": str(tmp_path)})
    run = TestRun(**json.loads(out.stdout))
    assert run.status == "passed" and len(run.tests) == 3, run.failure
    assert "sk-ant" not in run.stdout + run.stderr

def test_only_the_sandboxs_own_processes_are_visible():
    run = run_tests(LIBC, "def test_pids():\n    assert len([p for p in os.listdir('/proc') if p.isdigit()]) <= 4, os.listdir('/proc')\n")
    assert run.status == "passed", run.failure

def test_the_admin_key_and_the_data_folder_are_out_of_reach(data_folder):
    key = data_folder/"admin.key"
    tests = (f"def test_link():\n    assert libc.link({str(key).encode()!r}, b'k') != 0\n    assert not os.path.exists('k')\n\n"
             f"def test_open():\n    open({str(key)!r}).read()\n\n"
             f"def test_list():\n    os.listdir({str(data_folder)!r})\n\n"
             "def test_home():\n    os.listdir(os.path.expanduser('~root'))\n")
    run = run_tests(LIBC, tests)
    assert outcomes(run) == {"test_link": "passed", "test_open": "error", "test_list": "error", "test_home": "error"}, run.tests
    assert "aip_admin_secret" not in str(run.to_dict())

def test_files_outside_cannot_be_renamed_truncated_chmodded_or_deleted(tmp_path):
    victim = tmp_path/"victim.txt"
    victim.write_text("precious")
    victim.chmod(0o644)
    v = str(victim).encode()
    tests = (f"def test_native():\n    assert libc.truncate({v!r}, 0) != 0 and libc.chmod({v!r}, 0o777) != 0\n"
             f"    assert libc.rename({v!r}, b'/sandbox/x') != 0 and libc.unlink({v!r}) != 0\n"
             f"    assert libc.system(b'rm -f {v.decode()}; echo x > {v.decode()}') != 0\n")
    run = run_tests(LIBC, tests)
    assert run.status == "passed", run.failure
    assert victim.read_text() == "precious" and victim.stat().st_mode & 0o777 == 0o644

def test_the_system_outside_python_and_the_package_is_not_there():
    "The root holds the system's folders, /dev, /proc, /sandbox and the top folders of Python's and the package's paths."
    top = sorted({p.split("/")[1] for p in sandbox._readonly_paths()} | {"dev", "proc", "sandbox"})
    tests = (f"def test_root_folder():\n    assert sorted(os.listdir('/')) == {top!r}\n\n"
             "def test_etc():\n    assert set(os.listdir('/etc')) <= {'ld.so.cache', 'localtime'}\n\n"
             "def test_read_only():\n    open('/usr/x', 'w')\n")
    run = run_tests(LIBC, tests)
    assert outcomes(run) == {"test_root_folder": "passed", "test_etc": "passed", "test_read_only": "error"}, run.failure
    assert "Read-only file system" in run.tests[2]["error"]

def test_a_shell_runs_as_nobody_in_particular_without_capabilities():
    tests = ("def test_shell():\n    assert libc.system(b'test $(id -u) -ne 0') == 0\n"
             "    assert os.getuid() != 0 and os.geteuid() != 0\n\n"
             "def test_no_capabilities():\n    caps = dict(l.split(':') for l in open('/proc/self/status') if l.startswith('Cap'))\n"
             "    assert int(caps['CapEff'], 16) == int(caps['CapPrm'], 16) == 0, caps\n\n"
             "def test_no_privileges():\n    assert 'NoNewPrivs:\\t1' in open('/proc/self/status').read()\n")
    run = run_tests(LIBC, tests)
    assert run.status == "passed", run.failure

def test_no_tcp_or_udp_reaches_the_host():
    with socket.socket() as tcp, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        tcp.bind(("127.0.0.1", 0)); tcp.listen(); tcp.settimeout(0.5)
        udp.bind(("127.0.0.1", 0)); udp.settimeout(0.5)
        tests = (f"import socket\ndef test_tcp():\n    socket.create_connection(('127.0.0.1', {tcp.getsockname()[1]}), timeout=2)\n\n"
                 f"def test_udp():\n    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
                 f"    s.sendto(b'escaped', ('127.0.0.1', {udp.getsockname()[1]}))\n    s.sendto(b'escaped', ('10.0.2.2', 53))\n\n"
                 "def test_interfaces():\n    assert [n for _, n in socket.if_nameindex()] == ['lo']\n")
        run = run_tests(LIBC, tests)
        assert outcomes(run)["test_tcp"] == "error" and outcomes(run)["test_interfaces"] == "passed", run.tests
        with pytest.raises(TimeoutError): tcp.accept()
        with pytest.raises(TimeoutError): udp.recvfrom(100)

def test_processes_are_limited():
    tests = ("import signal, time\ndef test_fork_bomb():\n    pids = []\n    try:\n        for _ in range(100):\n"
             "            pids.append(os.fork())\n            if pids[-1] == 0:\n                time.sleep(5); os._exit(0)\n"
             "    except OSError as e:\n        print('stopped after', len(pids), e)\n    for pid in pids:\n"
             "        os.kill(pid, signal.SIGKILL); os.waitpid(pid, 0)\n    assert len(pids) < 40\n\n"
             "def test_children_see_only_the_sandbox():\n    import subprocess  # _posixsubprocess.fork_exec underneath\n"
             "    out = subprocess.run(['sh', '-c', 'ls /proc | grep -c [0-9]'], capture_output=True, text=True).stdout\n"
             "    assert 3 <= int(out) <= 8, out\n")
    run = run_tests(LIBC, tests, timeout=20)
    assert run.status == "passed", run.failure
    stopped = int(run.stdout.split("stopped after ")[1].split()[0])
    assert stopped < PROCESS_LIMIT and "Resource temporarily unavailable" in run.stdout

def _processes_with(marker: str) -> list[int]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if marker.encode() in open(f"/proc/{pid}/cmdline", "rb").read(): found.append(int(pid))
        except OSError: pass
    return found

@pytest.mark.parametrize("how", ["ends", "times out"])
def test_no_process_outlives_the_run(how):
    "A setsid() child (native double fork, new session) is killed with the sandbox, when the run ends or times out."
    seconds = f"{30 + uuid.uuid4().int % 1000 / 1000:.3f}"
    spin = "\n    time.sleep(60)" if how == "times out" else ""
    tests = f"def test_detach():\n    assert libc.system(b'setsid sleep {seconds} >/dev/null 2>&1 &') == 0\n    time.sleep(0.3){spin}\n"
    run = run_tests(LIBC + "import time\n", tests, timeout=3)
    assert run.status == ("timeout" if how == "times out" else "passed"), run.failure
    deadline = time.monotonic() + 2
    while _processes_with(f"sleep\0{seconds}") and time.monotonic() < deadline: time.sleep(0.05)
    assert _processes_with(f"sleep\0{seconds}") == []

def test_a_forged_result_file_and_an_early_exit_are_not_a_pass():
    code = LIBC + "open('result.json', 'w').write('{\"stage\": \"run\", \"tests\": [{\"name\": \"test_a\", \"outcome\": \"passed\"}]}')\n"
    run = run_tests(code, "def test_a():\n    os._exit(0)\n\ndef test_b():\n    assert False\n")
    assert run.status == "crashed" and run.passed == 0
    assert "ended (exit status 0) before reporting test_a" in run.error

def test_the_report_pipe_is_out_of_the_codes_reach():
    "Only the worker's own pipe is open in the generated code's process; lines it forges for other tests are refused."
    tests = ("import stat\ndef test_fds():\n    pipes = []\n    for fd in range(3, 1024):\n"
             "        try: pipes += [fd] if stat.S_ISFIFO(os.fstat(fd).st_mode) else []\n        except OSError: pass\n"
             "    for fd in pipes:\n        try: os.write(fd, b'{\"name\": \"test_other\", \"outcome\": \"passed\", \"duration_ms\": 1, \"error\": null}\\n')\n"
             "        except OSError: pass\n    print(len(pipes))\n")
    run = run_tests(LIBC, tests)
    assert run.stdout.strip() == "1"  # its own pipe to the runner, not the runner's report
    assert run.status == "crashed" and "does not match its tests" in run.error

def test_unavailable_isolation_runs_nothing_and_says_why_in_one_line(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # no bwrap on the PATH
    sandbox.sandbox_problem.cache_clear()
    try:
        marker = tmp_path/"ran"
        run = run_tests("", f"def test_a():\n    open({str(marker)!r}, 'w')\n")
        assert run.status == "unavailable" and run.tests == [] and not marker.exists()
        assert run.summary == "tests: not run (no sandbox on this machine: bubblewrap is not installed (apt-get install bubblewrap))"
        g = Generation("p", "claude-sonnet-5-5", code="def f():\n    return 1\n", tests="def test_f():\n    assert f() == 1\n")
        assert _verify(g, True, (), lambda *a: None) is None  # nothing to repair
        assert g.status == "untested" and "no sandbox on this machine" in g.summary
    finally: sandbox.sandbox_problem.cache_clear()

def test_a_platform_not_started_by_root_gets_a_user_namespace(monkeypatch):
    "The path a user's own `make run` takes: bubblewrap maps the user to nobody and forbids nested user namespaces."
    monkeypatch.setattr(sandbox.os, "geteuid", lambda: 1000)
    tests = ("def test_nobody():\n    assert (os.getuid(), os.getgid()) == (65534, 65534)\n\n"
             "def test_no_nested_namespaces():\n    assert libc.unshare(0x10000000) != 0  # CLONE_NEWUSER\n\n"
             "def test_no_capabilities():\n    caps = dict(l.split(':') for l in open('/proc/self/status') if l.startswith('Cap'))\n"
             "    assert int(caps['CapEff'], 16) == 0, caps\n")
    run = run_tests(LIBC, tests)
    assert run.status == "passed", run.failure

@pytest.mark.skipif(platform.machine() != "x86_64", reason="the system call numbers below are x86-64's")
def test_the_seccomp_filter_refuses_what_a_test_has_no_use_for():
    "New namespaces (also through a raw clone), tracing, keyrings, BPF, io_uring and mounts: EPERM; threads and fork work."
    code = LIBC + ("import errno, threading\ndef refused(nr, *args):\n"
                   "    r = libc.syscall(nr, *map(ctypes.c_long, args))\n    if r == 0 and nr == 56: os._exit(0)  # a forked child\n"
                   "    return r == -1 and ctypes.get_errno() == errno.EPERM\n")
    tests = ("def test_namespaces():\n    assert refused(272, 0x10000000) and refused(272, 0x40000000) and refused(56, 0x40000000 | 17, 0, 0, 0, 0)\n\n"
             "def test_ptrace():\n    assert refused(101, 0, 0, 0, 0)\n\n"
             "def test_keyring_bpf_io_uring_mount():\n    assert refused(250, 0, -3, 0) and refused(321, 0, 0, 0) and refused(425, 1, 0)\n"
             "    assert refused(165, 0, 0, 0, 0, 0)\n\n"
             "def test_threads_and_processes_still_work():\n    t = threading.Thread(target=print, args=('thread',)); t.start(); t.join()\n"
             "    pid = os.fork()\n    if pid == 0: os._exit(7)\n    assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 7\n")
    run = run_tests(code, tests)
    assert run.status == "passed", run.failure
    assert run.stdout == "thread\n"
