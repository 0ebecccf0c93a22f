"A full JSON Resume through every format: every field in the HTML, the PDF's text layer, the Word file and the Markdown; JSON and YAML round trips; hostile and unusual text."
import html as htmlmod, re
import pytest
from hypothesis import given, settings as hsettings, strategies as st
from aiplatform.core import ValidationError
from aiplatform.resume.model import from_json, from_yaml, parse_resume, resume_dict, sample, to_json, to_yaml
from markupsafe import escape
from aiplatform.resume.render import THEMES, clean, docx, docx_text, html, layout, markdown, pages, pdf, pdf_text, url_text, when

NOT_SHOWN = {"$schema", "meta", "image", "pronouns"}  # not content: the schema's address, metadata, an empty picture, an extra field

def shown(data, key=""):
    "Each text of a JSON Resume document as a resume shows it: dates as `Dec 2013`, addresses without their scheme."
    if isinstance(data, dict):
        for k, v in data.items():
            if k not in NOT_SHOWN: yield from shown(v, k)
    elif isinstance(data, list):
        for v in data: yield from shown(v, key)
    elif data:
        if key.endswith("Date") or key == "date": yield when(data)
        elif key in ("url", "canonical"): yield url_text(data)
        elif key == "username": pass  # shown inside its profile's address
        else: yield data

def flat(text):
    "Text with its line breaks undone: whitespace runs as one space, none after a '-' or '/' a line ended on (pdfium gives a hyphen there as U+FFFE)."
    return re.sub(r"([-/]) ", r"\1", " ".join(text.replace("\ufffe", "-").split()))

def missing(text, data=None):
    text = flat(text)
    return [s for s in shown(data or sample()) if flat(s) not in text]

@pytest.mark.parametrize("theme", list(THEMES))
def test_every_field_is_in_the_html_and_the_pdf_text(theme):
    r, lay = parse_resume(sample()), layout(theme=theme)
    page = html(r, lay)
    assert missing(htmlmod.unescape(re.sub(r"<[^>]+>", " ", page))) == []
    assert missing(pdf_text(pdf(r, lay))) == []

def test_every_field_is_in_the_word_file_and_the_markdown():
    r = parse_resume(sample())
    assert missing(docx_text(docx(r))) == []
    assert missing(re.sub(r"\\(.)", r"\1", htmlmod.unescape(markdown(r)))) == []

def test_json_and_yaml_round_trip_exactly():
    r = parse_resume(sample())
    assert resume_dict(from_json(to_json(r))) == sample()
    assert resume_dict(from_yaml(to_yaml(r))) == sample()

def test_letter_paper_and_a4_differ_in_size():
    import pypdfium2
    r = parse_resume(sample())
    sizes = {p: tuple(round(x) for x in pypdfium2.PdfDocument(pdf(r, layout(paper=p)))[0].get_size()) for p in ("a4", "us-letter")}
    assert sizes == {"a4": (595, 842), "us-letter": (612, 792)}

HOSTILE = '<script>alert("x")</script> <img src=x onerror=alert(1)> #panic() #set page(width: 1pt) $x$ *b* [link](javascript:x) {{7*7}}'

def test_markup_in_a_field_is_text_in_every_format():
    data = sample() | {"basics": sample()["basics"] | {"name": HOSTILE, "summary": HOSTILE}}
    r = parse_resume(data)
    page = html(r)
    assert "<script>" not in page and "<img" not in page and "&lt;script&gt;" in page
    text = flat(pdf_text(pdf(r)))
    assert flat(HOSTILE) in text and pages(pdf(r)) == 2  # printed as written: Typst evaluated none of it
    assert flat(HOSTILE) in flat(docx_text(docx(r)))
    md = markdown(r)
    assert "<script>" not in md and "](javascript" not in md

def test_right_to_left_and_other_scripts_are_drawn_and_extracted():
    names = {"name": "ריצ'רד הנדריקס", "label": "مبرمج", "summary": "Ζωή Σμιθ — Жанна Дарк — Łukasz Żółć — 東京 — emoji ✓"}
    r = parse_resume({"basics": names})
    text = pdf_text(pdf(r, layout(theme="modern")))
    for word in ("הנדריקס", "مبرمج", "Ζωή", "Жанна", "Łukasz", "✓"):
        assert word in text, word
    assert "ריצ&#x27;רד" in html(r) or "ריצ&#39;רד" in html(r)
    assert "مبرمج" in docx_text(docx(r))

def test_control_characters_are_dropped_and_huge_fields_refused():
    r = parse_resume({"basics": {"name": "Ann\x00\x07 Lee", "summary": "line\x0bbreak"}})
    assert "Ann Lee" in docx_text(docx(r)) and "Ann Lee" in pdf_text(pdf(r))
    with pytest.raises(ValidationError, match=r"basics.summary: expected text of at most 10,000 characters"):
        parse_resume({"basics": {"summary": "x" * 1_000_000}})
    with pytest.raises(ValidationError, match=r"work\[0\].highlights: expected a list of at most 200 texts"):
        parse_resume({"work": [{"highlights": ["x"] * 201}]})

texts = st.text(st.characters(blacklist_categories=["Cs"]), max_size=60)

@hsettings(max_examples=60, deadline=None)
@given(name=texts, summary=texts, highlight=texts, extra=st.dictionaries(st.text("abcxyz", min_size=1, max_size=5), texts, max_size=2))
def test_any_text_round_trips_and_renders(name, summary, highlight, extra):
    data = {"basics": {"name": name, "summary": summary, **{f"x_{k}": v for k, v in extra.items()}}, "work": [{"highlights": [highlight]}]}
    r = parse_resume(data)
    assert resume_dict(from_yaml(to_yaml(r))) == data
    assert resume_dict(from_json(to_json(r))) == data
    page = html(r)
    assert all(str(escape(clean(t))) in page for t in (name, summary, highlight))  # each text in the page, escaped as Jinja escapes it
    docx(r), markdown(r)
    assert pdf(r)[:5] == b"%PDF-"
