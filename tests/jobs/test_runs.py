"""Job runs end to end: each status of the life cycle, retries with backoff, a timeout and a cancel that stop the child
and its kernel, one claim per run, a webhook on final failure, the queue's concurrency limit, history pruning."""
import http.server, json, threading, time
import nbformat
import pytest
import sqlalchemy as sa
from aiplatform.core import Conflict, NotFound, ValidationError, load_settings
from aiplatform.jobs import reports
from aiplatform.jobs.runs import cancel, execute, get_run, job_runs, list_runs, prune, submit, work
from aiplatform.platform.store import get_engine
from conftest import clean_env, cli, transitions

def template(folder):
    "A report that sleeps `seconds`, then fails if asked, writing when it started and ended."
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell('seconds = 0.1\nfail = False\nlabel = "x"', metadata={"tags": ["parameters"]}),
                                         nbformat.v4.new_code_cell("import time\nstart = time.time()\ntime.sleep(seconds)\nassert not fail, 'asked to fail'\n"
                                                                   "open(f'{label}.times', 'w').write(f'{start} {time.time()}')")])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, folder/"sleeper.ipynb")
    return folder/"sleeper.ipynb"

@pytest.fixture
def s(tmp_path, monkeypatch):
    path = template(tmp_path)
    monkeypatch.setattr(reports, "templates", lambda: {"sleeper": path})
    return load_settings(env={}, platform={"data_dir": tmp_path/"data"})

def test_a_run_succeeds_with_its_notebook_page_and_log(s):
    run = execute(submit("sleeper", {"label": "a"}, user="ada", settings=s), s)
    assert (run.status, run.attempt, run.error, run.username) == ("succeeded", 1, None, "ada")
    names = sorted(p.name for p in (s.data_dir/"jobs"/str(run.id)).iterdir())
    assert names == ["a.times", "attempt-1.log", "sleeper.html", "sleeper.ipynb"] and run.out_dir == str(s.data_dir/"jobs"/str(run.id))
    assert 0.1 < run.seconds < 60 and run.started_ns >= run.queued_ns and run.finished_ns > run.started_ns

def test_bad_parameters_queue_nothing(s):
    for given, words in (({"sleep": 1}, "parameter 'sleep': report 'sleeper' has seconds, fail, label"),
                         ({"seconds": "soon"}, "parameter seconds = 'soon': expected a value like its default 0.1"),
                         ({"fail": 1}, "parameter fail = 1: expected true or false, like its default False")):
        with pytest.raises(ValidationError) as e: submit("sleeper", given, settings=s)
        assert str(e.value) == words
    with pytest.raises(ValidationError, match="retries 50: expected a number from 0 to 20"): submit("sleeper", retries=50, settings=s)
    assert list_runs(settings=s) == []

def test_a_failing_run_is_retried_with_backoff_then_posted_to_the_webhook(tmp_path, monkeypatch):
    posted = []
    class Hook(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            posted.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204), self.end_headers()
        def log_message(self, *a): pass
    server = http.server.HTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setattr(reports, "templates", lambda: {"sleeper": template(tmp_path)})
    s = load_settings(env={}, platform={"data_dir": tmp_path/"data"}, jobs={"webhook": f"http://127.0.0.1:{server.server_port}/hook"})
    start = time.monotonic()
    run = execute(submit("sleeper", {"fail": True}, retries=2, backoff_s=0.5, settings=s), s)
    assert run.status == "failed" and run.attempt == 3 and "asked to fail" in run.error and run.error.startswith("attempt 3: ")
    assert time.monotonic() - start > 0.5 + 1.0  # waited 0.5 s, then 1 s
    assert [p["status"] for p in posted] == ["failed"] and posted[0]["id"] == run.id and posted[0]["attempts"] == 3
    assert sorted(p.name for p in (s.data_dir/"jobs"/str(run.id)).glob("*.log")) == ["attempt-1.log", "attempt-2.log", "attempt-3.log"]
    server.shutdown()

def test_a_run_over_its_timeout_is_stopped(s):
    start = time.monotonic()
    run = execute(submit("sleeper", {"seconds": 60}, timeout_s=3, settings=s), s)
    assert run.status == "timed_out" and "still running after 3 s" in run.error
    assert time.monotonic() - start < 15
    assert not list((s.data_dir/"jobs"/str(run.id)).glob("*.times"))  # the kernel never reached the end

def test_a_running_run_is_cancelled_within_a_second(s):
    id = submit("sleeper", {"seconds": 60}, settings=s)
    worker = threading.Thread(target=execute, args=(id, s))
    worker.start()
    while get_run(id, settings=s).status != "running": time.sleep(0.05)
    time.sleep(2)  # papermill and its kernel started
    asked = time.monotonic()
    assert cancel(id, settings=s).cancel
    worker.join(20)
    run = get_run(id, settings=s)
    assert run.status == "cancelled" and run.error == "attempt 1: cancelled while running" and time.monotonic() - asked < 8
    with pytest.raises(Conflict, match="already cancelled"): cancel(id, settings=s)

