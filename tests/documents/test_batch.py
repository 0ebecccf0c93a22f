"""Batches of documents made here: every kind the extractor reads and every kind of damage, from a folder and from a zip
(a zip bomb included); each file one row, damaged ones with their error; the same table from a Dask cluster; the
`documents` report run as a job."""
import io, zipfile
import docx
import pandas as pd
import pytest
from pypdf import PdfReader, PdfWriter
from conftest import transitions
from aiplatform.core import load_settings
from aiplatform.documents.batch import COLUMNS, analyze_batch, document_files
from aiplatform.documents.extract import text_pdf
from aiplatform.ml.vision.ocr import render

@pytest.fixture
def s(tmp_path): return load_settings(env={}, platform={"data_dir": tmp_path/"data"}, documents={"max_mb": 1})

def docx_bytes(*paragraphs) -> bytes:
    d, buf = docx.Document(), io.BytesIO()
    for p in paragraphs: d.add_paragraph(p)
    d.save(buf)
    return buf.getvalue()

def locked_pdf() -> bytes:
    writer, buf = PdfWriter(clone_from=PdfReader(io.BytesIO(text_pdf([["secret"]])))), io.BytesIO()
    writer.encrypt("hunter2")
    writer.write(buf)
    return buf.getvalue()

def scanned_pdf() -> bytes:
    buf = io.BytesIO()
    render("Scanned invoices are read by OCR".split(), 40).convert("RGB").save(buf, "PDF", resolution=150)
    return buf.getvalue()

GOOD = {"report.pdf": text_pdf([["The quarterly results were excellent and the team is delighted."], ["Revenue grew strongly."]]),
        "notes/memo.docx": docx_bytes("The server outage was a disaster.", "Customers were furious and support failed badly."),
        "page.html": b"<html><title>Release</title><p>Version 2 ships on Monday with the new importer.</p></html>",
        "readme.md": b"# Importer\n\nThe importer reads CSV files and writes Parquet tables.",
        "scan.pdf": scanned_pdf()}
DAMAGED = {"torn.pdf": text_pdf([["x"]])[:150], "locked.pdf": locked_pdf(), "torn.docx": docx_bytes("x")[:300],
           "empty.txt": b"", "program.bin": b"\x7fELF\x02\x01\x01\x00" + b"\0" * 64, "huge.txt": b"word " * 300_000}

def make_folder(root):
    for name, data in (GOOD | DAMAGED).items():
        (root/name).parent.mkdir(parents=True, exist_ok=True)
        (root/name).write_bytes(data)
    return root

def test_every_file_is_a_row_and_damaged_ones_say_why(s, tmp_path):
    seen = []
    table = analyze_batch(make_folder(tmp_path/"in"), tmp_path/"t.parquet", chunk=3, progress=lambda d, t: seen.append((d, t)), settings=s)
    assert list(table["name"]) == sorted(GOOD | DAMAGED) and seen[-1] == (11, 11) and len(seen) == 4
    rows = table.set_index("name")
    errors = rows["error"].dropna().to_dict()
    assert sorted(errors) == sorted(DAMAGED)
    expected = {"torn.pdf": "torn.pdf: damaged", "locked.pdf": "locked.pdf: password-protected", "empty.txt": "empty.txt: empty (0 bytes)",
                "torn.docx": "torn.docx: a zip archive that is not a Word document", "program.bin": "program.bin: a binary file",
                "huge.txt": "huge.txt: 1.4 MB, at most 1 MB ([documents] max_mb)"}
    for name, start in expected.items(): assert errors[name].startswith(start), errors[name]
    assert rows.loc["report.pdf", ["kind", "pages", "sentiment"]].tolist() == ["pdf", 2, "positive"]
    assert rows.loc["notes/memo.docx", "sentiment"] == "negative" and rows.loc["page.html", "title"] == "Release"
    assert rows.loc["scan.pdf", "ocr_pages"] == 1 and "invoices" in rows.loc["scan.pdf", "keywords"]
    assert "importer" in rows.loc["readme.md", "keywords"] and rows.loc["readme.md", "summary"].startswith("# Importer")
    assert (rows.loc[list(GOOD), "language"] == "en").all() and not rows.loc[list(GOOD), "truncated"].any()
    assert pd.read_parquet(tmp_path/"t.parquet", engine="fastparquet").astype(COLUMNS).equals(table)

