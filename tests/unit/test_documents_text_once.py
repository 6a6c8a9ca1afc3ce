"""A document's text is extracted once per check: the reference and the "no records" answer
are read from the pages' text that the quality checks extract anyway, with the same results
as reading the document's first pages on their own (worker/documents.py)."""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pikepdf
import pytest
from pypdf import PdfReader
from reportlab.pdfgen.canvas import Canvas

from config.settings import DocumentSettings
from simulator.documents import (
    generate_no_records_certificate,
    generate_no_records_letter,
    generate_records_pdf,
)
from worker import documents, documents_check
from worker.documents import check_document, extract_reference, is_no_records_reply
from worker.documents_check import inspect_document
from worker.domain.similarity import dates_of_service

LIMITS = DocumentSettings()


def _pages(*texts: str) -> bytes:
    out = io.BytesIO()
    canvas = Canvas(out)
    for text in texts:
        canvas.drawString(72, 720, text)
        canvas.showPage()
    canvas.save()
    return out.getvalue()


def _counting(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Patch page_texts where it is called from; the list gets each call's max_pages."""
    calls: list[int] = []
    real: Callable[..., Any] = documents.page_texts

    def counted(data: bytes, max_pages: int, budget_seconds: float | None = None) -> Any:
        calls.append(max_pages)
        return real(data, max_pages, budget_seconds)

    monkeypatch.setattr(documents, "page_texts", counted)
    monkeypatch.setattr(documents_check, "page_texts", counted)
    return calls


SIMULATED = {
    "records": lambda: generate_records_pdf("GF-ABCD2345", "Example Orthopedics", "M1001", 8),
    "no records letter": lambda: generate_no_records_letter("GF-ABCD2345", "Example Orthopedics"),
    "no records certificate": lambda: generate_no_records_certificate(
        "GF-ABCD2345", "Ciox", "Example Orthopedics", "2026-04-20"
    ),
    "reference on page 2": lambda: _pages("Medical records", "Re: GF-ABCD2345", "Notes"),
    "reference on page 3 only": lambda: _pages("Cover", "Notes", "Re: GF-ABCD2345"),
    "no records, four pages": lambda: _pages("We have no records for this patient.", "", "", ""),
}


@pytest.mark.parametrize("name", sorted(SIMULATED))
def test_one_extraction_answers_as_reading_the_first_pages_alone(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = SIMULATED[name]()
    check = check_document(data, "application/pdf")
    assert check.accepted
    expected = (extract_reference(check.data), is_no_records_reply(check.data))
    calls = _counting(monkeypatch)
    inspection = inspect_document(data, "application/pdf", [], LIMITS)
    assert (inspection.reference, inspection.no_records) == expected
    assert calls == [LIMITS.qa_max_pages]  # the text was read once


def test_the_simulated_answers_are_what_they_say() -> None:
    """The table above is not vacuous: references and "no records" answers are found."""
    found = {
        name: (extract_reference(make()), is_no_records_reply(make()))
        for name, make in SIMULATED.items()
    }
    assert found["records"] == ("GF-ABCD2345", False)
    assert found["no records letter"][1] is True
    assert found["reference on page 2"] == ("GF-ABCD2345", False)
    assert found["reference on page 3 only"] == (None, False)  # only the first 2 pages count
    assert found["no records, four pages"] == (None, False)  # a "no records" reply is short


def test_when_the_quality_checks_read_fewer_pages_the_first_pages_are_read_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``qa_max_pages`` 1 (or a time budget spent before page 3): the reference on page 2 is
    still found, by reading the first pages on their own (once for both answers)."""
    data = _pages("Medical records", "Re: GF-ABCD2345", "Notes")
    limits = LIMITS.model_copy(update={"qa_max_pages": 1})
    calls = _counting(monkeypatch)
    inspection = inspect_document(data, "application/pdf", [], limits)
    assert inspection.reference == "GF-ABCD2345"
    assert len(inspection.texts) == 1
    assert calls == [1, 3]  # the first 3 pages once, for the reference and the reply


def test_every_corpus_file_answers_as_before(corpus: Path) -> None:
    """Real-world files: the one extraction finds the same reference and "no records" answer
    as reading each file's first pages on its own."""
    files = sorted(corpus.rglob("*.pdf"))
    assert files
    compared = 0
    for path in files:
        data = path.read_bytes()
        inspection = inspect_document(data, "application/pdf", [], LIMITS)
        if not inspection.check.accepted:
            continue
        data = inspection.check.data
        assert inspection.reference == extract_reference(data), path.name
        assert inspection.no_records == is_no_records_reply(data), path.name
        compared += 1
    assert compared >= 20


def test_pdfium_reads_the_text_and_pypdf_a_file_it_cannot_open(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """PDFium reads the text; a file it cannot open (here: made to fail) is read by pypdf,
    and the texts say which one read them (their signatures compare only with their kind)."""
    data = generate_records_pdf("GF-ABCD2345", "Example Orthopedics", "M1001", 3)
    found = documents.page_texts(data, 10)
    assert found is not None and found.extractor == documents.PDFIUM
    assert found.pages == 3 and len(found.texts) == 3
    assert "GF-ABCD2345" in found.texts[0] and "\r" not in "".join(found.texts)
    monkeypatch.setattr(documents, "_pdfium_texts", lambda *_: None)
    fallback = documents.page_texts(data, 10)
    assert fallback is not None and fallback.extractor == documents.PYPDF
    assert fallback.pages == 3 and documents.reference_in(fallback) == "GF-ABCD2345"
    inspection = inspect_document(data, "application/pdf", [], LIMITS)  # still patched
    assert inspection.qa.text == documents.PYPDF and inspection.reference == "GF-ABCD2345"


def test_a_page_too_big_to_read_is_not_read_by_pdfium_either() -> None:
    """The bounds hold for PDFium as for pypdf: a page whose content stream is larger than
    MAX_TEXT_STREAM_BYTES compressed is not read (text "")."""
    pdf = pikepdf.new()
    for content in (b"BT /F1 12 Tf 72 720 Td (GF-ABCD2345) Tj ET", None):
        pdf.add_blank_page(page_size=(612, 792))
        page = pdf.pages[-1]
        page.obj.Resources = pikepdf.Dictionary(
            Font=pikepdf.Dictionary(
                F1=pikepdf.Dictionary(
                    Type=pikepdf.Name.Font, Subtype=pikepdf.Name.Type1, BaseFont="/Helvetica"
                )
            )
        )
        page.obj.Contents = pikepdf.Stream(pdf, content or b"")
    text = b"BT /F1 12 Tf 72 720 Td (GF-ABCD2345) Tj ET\n"
    noise = os.urandom(documents.MAX_TEXT_STREAM_BYTES)  # incompressible: stored as large
    noise = noise.replace(b"\r", b" ")
    pdf.pages[1].obj.Contents = pikepdf.Stream(pdf, text + b"%" + noise.replace(b"\n", b" "))
    out = io.BytesIO()
    pdf.save(out)
    found = documents.page_texts(out.getvalue(), 10)
    assert found is not None and found.extractor == documents.PDFIUM
    assert "GF-ABCD2345" in found.texts[0]
    assert found.texts[1] == ""


def test_pdfium_reads_the_corpus_as_pypdf_did(corpus: Path) -> None:
    """Real-world files: PDFium's text gives the same reference, "no records" answer and dates
    of service as pypdf's (what goodfaith read before it), page by page."""
    compared = pages = 0
    for path in sorted(corpus.rglob("*.pdf")):
        check = check_document(
            path.read_bytes(), "application/pdf", passwords=(), max_pages=200, max_bytes=2**26
        )
        if not check.accepted:
            continue
        ours = documents.page_texts(check.data, 20)
        assert ours is not None and ours.extractor == documents.PDFIUM, path.name
        theirs = _pypdf_texts(check.data, 20, ours)
        assert documents.reference_in(ours) == documents.reference_in(theirs), path.name
        assert documents.no_records_in(ours) == documents.no_records_in(theirs), path.name
        for number, (mine, other) in enumerate(zip(ours.texts, theirs.texts, strict=True), 1):
            if mine and other:
                assert dates_of_service(mine) == dates_of_service(other), (path.name, number)
                pages += 1
        compared += 1
    assert compared >= 20 and pages >= 50


def _pypdf_texts(data: bytes, max_pages: int, ours: documents.PageTexts) -> documents.PageTexts:
    """pypdf's text of the pages PDFium read (those it left "" stay "": not text-safe)."""
    reader = PdfReader(io.BytesIO(data), strict=False)
    texts = []
    for index, mine in enumerate(ours.texts[:max_pages]):
        try:
            texts.append(reader.pages[index].extract_text() if mine else "")
        except Exception:
            texts.append("")
    return documents.PageTexts(ours.pages, texts, documents.PYPDF)