def test_a_run_is_claimed_once_and_a_key_taken_once(s):
    id = submit("sleeper", settings=s)
    results = []
    def claim():
        try: results.append(execute(id, s).status)
        except Conflict as e: results.append(str(e))
    threads = [threading.Thread(target=claim) for _ in range(3)]
    for t in threads: t.start()
    for t in threads: t.join(60)
    assert sorted(results)[-1] == "succeeded" and sum(r.endswith("not queued; only a queued run can be executed") for r in results) == 2
    submit("sleeper", key="daily:2026-12-02T06:00", settings=s)
    with pytest.raises(Conflict, match="run key 'daily:2026-12-02T06:00': already taken"): submit("sleeper", key="daily:2026-12-02T06:00", settings=s)

def test_a_user_sees_and_cancels_only_their_runs(s):
    id = submit("sleeper", user="ada", settings=s)
    with pytest.raises(NotFound, match=f"run {id}: no such run of bob"): cancel(id, user="bob", settings=s)
    assert [r.id for r in list_runs(user="bob", settings=s)] == [] and cancel(id, user="ada", settings=s).status == "cancelled"

def test_the_queue_runs_at_most_workers_at_once(tmp_path, monkeypatch):
    monkeypatch.setattr(reports, "templates", lambda: {"sleeper": template(tmp_path)})
    s = load_settings(env={}, platform={"data_dir": tmp_path/"data"}, jobs={"workers": 2})
    ids = [submit("sleeper", {"seconds": 1.5, "label": str(i)}, settings=s) for i in range(3)]
    assert work(s) == 3
    spans = [tuple(map(float, next((s.data_dir/"jobs"/str(i)).glob("*.times")).read_text().split())) for i in ids]
    overlapping = max(sum(a <= t < b for a, b in spans) for t, _ in spans)
    assert overlapping == 2, spans

def test_prune_forgets_old_runs_and_their_folders(s):
    run = execute(submit("sleeper", settings=s), s)
    with get_engine(s).begin() as conn: conn.execute(sa.update(job_runs).where(job_runs.c.id == run.id).values(finished_ns=run.finished_ns - 31 * 86_400 * 10**9))
    assert prune(s) == 1 and list_runs(settings=s) == []
    assert not (s.data_dir/"jobs"/str(run.id)).exists()

def test_the_jobs_command(tmp_path):
    env = clean_env(AIPLATFORM_PLATFORM__DATA_DIR=tmp_path)
    first = cli("jobs", "submit", "backtest_report", "-p", "symbol", "EURUSD", env=env)
    assert first.returncode == 0, first.stderr
    id = int(first.stdout)
    listed = cli("jobs", "list", env=env)
    assert f"{id:>6}  backtest_report" in listed.stdout and "queued" in listed.stdout
    assert "cancelled" in cli("jobs", "cancel", str(id), env=env).stdout
    refused = cli("jobs", "run", "backtest_report", "-p", "splits", "two", env=env)
    assert refused.returncode == 2 and "parameter splits = 'two': expected a value like its default 4" in refused.stderr
    shown = cli("jobs", "show", str(id), env=env)
    assert "parameters {'symbol': 'EURUSD'}" in shown.stdout

def test_a_dask_cluster_runs_the_attempts_with_the_same_records(tmp_path, monkeypatch):
    from distributed import LocalCluster
    monkeypatch.setattr(reports, "templates", lambda: {"sleeper": template(tmp_path)})
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as cluster:
        s = load_settings(env={}, platform={"data_dir": tmp_path/"data"}, jobs={"dask_address": cluster.scheduler_address})
        ok = execute(submit("sleeper", {"label": "dask"}, settings=s), s)
        assert ok.status == "succeeded" and (tmp_path/"data"/"jobs"/str(ok.id)/"dask.times").exists()
        assert any(key == f"aiplatform-run-{ok.id}-1" for key, *_ in transitions(cluster))  # a task of the cluster's
        failed = execute(submit("sleeper", {"fail": True}, settings=s), s)
        assert failed.status == "failed" and "asked to fail" in failed.error
        slow = submit("sleeper", {"seconds": 60}, settings=s)
        worker = threading.Thread(target=execute, args=(slow, s))
        worker.start()
        while get_run(slow, settings=s).status != "running": time.sleep(0.05)
        time.sleep(2)
        cancel(slow, settings=s)
        worker.join(20)
        assert get_run(slow, settings=s).status == "cancelled"
    bad = load_settings(env={}, platform={"data_dir": tmp_path/"data"}, jobs={"dask_address": "tcp://127.0.0.1:1"})
    unreachable = execute(submit("sleeper", settings=bad), bad)  # recorded as failed, saying why, not left running
    assert unreachable.status == "failed" and "[jobs] dask_address = 'tcp://127.0.0.1:1': cannot reach the cluster" in unreachable.error