def test_a_zip_gives_the_folders_rows_and_a_zip_bomb_is_refused(s, tmp_path):
    make_folder(tmp_path/"in")
    with zipfile.ZipFile(tmp_path/"batch.zip", "w", zipfile.ZIP_DEFLATED) as z:
        for name in GOOD: z.write(tmp_path/"in"/name, name)
        z.writestr("bomb.txt", b"\0" * (50 * 2**20))  # 50 KB compressed
        z.writestr("__MACOSX/._report.pdf", b"\0")
    table = analyze_batch(tmp_path/"batch.zip", settings=s).set_index("name")
    assert sorted(table.index) == sorted(GOOD | {"bomb.txt": 0})
    assert table.loc["bomb.txt", "error"] == "bomb.txt: 50.0 MB, at most 1 MB ([documents] max_mb)"
    folder = analyze_batch(tmp_path/"in", settings=s).set_index("name").loc[list(GOOD)]
    pd.testing.assert_frame_equal(table.loc[list(GOOD)], folder)
    (tmp_path/"outer").mkdir()
    (tmp_path/"batch.zip").rename(tmp_path/"outer"/"batch.zip")  # a zip in a folder is opened, its members named after it
    assert [n for n, *_ in document_files(tmp_path/"outer", s)] == ["batch.zip/" + n for n in sorted(table.index)]
    (tmp_path/"bad.zip").write_bytes(b"PK\x05\x06" + b"\0" * 10)
    with pytest.raises(Exception, match="source 'bad.zip': a damaged zip archive"): document_files(tmp_path/"bad.zip", s)

def test_a_dask_cluster_gives_the_same_table(s, tmp_path):
    from distributed import LocalCluster
    folder = make_folder(tmp_path/"in")
    here = analyze_batch(folder, chunk=4, settings=s)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as cluster:
        on = load_settings(env={}, platform={"data_dir": s.data_dir}, documents={"max_mb": 1}, jobs={"dask_address": cluster.scheduler_address})
        there = analyze_batch(folder, chunk=4, settings=on)
        assert sum(key.startswith("analyze_files-") for key, *_ in transitions(cluster)) >= 3
    pd.testing.assert_frame_equal(here, there)

def test_the_documents_report_runs_as_a_job(tmp_path, monkeypatch):
    from aiplatform.jobs.runs import execute, submit
    monkeypatch.setenv("AIPLATFORM_PLATFORM__DATA_DIR", str(tmp_path/"data"))  # the run's process reads its settings itself
    s = load_settings(env={}, platform={"data_dir": tmp_path/"data"})
    folder = s.data_dir/"inbox"
    folder.mkdir(parents=True)
    for name in ("report.pdf", "page.html"): (folder/name).write_bytes(GOOD[name])
    (folder/"torn.pdf").write_bytes(DAMAGED["torn.pdf"])
    run = execute(submit("documents", {"source": "inbox", "keywords": 3}, settings=s), s)
    assert run.status == "succeeded", run.error
    table = pd.read_parquet(s.data_dir/"jobs"/str(run.id)/"documents.parquet", engine="fastparquet")
    assert list(table["name"]) == ["page.html", "report.pdf", "torn.pdf"] and table["error"].notna().sum() == 1
    assert all(len(k.split(", ")) <= 3 for k in table["keywords"].dropna())
    page = (s.data_dir/"jobs"/str(run.id)/"documents.html").read_text()
    assert "3 documents" in page and "torn.pdf: damaged" in page and "analyze_batch(" not in page  # the code is not shown
    refused = execute(submit("documents", {"source": "../outside"}, settings=s), s)
    assert refused.status == "failed" and "must stay inside the data folder" in refused.error

def test_a_users_run_reads_only_their_own_folder(tmp_path, monkeypatch):
    "A run of a user's reads below `users/<name>/` (`user_path`, whose lessons show a way out refused): the same source names their folder, never another's or the shared one."
    from aiplatform.jobs.runs import execute, submit
    monkeypatch.setenv("AIPLATFORM_PLATFORM__DATA_DIR", str(tmp_path/"data"))
    s = load_settings(env={}, platform={"data_dir": tmp_path/"data"})
    for owner, name in (("users/ada/inbox", "page.html"), ("users/bob/inbox", "report.pdf"), ("inbox", "report.pdf")):
        (s.data_dir/owner).mkdir(parents=True)
        (s.data_dir/owner/name).write_bytes(GOOD[name])
    run = execute(submit("documents", {"source": "inbox"}, user="ada", settings=s), s)
    assert run.status == "succeeded", run.error
    assert list(pd.read_parquet(s.data_dir/"jobs"/str(run.id)/"documents.parquet", engine="fastparquet")["name"]) == ["page.html"]
