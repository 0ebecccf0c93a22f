"""Jobs and schedules: the scheduler's start delay against APScheduler's own, a job's overhead over bare papermill, Dask scaling.

Schedules: 1,000 schedules (20 with --quick) all due at the same second; the delay from that second to each run being
queued (its record written) by our scheduler (one tick a second, one transaction a tick, unique run keys in the
database; ticks just after each second), against APScheduler 3's BackgroundScheduler (the peer: in memory, nothing written) firing the same 1,000
cron jobs; p50 and p99. Jobs: one run of a tiny report (a kernel that prints) through `submit` + `execute` (the
record, a child process of its own session, papermill, the HTML page) against bare `papermill.execute_notebook` of
the same notebook; medians of 5 (1 with --quick). Dask: 8 such runs (2) on a LocalCluster of 1 worker and of 2,
through `[jobs] dask_address`; the 2-worker batch's speed-up.

Documents: text-PDF pages per second extracted by ours (`documents.extract`: pypdfium2, each page's text cleaned, its
language found) against pypdf and pdfminer.six (the peers) on the same files in the same run: 20 PDFs of 10 pages
(2 of 5 with --quick) of English prose (the standard library's docstrings), written by matplotlib with embedded
TrueType fonts, as a PDF writer would; the median of 3 passes. Then documents per minute end to end: a batch of 48
(2) PDFs, Word files, HTML pages and Markdown notes read and analysed (sentiment, keywords, summary) by
`analyze_batch`, here and on a Dask LocalCluster of 1 and of 2 worker processes (the models loaded on each first;
threads with --quick).
Last line: a JSON object."""
import argparse, json, os, platform, re, statistics, sys, tempfile, threading, time
from datetime import datetime, timezone
from pathlib import Path
import nbformat
from timing import percentile

def hello(folder) -> Path:
    path = folder/"hello.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell('name = "world"', metadata={"tags": ["parameters"]}),
                                                   nbformat.v4.new_code_cell('print(f"hello {name}")')],
                                            metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}), path)
    return path

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
    from aiplatform.jobs.runs import dask_client, list_runs, submit, work
    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=False, dashboard_address=None) as cluster:
        s = load_settings(env={}, platform={"data_dir": folder/f"dask{workers}"}, jobs={"dask_address": cluster.scheduler_address, "workers": runs})
        for i in range(runs): submit("hello", {"name": str(i)}, settings=s)
        start = time.perf_counter()
        work(s)
        took = time.perf_counter() - start
        assert all(r.status == "succeeded" for r in list_runs(settings=s))
        dask_client(cluster.scheduler_address).close()
    return took

