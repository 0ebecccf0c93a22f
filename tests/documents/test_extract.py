"""Text out of every kind of document the tests make (PDF with text, scanned pages, Word, HTML, text in two encodings,
images), and each damaged kind (truncated, password-protected, a zip that is not Word, a binary) as one error naming the file."""
import io
import docx
import pytest
from aiplatform.core import TooLarge, ValidationError, load_settings
from aiplatform.documents.extract import extract, text_pdf
from aiplatform.ml.vision.ocr import render

@pytest.fixture
def s(tmp_path): return load_settings(env={}, platform={"data_dir": tmp_path})

def docx_bytes(*paragraphs) -> bytes:
    d = docx.Document()
    for p in paragraphs: d.add_paragraph(p)
    buf = io.BytesIO()
    d.save(buf)
    return buf.getvalue()

def test_each_kind_gives_its_text(s, tmp_path):
    scan = io.BytesIO()
    render("Invoice number 4711 is due on Friday".split(), 40).convert("RGB").save(scan, "PNG")
    cases = [(text_pdf([["First page."], ["Second page."]]), "a.pdf", "pdf", "First page.\fSecond page."),
             (docx_bytes("One paragraph.", "Another."), "b.docx", "docx", "One paragraph.\nAnother."),
             (b"<p>Caf&eacute; <b>au</b> lait</p>", "c.html", "html", "Café au lait"),
             ("Grüße aus Köln".encode("cp1252"), "d.txt", "text", "Grüße aus Köln"),
             ("# Title\n\nSome *text*.".encode(), "e.md", "markdown", "# Title\n\nSome *text*."),
             (scan.getvalue(), "f.png", "image", "Invoice number 4711 is due on Friday")]
    for data, name, kind, text in cases:
        (tmp_path/name).write_bytes(data)
        doc = extract(tmp_path/name, settings=s)
        assert (doc.kind, doc.text, doc.name, doc.nbytes) == (kind, text, name, len(data)), (name, doc.text)

def test_a_scanned_pdf_is_read_by_ocr_and_text_pages_are_not(s):
    scan = io.BytesIO()
    render("Scanned contracts are read by OCR".split(), 40).convert("RGB").save(scan, "PDF", resolution=150)
    doc = extract(scan.getvalue(), "scan.pdf", s)
    assert doc.ocr_pages == 1 and doc.text == "Scanned contracts are read by OCR"
    assert extract(text_pdf([["A page of typed text, long enough."]]), "t.pdf", s).ocr_pages == 0
    off = load_settings(env={}, platform={"data_dir": s.data_dir}, documents={"ocr": False})
    assert extract(scan.getvalue(), "scan.pdf", off).text == ""

def test_language_and_metadata(s):
    doc = extract(text_pdf([["Le conseil a approuvé le budget de la ville pour l'année prochaine."]], title="Conseil"), "fr.pdf", s)
    assert doc.language == "fr" and doc.metadata["title"] == "Conseil"

@pytest.mark.parametrize("data,name,words", [
    (b"", "empty.pdf", "empty.pdf: empty (0 bytes)"),
    (text_pdf([["x"]])[:150], "torn.pdf", "torn.pdf: damaged"),
    (docx_bytes("x")[:300], "torn.docx", "torn.docx: a zip archive that is not a Word document"),
    (b"PK\x03\x04" + b"\0" * 100, "fake.docx", "fake.docx: a zip archive that is not a Word document"),
    (b"\x7fELF\x02\x01\x01\x00" + b"\0" * 64, "prog.pdf", "prog.pdf: a binary file of no kind read here")])
def test_a_damaged_file_is_one_error_naming_it(s, data, name, words):
    with pytest.raises(ValidationError) as e: extract(data, name, s)
    assert str(e.value).startswith(words), str(e.value)

def test_a_password_protected_pdf_is_named_so(s):
    from pypdf import PdfReader, PdfWriter
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(text_pdf([["secret"]]))))
    writer.encrypt("hunter2")
    buf = io.BytesIO()
    writer.write(buf)
    with pytest.raises(ValidationError, match="locked.pdf: password-protected; expected a PDF that opens without a password"):
        extract(buf.getvalue(), "locked.pdf", s)

def test_limits(s):
    small = load_settings(env={}, platform={"data_dir": s.data_dir}, documents={"max_mb": 1, "max_pages": 2})
    with pytest.raises(TooLarge, match=r"big.txt: over 1 MB \(\[documents\] max_mb\)"): extract(b"x" * (2**20 + 1), "big.txt", small)
    with pytest.raises(ValidationError, match=r"long.pdf: 3 pages, at most 2 \(\[documents\] max_pages\)"):
        extract(text_pdf([["a"], ["b"], ["c"]]), "long.pdf", small)
