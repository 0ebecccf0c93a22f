"""Jobs and schedules: the scheduler's start delay against APScheduler's own, a job's overhead over bare papermill, Dask scaling.

Schedules: 1,000 schedules (20 with --quick) all due at the same second; the delay from that second to each run being
queued (its record written) by our scheduler (one tick a second, one transaction a tick, unique run keys in the
database; ticks just after each second), against APScheduler 3's BackgroundScheduler (the peer: in memory, nothing written) firing the same 1,000
cron jobs; p50 and p99. Jobs: one run of a tiny report (a kernel that prints) through `submit` + `execute` (the
record, a child process of its own session, papermill, the HTML page) against bare `papermill.execute_notebook` of
the same notebook; medians of 5 (1 with --quick). Dask: 8 such runs (2) on a LocalCluster of 1 worker and of 2,
through `[jobs] dask_address`; the 2-worker batch's speed-up. The documents' figures come with the documents tool.
Last line: a JSON object."""
import argparse, json, os, platform, statistics, sys, tempfile, threading, time
from datetime import datetime, timezone
from pathlib import Path
import nbformat

def hello(folder) -> Path:
    path = folder/"hello.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell('name = "world"', metadata={"tags": ["parameters"]}),
                                                   nbformat.v4.new_code_cell('print(f"hello {name}")')],
                                            metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}), path)
    return path

def percentile(values, q) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * q))]

def ours_delay(n, folder) -> list:
    import sqlalchemy as sa
    from aiplatform.core import load_settings
    from aiplatform.jobs.runs import job_runs, job_schedules
    from aiplatform.jobs.schedules import add_schedule, tick_forever
    from aiplatform.platform.store import get_engine
    s = load_settings(env={}, platform={"data_dir": folder/"ours"})
    for i in range(n): add_schedule(f"s{i}", "hello", "* * * * *", parameters={"name": str(i)}, settings=s)
    due = (time.time_ns() // 10**9 + 2) * 10**9
    with get_engine(s).begin() as conn: conn.execute(sa.update(job_schedules).values(next_ns=due))
    stop = threading.Event()
    thread = threading.Thread(target=tick_forever, args=(s, stop))  # run_scheduler's ticks, without executing the queue
    thread.start()
    while True:
        with get_engine(s).connect() as conn: queued = conn.execute(sa.select(job_runs.c.queued_ns)).scalars().all()
        if len(queued) >= n: break
        time.sleep(0.2)
    stop.set(), thread.join()
    return [(q - due) / 1e6 for q in queued]

def apscheduler_delay(n) -> list:
    from apscheduler.schedulers.background import BackgroundScheduler
    from apscheduler.triggers.cron import CronTrigger
    fired, done = [], threading.Event()
    start = datetime.fromtimestamp(time.time() // 1 + 2, timezone.utc)
    scheduler = BackgroundScheduler(timezone="UTC", job_defaults={"misfire_grace_time": 60})
    def job(due):
        fired.append((time.time_ns() - due) / 1e6)
        if len(fired) >= n: done.set()
    due_ns = int(start.timestamp()) * 10**9
    for i in range(n): scheduler.add_job(job, CronTrigger(second=start.second, timezone="UTC"), args=(due_ns,), id=str(i))
    scheduler.start()
    done.wait(120)
    scheduler.shutdown(wait=False)
    return fired[:n]

def overhead(runs, folder) -> dict:
    import papermill as pm
    from aiplatform.core import load_settings
    from aiplatform.jobs.runs import execute, submit
    notebook, s = folder/"hello.ipynb", load_settings(env={}, platform={"data_dir": folder/"overhead"})
    bare, ours = [], []
    for i in range(runs):
        start = time.perf_counter()
        pm.execute_notebook(str(notebook), str(folder/f"bare-{i}.ipynb"), parameters={"name": "bare"}, kernel_name="python3", progress_bar=False)
        bare.append(time.perf_counter() - start)
        start = time.perf_counter()
        run = execute(submit("hello", {"name": "ours"}, settings=s), s)
        ours.append(time.perf_counter() - start)
        assert run.status == "succeeded", run.error
    return dict(bare_s=statistics.median(bare), ours_s=statistics.median(ours))

def dask_batch(workers, runs, folder) -> float:
    from distributed import LocalCluster
    from aiplatform.core import load_settings
    from aiplatform.jobs.runs import list_runs, submit, work
    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=False, dashboard_address=None) as cluster:
        s = load_settings(env={}, platform={"data_dir": folder/f"dask{workers}"}, jobs={"dask_address": cluster.scheduler_address, "workers": runs})
        for i in range(runs): submit("hello", {"name": str(i)}, settings=s)
        start = time.perf_counter()
        work(s)
        took = time.perf_counter() - start
        assert all(r.status == "succeeded" for r in list_runs(settings=s))
    return took

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="20 schedules, 1 run, 2 runs on Dask")
    args = ap.parse_args()
    from aiplatform.jobs import reports
    folder = Path(tempfile.mkdtemp())
    shipped, template = reports.templates, hello(folder)
    reports.templates = lambda: shipped() | {"hello": template}
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    n = 20 if args.quick else 1000
    ours, peer = ours_delay(n, folder), apscheduler_delay(n)
    print(f"{n} schedules due the same second, delay to queued: ours p50 {percentile(ours, 0.5):.0f} ms, p99 {percentile(ours, 0.99):.0f} ms "
          f"(target 1,000); APScheduler in memory (the peer) p50 {percentile(peer, 0.5):.0f} ms, p99 {percentile(peer, 0.99):.0f} ms")
    o = overhead(1 if args.quick else 5, folder)
    print(f"one tiny report: ours (record, child process, papermill, HTML page) {o['ours_s'] * 1e3:.0f} ms, bare papermill.execute_notebook "
          f"(the peer) {o['bare_s'] * 1e3:.0f} ms; overhead {(o['ours_s'] - o['bare_s']) * 1e3:.0f} ms, ratio {o['ours_s'] / o['bare_s']:.2f}")
    runs = 2 if args.quick else 8
    one, two = dask_batch(1, runs, folder), dask_batch(2, runs, folder)
    print(f"{runs} runs on a Dask LocalCluster: 1 worker {one:.1f} s, 2 workers {two:.1f} s; speed-up {one / two:.2f} (2 cores)")
    print(json.dumps({"schedule_delay_p50_ms": round(percentile(ours, 0.5)), "schedule_delay_p99_ms": round(percentile(ours, 0.99)),
                      "apscheduler_delay_p99_ms": round(percentile(peer, 0.99)), "job_overhead_ms": round((o["ours_s"] - o["bare_s"]) * 1e3),
                      "job_vs_papermill": round(o["ours_s"] / o["bare_s"], 2), "dask_2_vs_1": round(one / two, 2),
                      "pdf_pages_per_s": None, "vs_pypdf": None, "docs_per_min": None}))

if __name__ == "__main__":
    sys.exit(main())