def prose(words) -> list:
    "English lines of about 90 characters: the docstrings of the standard library, as long as asked."
    import inspect, textwrap, collections, email.message, http.client, itertools, pathlib, subprocess, zipfile, argparse, logging
    text = " ".join(" ".join(inspect.getdoc(getattr(m, n)) or "" for n in dir(m) if not n.startswith("_"))
                    for m in (collections, email.message, http.client, itertools, pathlib, subprocess, zipfile, argparse, logging))
    text = " ".join(re.sub(r"[^A-Za-z0-9.,;:()'\- ]", " ", text).split())
    repeated = ((text + " ") * (1 + words // max(1, len(text.split())))).split()[:words]
    return textwrap.wrap(" ".join(repeated), 90)

def pdf_corpus(folder, files, pages) -> list:
    "`files` PDFs of `pages` pages of 40 lines of prose, written by matplotlib with embedded TrueType fonts."
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib import pyplot as plt
    from matplotlib.backends.backend_pdf import PdfPages
    matplotlib.rcParams["pdf.fonttype"] = 42
    lines, paths = prose(files * pages * 40 * 20), []  # more than enough: an empty page would be read by OCR
    for f in range(files):
        paths.append(folder/f"prose-{f}.pdf")
        with PdfPages(paths[-1]) as pdf:
            for p in range(pages):
                fig = plt.figure(figsize=(8.5, 11))
                at = (f * pages + p) * 40
                fig.text(0.06, 0.95, "\n".join(lines[at:at + 40]), va="top", fontsize=8, family="DejaVu Sans")
                pdf.savefig(fig)
                plt.close(fig)
    return paths

def pdf_rates(paths, pages) -> dict:
    "Pages per second of ours and the peers over `paths`, the median of 3 passes; and the words each found."
    from pdfminer.high_level import extract_text as pdfminer_text
    from pypdf import PdfReader
    from aiplatform.core import load_settings
    from aiplatform.documents.extract import extract
    s = load_settings(env={})
    readers = {"ours": lambda p: extract(p, settings=s).text, "pypdf": lambda p: "\n".join(pg.extract_text() for pg in PdfReader(p).pages),
               "pdfminer.six": lambda p: pdfminer_text(str(p))}
    rates, words = {}, {}
    for name, read in readers.items():
        times = []
        for _ in range(3):
            start = time.perf_counter()
            texts = [read(p) for p in paths]
            times.append(time.perf_counter() - start)
        rates[name], words[name] = pages / statistics.median(times), sum(len(t.split()) for t in texts)
    return dict(rates=rates, words=words)

def document_batch(folder, n) -> Path:
    "A folder of `n` documents: 3-page PDFs, Word files, HTML pages and Markdown notes of prose, a quarter each."
    import docx
    from aiplatform.documents.extract import text_pdf
    folder.mkdir()
    lines = prose(n * 60 * 16)
    for i in range(n):
        part = lines[i * 60:(i + 1) * 60]
        if i % 4 == 0: (folder/f"d{i}.pdf").write_bytes(text_pdf([part[:20], part[20:40], part[40:]], title=f"Document {i}"))
        elif i % 4 == 1:
            d = docx.Document()
            for j in range(0, 60, 6): d.add_paragraph(" ".join(part[j:j + 6]))
            d.save(folder/f"d{i}.docx")
        elif i % 4 == 2: (folder/f"d{i}.html").write_text(f"<html><title>Page {i}</title>" + "".join(f"<p>{' '.join(part[j:j + 6])}</p>" for j in range(0, 60, 6)))
        else: (folder/f"d{i}.md").write_text(f"# Note {i}\n\n" + "\n\n".join(" ".join(part[j:j + 6]) for j in range(0, 60, 6)))
    return folder

def _warm_worker():
    import tempfile
    from aiplatform.documents.batch import analyze_batch
    folder = Path(tempfile.mkdtemp())
    (folder/"w.txt").write_text("A short text to load the models. It is read once.")
    analyze_batch(folder)

def docs_per_min(folder, data, workers=None, processes=True) -> float:
    "Documents per minute of `analyze_batch` over `folder`: here, or on a LocalCluster of `workers` processes (warmed first)."
    from aiplatform.core import load_settings
    from aiplatform.documents.batch import analyze_batch
    from aiplatform.jobs.runs import dask_client
    n = len(list(folder.iterdir()))
    def timed(s):
        start = time.perf_counter()
        table = analyze_batch(folder, chunk=min(4, n // 2), settings=s)  # --quick: a task per document
        assert table["error"].isna().all(), table["error"].dropna().tolist()
        return n / (time.perf_counter() - start) * 60
    if workers is None: return timed(load_settings(env={}, platform={"data_dir": data}))
    from distributed import Client, LocalCluster
    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=processes, dashboard_address=None) as cluster, Client(cluster) as client:
        client.run(_warm_worker)
        try: return timed(load_settings(env={}, platform={"data_dir": data}, jobs={"dask_address": cluster.scheduler_address}))
        finally: dask_client(cluster.scheduler_address).close()

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
    files, pages = (2, 5) if args.quick else (20, 10)
    pdf = pdf_rates(pdf_corpus(folder, files, pages), files * pages)
    r, w = pdf["rates"], pdf["words"]
    print(f"{files * pages} text-PDF pages (matplotlib, TrueType): ours {r['ours']:.0f} pages/s (target 100), pypdf {r['pypdf']:.0f} "
          f"(ratio {r['ours'] / r['pypdf']:.1f}), pdfminer.six {r['pdfminer.six']:.0f} (ratio {r['ours'] / r['pdfminer.six']:.1f}); "
          f"words found: ours {w['ours']:,}, pypdf {w['pypdf']:,}, pdfminer.six {w['pdfminer.six']:,}")
    batch = document_batch(folder/"batch", 2 if args.quick else 48)
    _warm_worker()
    here = docs_per_min(batch, folder/"docs")
    one_docs, two_docs = (docs_per_min(batch, folder/f"docs{n}", n, processes=not args.quick) for n in (1, 2))  # --quick: threads, no model loads
    print(f"documents read and analysed end to end: {here:.0f} per minute here; on Dask 1 worker {one_docs:.0f}, 2 workers {two_docs:.0f} "
          f"(speed-up {two_docs / one_docs:.2f})")
    print(json.dumps({"schedule_delay_p50_ms": round(percentile(ours, 0.5)), "schedule_delay_p99_ms": round(percentile(ours, 0.99)),
                      "apscheduler_delay_p99_ms": round(percentile(peer, 0.99)), "job_overhead_ms": round((o["ours_s"] - o["bare_s"]) * 1e3),
                      "job_vs_papermill": round(o["ours_s"] / o["bare_s"], 2), "dask_2_vs_1": round(one / two, 2),
                      "pdf_pages_per_s": round(r["ours"]), "vs_pypdf": round(r["ours"] / r["pypdf"], 2),
                      "vs_pdfminer": round(r["ours"] / r["pdfminer.six"], 2), "docs_per_min": round(here),
                      "docs_dask_2_vs_1": round(two_docs / one_docs, 2)}))

if __name__ == "__main__":
    sys.exit(main())
