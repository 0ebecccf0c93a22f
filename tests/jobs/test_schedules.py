"""Schedules: no scheduled time ever runs twice with two schedulers ticking at once, a missed run follows the misfire
policy after a restart, pause and resume, a schedule's runs at most `max_running` at once, the scheduler loop, the command."""
import threading, time
import pytest
import sqlalchemy as sa
from aiplatform.core import Conflict, NotFound, ValidationError, load_settings
from aiplatform.jobs import reports
from aiplatform.jobs.runs import get_run, job_runs, job_schedules, list_runs, work
from aiplatform.jobs.schedules import add_schedule, get_schedule, list_schedules, pause, remove_schedule, run_scheduler, tick
from aiplatform.platform.store import get_engine, now_ns
from conftest import clean_env, cli
from test_runs import template

MINUTE = 60 * 10**9

@pytest.fixture
def s(tmp_path, monkeypatch):
    path = template(tmp_path)
    monkeypatch.setattr(reports, "templates", lambda: {"sleeper": path})
    return load_settings(env={}, platform={"data_dir": tmp_path/"data"}, jobs={"workers": 2})

def test_two_schedulers_ticking_at_once_queue_each_time_once(s):
    first = add_schedule("every-minute", "sleeper", "* * * * *", settings=s).next_ns
    other = add_schedule("every-two", "sleeper", "*/2 * * * *", settings=s).next_ns
    start = min(first, other)
    def scheduler():
        for minute in range(6):
            for _ in range(3): tick(s, start + minute * MINUTE + 5 * 10**9)
    threads = [threading.Thread(target=scheduler) for _ in range(2)]
    for t in threads: t.start()
    for t in threads: t.join(60)
    keys = [r.key for r in list_runs(limit=1000, settings=s)]
    assert len(keys) == len(set(keys))
    every = [k for k in keys if k.startswith(f"schedule:{get_schedule('every-minute', settings=s).id}:")]
    assert len(every) == 6, keys  # each of the six minutes once

