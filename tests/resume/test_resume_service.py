"The resume service as its own process: renders in every format through its pool, 100 at once; each user's resumes their own; bad input on every route named; imports; matching and tailoring; the rate limit."
import base64, concurrent.futures, json, subprocess, time
import pytest
from aiplatform.resume.model import sample
from aiplatform.resume.render import docx, pdf_text
from aiplatform.resume.model import parse_resume
from conftest import BIN, cli, clean_env, free_port, http, wait_for

@pytest.fixture(scope="module")
def service(tmp_path_factory):
    "The resume service on a free port (two workers), and API keys of two users."
    env = clean_env(AIPLATFORM_PLATFORM__DATA_DIR=tmp_path_factory.mktemp("data"), AIPLATFORM_RESUME__WORKERS=2, AIPLATFORM_RESUME__RATE=1000)
    keys = {}
    for name in ("ann", "bob"):
        assert cli("users", "add", name, "--role", "viewer", env=env).returncode == 0
        keys[name] = cli("users", "key", name, env=env).stdout.strip()
    port = free_port()
    proc = subprocess.Popen([str(BIN/"aiplatform"), "service", "resume", "--port", str(port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(f"http://127.0.0.1:{port}/health", proc, timeout=120)
        yield f"http://127.0.0.1:{port}/", keys
    finally:
        proc.terminate(); proc.wait(10)

def call(url, key, method="POST", body=None):
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    import urllib.request
    req = urllib.request.Request(url, None if body is None else json.dumps(body).encode(), headers, method=method)
    try: r = urllib.request.urlopen(req, timeout=300)
    except urllib.error.HTTPError as e: r = e
    data = r.read()
    return r.status, r.headers, (json.loads(data) if r.headers.get_content_type() == "application/json" else data)

def test_every_format_renders(service):
    url, keys = service
    for fmt, head in (("pdf", b"%PDF-"), ("docx", b"PK"), ("html", b"<!DOCTYPE html>"), ("markdown", b"# Richard Hendriks")):
        status, headers, data = call(url + "render", keys["ann"], body={"resume": sample(), "format": fmt, "layout": {"theme": "compact"}})
        assert status == 200 and data.startswith(head), (fmt, data[:200])
    status, headers, data = call(url + "render", keys["ann"], body={"resume": sample(), "format": "yaml"})
    assert status == 200 and headers.get_content_type() == "application/yaml" and b"Richard Hendriks" in data
    status, headers, data = call(url + "render", keys["ann"], body={"resume": sample(), "format": "pdf", "fit": True})
    assert status == 200 and "spacing" in json.loads(headers["X-Fit-Changes"])[0] and "Richard Hendriks" in pdf_text(data)
    status, headers, data = call(url + "render", keys["ann"], body={"resume": {"basics": {"name": "ריצ'רד Hendriks"}}, "format": "docx"})
    assert status == 200 and headers["Content-Disposition"] == "inline; filename=\"Hendriks.docx\"; filename*=UTF-8''%D7%A8%D7%99%D7%A6%27%D7%A8%D7%93%20Hendriks.docx"

def test_a_hundred_renders_at_once(service):
    url, keys = service
    def one(i):
        data = sample() | {"basics": sample()["basics"] | {"name": f"Person {i}"}}
        status, _, pdf = call(url + "render", keys["ann" if i % 2 else "bob"], body={"resume": data, "format": "pdf"})
        return status, pdf
    with concurrent.futures.ThreadPoolExecutor(100) as pool: results = list(pool.map(one, range(100)))
    assert [s for s, _ in results] == [200] * 100
    assert all(f"Person {i}" in pdf_text(pdf) for i, (_, pdf) in enumerate(results))  # each its own PDF; read one at a time (PDFium is not thread-safe)

def test_each_user_sees_only_their_own_resumes(service):
    url, keys = service
    assert call(url + "resumes/main", keys["ann"], "PUT", {"resume": sample(), "note": "first"})[2] == {"name": "main", "version": 1}
    assert call(url + "resumes/main", keys["ann"], "PUT", {"resume": sample() | {"skills": []}, "note": "no skills"})[2]["version"] == 2
    assert [r["name"] for r in call(url + "resumes", keys["ann"], "GET")[2]["resumes"]] == ["main"]
    assert call(url + "resumes", keys["bob"], "GET")[2] == {"resumes": []}
    for method, path, body in (("GET", "resumes/main", None), ("GET", "resumes/main/versions", None), ("GET", "resumes/main/versions/1", None),
                               ("DELETE", "resumes/main", None), ("POST", "render", {"name": "main"})):
        status, _, answer = call(url + path, keys["bob"], method, body)
        assert (status, answer["error"]) == (404, "resume 'main': no such resume of bob") or (status == 404 and "of bob" in answer["error"]), (path, answer)
    assert [v["note"] for v in call(url + "resumes/main/versions", keys["ann"], "GET")[2]["versions"]] == ["no skills", "first"]
    assert call(url + "resumes/main/versions/1", keys["ann"], "GET")[2]["resume"] == sample()
    assert call(url + "resumes/main", keys["ann"], "DELETE")[2] == {"deleted": 2}

@pytest.mark.parametrize("method,path,body,words", [
    ("POST", "render", {"resume": sample(), "format": "rtf"}, "format 'rtf': expected one of html, pdf, markdown, docx, json, yaml"),
    ("POST", "render", {"resume": sample(), "layout": {"font_pt": 40.0}}, "font_pt 40.0: expected a font size from 7 to 14 points"),
    ("POST", "render", {"resume": sample(), "layout": {"colour": "red"}}, "colour: unknown field"),
    ("POST", "render", {"resume": {"education": [{"endDate": "2020-13"}]}}, "education[0].endDate '2020-13': not a calendar date"),
    ("POST", "render", {"resume": {"basics": {"summary": "x" * 20_000}}}, "basics.summary: expected text of at most 10,000 characters"),
    ("POST", "render", {}, "resume, name: expected exactly one of them"),
    ("POST", "render", {"resume": sample(), "extra": 1}, "extra: unknown field"),
    ("POST", "render", [1], "request body: expected a JSON object"),
    ("PUT", "resumes/Bad%20Name", {"resume": sample()}, "name 'Bad Name': expected 1 to 100 lowercase letters"),
    ("PUT", "resumes/main", {"resume": sample(), "note": "x" * 300}, "note"),
    ("POST", "import", {"format": "pdf", "content": "x"}, "format 'pdf': expected one of json, yaml, text, docx"),
    ("POST", "import", {"format": "docx", "content": "not base64!"}, "content: expected the Word file in base64"),
    ("POST", "import", {"format": "json", "content": "{nope"}, "resume JSON: not JSON"),
    ("POST", "match", {"resume": sample(), "job": "python"}, "job: expected a job description of at least 5 words"),
    ("POST", "rewrite", {"resume": sample(), "path": "basics.email"}, "expected a summary, highlight, description or reference"),
    ("POST", "rewrite", {"resume": sample(), "path": "work[0].__class__"}, "expected a field's path such as work[0].highlights[1]"),
])
def test_bad_input_is_a_400_naming_the_field(service, method, path, body, words):
    url, keys = service
    status, _, answer = call(url + path, keys["bob"], method, body)
    assert status == 400 and words in answer["error"], answer

def test_no_key_no_answer(service):
    url, _ = service
    assert http(url + "resumes")[0] == 401
    assert http(url + "render", data=b"{}", headers={"Authorization": "Bearer aip_nope"})[0] == 401

def test_imports_give_a_resume_and_what_was_not_placed(service):
    url, keys = service
    word = base64.b64encode(docx(parse_resume(sample()))).decode()
    status, _, answer = call(url + "import", keys["bob"], body={"format": "docx", "content": word})
    assert status == 200 and answer["resume"]["basics"]["name"] == "Richard Hendriks" and len(answer["resume"]["work"]) == 2
    answer = call(url + "import", keys["bob"], body={"format": "yaml", "content": "basics:\n  name: Bo\nwork:\n  - startDate: 2020-01-15\n"})[2]
    assert answer == {"resume": {"basics": {"name": "Bo"}, "work": [{"startDate": "2020-01-15"}]}, "unplaced": []}
    answer = call(url + "import", keys["bob"], body={"format": "text", "content": "Bo Li\nbo@example.com\nMystery line\n\nSkills\nPython, SQL"})[2]
    assert answer["resume"]["skills"] == [{"keywords": ["Python", "SQL"]}] and answer["unplaced"] == ["Mystery line"]

def test_a_job_match_and_a_tailored_copy_saved(service):
    url, keys = service
    job = "We need a Python and SQL engineer for video compression (MP4) who knows Kubernetes and AWS."
    call(url + "resumes/cv", keys["bob"], "PUT", {"resume": sample()})
    status, _, m = call(url + "match", keys["bob"], body={"name": "cv", "job": job})
    assert status == 200 and {"Python", "SQL", "MP4"} <= {t for t, _, _ in m["matched"]} and "AWS" in m["missing"] and 0 < m["score"] < 100
    status, _, saved = call(url + "tailor", keys["bob"], body={"name": "cv", "job": job, "to": "cv-compression"})
    assert (status, saved) == (200, {"name": "cv-compression", "version": 1})
    tailored = call(url + "resumes/cv-compression", keys["bob"], "GET")[2]["resume"]
    skills = {s["name"]: s["keywords"] for s in tailored["skills"]}
    assert tailored["skills"][-1]["name"] == "Web Development"  # nothing of it asked for: last
    assert skills["Compression"][0] == "MP4" and skills["Programming"][:2] == ["Python", "SQL"]  # what the job asks for first
    assert call(url + "resumes/cv-compression/versions", keys["bob"], "GET")[2]["versions"][0]["note"].startswith("tailored to: We need a Python")

def test_past_the_rate_a_request_is_refused_with_the_limit(tmp_path):
    env = clean_env(AIPLATFORM_PLATFORM__DATA_DIR=tmp_path, AIPLATFORM_RESUME__WORKERS=1, AIPLATFORM_RESUME__RATE=0.5)
    assert cli("users", "add", "cy", env=env).returncode == 0
    key, port = cli("users", "key", "cy", env=env).stdout.strip(), free_port()
    proc = subprocess.Popen([str(BIN/"aiplatform"), "service", "resume", "--port", str(port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(f"http://127.0.0.1:{port}/health", proc, timeout=120)
        url = f"http://127.0.0.1:{port}/"
        assert call(url + "themes", key, "GET")[0] == 200
        status, _, answer = call(url + "themes", key, "GET")
        assert (status, answer["error"]) == (429, "user 'cy': more than 0.5 requests a second ([resume] rate); wait a moment")
        time.sleep(2.1)
        assert call(url + "themes", key, "GET")[0] == 200
    finally:
        proc.terminate(); proc.wait(10)

def test_an_accepted_rewrite_is_a_new_version_and_a_stale_one_is_refused(service):
    url, keys = service
    call(url + "resumes/rw", keys["ann"], "PUT", {"resume": sample()})
    before = sample()["work"][0]["highlights"][1]
    body = {"name": "rw", "path": "work[0].highlights[1]", "before": before, "after": "Won TechCrunch Disrupt against 30 start-ups"}
    assert call(url + "rewrite/accept", keys["ann"], body=body)[2] == {"name": "rw", "version": 2}
    stored = call(url + "resumes/rw", keys["ann"], "GET")[2]["resume"]
    assert stored["work"][0]["highlights"][1] == "Won TechCrunch Disrupt against 30 start-ups"
    assert call(url + "resumes/rw/versions", keys["ann"], "GET")[2]["versions"][0]["note"] == "rewrite accepted: work[0].highlights[1]"
    status, _, answer = call(url + "rewrite/accept", keys["ann"], body=body)  # made from a text that is no longer there
    assert (status, answer["error"]) == (409, "work[0].highlights[1]: changed since this rewrite was suggested; ask again")
    assert call(url + "rewrite/accept", keys["bob"], body=body)[0] == 404  # not bob's