def test_a_missed_run_follows_the_misfire_policy_after_a_restart(s):
    once = add_schedule("hourly-once", "sleeper", "0 * * * *", settings=s)
    skip = add_schedule("hourly-skip", "sleeper", "0 * * * *", misfire="skip", settings=s)
    restart = once.next_ns + 5 * 3600 * 10**9 + 20 * MINUTE  # down for five hours and twenty minutes
    queued = tick(s, restart)
    latest = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime((once.next_ns + 5 * 3600 * 10**9) // 10**9))
    assert queued == [f"schedule:{once.id}:{latest}"]
    for name in ("hourly-once", "hourly-skip"): assert get_schedule(name, settings=s).next_ns == once.next_ns + 6 * 3600 * 10**9
    assert skip.id not in {r.schedule_id for r in list_runs(settings=s)}

def test_paused_is_not_due_and_resumes_from_now(s):
    sched = add_schedule("p", "sleeper", "* * * * *", settings=s)
    pause("p", settings=s)
    assert tick(s, sched.next_ns + 10 * MINUTE) == []
    resumed = pause("p", paused=False, settings=s)
    assert not resumed.paused and now_ns() < resumed.next_ns <= now_ns() + MINUTE

def test_a_schedules_runs_never_overlap_past_max_running(s):
    sched = add_schedule("slow", "sleeper", "* * * * *", parameters={"seconds": 1.0}, max_running=1, settings=s)
    keys = [tick(s, sched.next_ns + m * MINUTE)[0] for m in range(2)]
    assert len(keys) == 2
    assert work(s) == 2
    ids = [r.id for r in list_runs(settings=s)]
    spans = [(get_run(i, settings=s).started_ns, get_run(i, settings=s).finished_ns) for i in ids]
    (a0, a1), (b0, b1) = sorted(spans)
    assert b0 >= a1, spans  # with two workers free, the second waited for the first

def test_the_scheduler_loop_queues_and_executes_what_is_due(s):
    sched = add_schedule("yearly", "sleeper", "0 0 1 1 *", settings=s)  # due now by hand, then not for months
    with get_engine(s).begin() as conn: conn.execute(sa.update(job_schedules).where(job_schedules.c.id == sched.id).values(next_ns=now_ns()))
    stop = threading.Event()
    loop = threading.Thread(target=run_scheduler, args=(s, stop, 0.2))
    loop.start()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not [r for r in list_runs(settings=s) if r.status == "succeeded"]: time.sleep(0.2)
    stop.set(), loop.join(30)
    assert [r.status for r in list_runs(settings=s)] == ["succeeded"]

def test_bad_schedules_are_refused_naming_the_field(s):
    for kwargs, words in ((dict(cron="0 6 * *"), "cron '0 6 * *': expected five fields"), (dict(cron="0 6 * * *", tz="Moon/Base"), "timezone 'Moon/Base'"),
                          (dict(cron="0 6 * * *", parameters={"fail": "maybe"}), "parameter fail = 'maybe'"),
                          (dict(cron="0 6 * * *", max_running=0), "max_running 0: expected a number from 1 to 64"),
                          (dict(cron="0 0 30 2 *"), "cron '0 0 30 2 *': never fires")):
        with pytest.raises(ValidationError) as e: add_schedule("bad", "sleeper", **({"tz": "UTC"} | kwargs), settings=s)
        assert words in str(e.value), str(e.value)
    add_schedule("taken", "sleeper", "0 6 * * *", settings=s)
    with pytest.raises(Conflict): add_schedule("taken", "sleeper", "0 7 * * *", settings=s)
    with pytest.raises(NotFound, match="schedule 'taken': no such schedule of bob"): remove_schedule("taken", user="bob", settings=s)
    remove_schedule("taken", settings=s)
    assert list_schedules(settings=s) == []

def test_the_schedules_command(tmp_path):
    env = clean_env(AIPLATFORM_PLATFORM__DATA_DIR=tmp_path)
    added = cli("schedules", "add", "fx", "backtest_report", "--cron", "0 6 * * mon-fri", "--tz", "Europe/London", "-p", "symbol", "EURUSD", env=env)
    assert added.returncode == 0, added.stderr
    assert added.stdout.splitlines()[0].startswith("fx                       backtest_report      0 6 * * mon-fri") and len(added.stdout.splitlines()) == 6
    assert "paused" in cli("schedules", "pause", "fx", env=env).stdout
    assert "fx " in cli("schedules", "list", env=env).stdout
    bad = cli("schedules", "add", "x", "backtest_report", "--cron", "0 26 * * *", env=env)
    assert bad.returncode == 2 and "cron '0 26 * * *'" in bad.stderr
    assert cli("schedules", "remove", "fx", env=env).returncode == 0 and cli("schedules", "list", env=env).stdout == ""

def test_runs_left_running_by_a_dead_worker_fail_when_a_scheduler_starts(s):
    import socket
    from aiplatform.jobs.runs import submit
    from aiplatform.jobs.schedules import recover
    dead, alive = submit("sleeper", settings=s), submit("sleeper", settings=s)
    with get_engine(s).begin() as conn:
        conn.execute(sa.update(job_runs).where(job_runs.c.id == dead).values(status="running", worker=f"{socket.gethostname()}:999999999"))
        conn.execute(sa.update(job_runs).where(job_runs.c.id == alive).values(status="running", worker=f"{socket.gethostname()}:1"))
    assert recover(s) == [dead]
    assert get_run(dead, settings=s).error == f"its worker {socket.gethostname()}:999999999 ended while it ran"
    assert get_run(alive, settings=s).status == "running"

def test_the_background_worker_runs_what_is_due(tmp_path):
    import subprocess
    from conftest import BIN
    env = clean_env(AIPLATFORM_PLATFORM__DATA_DIR=tmp_path)
    assert cli("schedules", "add", "yearly", "image_folder", "--cron", "0 0 1 1 *", "-p", "folder", "nowhere", env=env).returncode == 0
    s = load_settings(env={}, platform={"data_dir": tmp_path})
    with get_engine(s).begin() as conn: conn.execute(sa.update(job_schedules).values(next_ns=now_ns()))
    worker = subprocess.Popen([str(BIN/"aiplatform"), "background", "jobs"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and not [r for r in list_runs(settings=s) if r.status not in ("queued", "running")]: time.sleep(0.3)
    finally: worker.terminate(), worker.wait(10)
    runs = list_runs(settings=s)
    assert len(runs) == 1 and runs[0].status in ("succeeded", "failed") and runs[0].key.startswith("schedule:1:"), runs
    assert cli("background", "nothing", env=env).stderr.startswith("aiplatform: error: background 'nothing': no such worker; tools with one: jobs")

def test_a_schedule_whose_template_is_gone_does_not_stop_the_others(s, monkeypatch):
    gone = add_schedule("gone", "sleeper", "* * * * *", settings=s)
    path = reports.templates()["sleeper"]
    monkeypatch.setattr(reports, "templates", lambda: {"sleeper": path, "other": path})
    kept = add_schedule("kept", "other", "* * * * *", settings=s)
    monkeypatch.setattr(reports, "templates", lambda: {"other": path})  # sleeper's template removed
    queued = tick(s, max(gone.next_ns, kept.next_ns))
    assert [k.split(":")[1] for k in queued] == [str(kept.id)]
