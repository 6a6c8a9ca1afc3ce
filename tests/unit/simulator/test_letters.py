"""The simulator's own reader of our letters (simulator/letters.py), independent of
worker.documents: it finds the reference on the letters we really send."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from simulator import letters
from simulator.documents import generate_authorization_pdf
from simulator.letters import page_count, read_patient, read_reference
from tests.unit.simulator.world import letter
from worker.letters import LetterInfo, build_request_letter

INFO = LetterInfo(
    reference="GF-7K3M9Q2P",
    carrier_name="Bay State Health Plan",
    return_fax="+16175550100",
    provider_name="Acme Orthopedics",
    insured_name="Jane Q. Sample",
    member_id="M00012345",
    birth_date="1961-04-12",
    service="Lumbar epidural steroid injection",
    codes=("62323", "M54.16"),
    dates_of_service=("2026-01-05", "2026-01-19"),
    respond_by=datetime(2026, 3, 4, 17, 0, tzinfo=UTC),
    attempt_number=2,
    citation="958 CMR 3.409",
    tz=ZoneInfo("America/New_York"),
)


def test_reads_the_reference_on_our_real_request_letter() -> None:
    """The letter worker/letters.py builds (with an authorization appended) yields its reference."""
    pdf = build_request_letter(INFO, generate_authorization_pdf("M00012345", "Jane Q. Sample"))
    assert read_reference(pdf) == "GF-7K3M9Q2P"
    assert page_count(pdf) == 2


def test_reads_the_reference_as_a_whole_word_only() -> None:
    """A reference inside a longer token is not ours; a letter without one yields None."""
    assert read_reference(letter("GF-AAAA0001")) == "GF-AAAA0001"
    assert read_reference(letter("GF-AAAA00012")) is None
    assert read_reference(letter("none quoted")) is None


def test_unreadable_bytes_yield_no_reference_and_no_page_count() -> None:
    """Not a PDF: read_reference and page_count answer None, never raise."""
    assert read_reference(b"%PDF-1.4 truncated") is None
    assert read_reference(b"hello") is None
    assert page_count(b"hello") is None


def test_a_letter_is_read_once_however_often_it_is_asked_about(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Pages, reference and patient of the same bytes (a redial sends the same letter) come
    from one reading: the far side does not re-extract text from identical PDFs."""
    pdf = build_request_letter(
        replace(INFO, reference="GF-ONCE0001"), generate_authorization_pdf("M1", "Jane Q. Sample")
    )
    reads: list[str] = []
    real_read, real_count = letters._read, letters._count

    def reading(data: bytes, pages: int = 1) -> Any:
        reads.append("text")
        return real_read(data, pages)

    def counting(data: bytes) -> Any:
        reads.append("count")
        return real_count(data)

    monkeypatch.setattr(letters, "_read", reading)
    monkeypatch.setattr(letters, "_count", counting)
    for _ in range(3):
        assert read_reference(bytes(pdf)) == "GF-ONCE0001"
        assert read_patient(bytes(pdf)) == ("Jane Q. Sample", "1961-04-12")
        assert page_count(bytes(pdf)) == 2
    assert reads == ["text", "count"]  # once for its text, once for its page count
    assert read_reference(letter("GF-AAAA0002")) == "GF-AAAA0002"  # other bytes: read anew
    assert reads == ["text", "count", "text"]


def test_the_second_page_is_read_only_when_the_first_does_not_answer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Our letter says everything on its first page: its appended authorization is not read.
    Behind a cover sheet without our reference, the second page is read and answers."""
    import io

    from pypdf import PdfReader, PdfWriter

    extracted: list[int] = []
    real = letters._plain_text

    def counting(page: Any) -> Any:
        extracted.append(1)
        return real(page)

    monkeypatch.setattr(letters, "_plain_text", counting)
    pdf = build_request_letter(
        replace(INFO, reference="GF-PAGE0001"), generate_authorization_pdf("M1", "Jane Q. Sample")
    )
    assert read_reference(pdf) == "GF-PAGE0001"
    assert read_patient(pdf) == ("Jane Q. Sample", "1961-04-12")
    assert page_count(pdf, letter=True) == 2
    assert len(extracted) == 1

    writer = PdfWriter()
    for part in (letter("Cover sheet: 2 pages follow"), build_request_letter(INFO, None)):
        for page in PdfReader(io.BytesIO(part)).pages:
            writer.add_page(page)
    out = io.BytesIO()
    writer.write(out)
    behind_cover = out.getvalue()
    extracted.clear()
    assert read_reference(behind_cover) == "GF-7K3M9Q2P"
    assert read_patient(behind_cover) == ("Jane Q. Sample", "1961-04-12")
    assert len(extracted) == 3  # page 1 alone, then pages 1 and 2 together, each once


def _pdf(fonts: dict[str, Any], content: bytes) -> bytes:
    """A one-page PDF drawing ``content`` with the font dictionaries ``fonts`` (name: dict)."""
    import io

    import pikepdf

    pdf = pikepdf.new()
    page = pikepdf.Dictionary(
        Type=pikepdf.Name.Page,
        MediaBox=[0, 0, 612, 792],
        Resources=pikepdf.Dictionary(
            Font=pikepdf.Dictionary({k: pikepdf.Dictionary(v) for k, v in fonts.items()})
        ),
        Contents=pdf.make_stream(content),
    )
    pdf.pages.append(pikepdf.Page(page))
    out = io.BytesIO()
    pdf.save(out)
    return out.getvalue()


_HELVETICA = {
    "/Type": "/Font",
    "/Subtype": "/Type1",
    "/BaseFont": "/Helvetica",
    "/Encoding": "/WinAnsiEncoding",
}


def _standard(content: bytes) -> bytes:
    import pikepdf

    font = {k: pikepdf.Name(v) for k, v in _HELVETICA.items()}
    return _pdf({"/F1": font}, content)


def test_standard_font_pages_are_read_without_pypdf(monkeypatch: pytest.MonkeyPatch) -> None:
    """Our letters (standard Helvetica) are read from their text operators: pypdf's text
    extraction, ten times slower, is not called; what is read matches what pypdf reads."""
    import io

    from pypdf import PageObject, PdfReader

    pdf = build_request_letter(replace(INFO, reference="GF-FAST0001"), None)
    by_pypdf = PdfReader(io.BytesIO(pdf)).pages[0].extract_text()

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("pypdf text extraction used on a standard-font page")

    monkeypatch.setattr(PageObject, "extract_text", refuse)
    assert read_reference(pdf) == "GF-FAST0001"
    assert read_patient(pdf) == ("Jane Q. Sample", "1961-04-12")
    read = letters._read(pdf)
    assert read is not None and read[1][0] is not None
    assert sorted(read[1][0].split()) == sorted(by_pypdf.split())  # the same words


def test_text_operators_place_lines_and_spaces() -> None:
    """Td/TD/Tm/T*/TL/'/" move the line; TJ arrays join their strings, a wide adjustment is a
    space; pieces on one baseline join left to right; escapes and WinAnsi decode."""
    content = rb"""BT /F1 10 Tf 200 700 Td (right) Tj ET
BT /F1 10 Tf 72 700 Td (Patient:) Tj ET
BT /F1 10 Tf 1 0 0 1 72 680 Tm [(Ref) 20 (erence) -250 (GF-TJAR0001)] TJ
14 TL T* (second \(line\)) Tj (after) ' 0 0 (caf\351) " 0 -14 TD (last) Tj T* (end) Tj ET"""
    text = letters._read(_standard(content))
    assert text is not None
    assert text[1][0] == (
        "Patient: right\nReference GF-TJAR0001\nsecond (line)\nafter\ncaf\u00e9\nlast\nend"
    )
    assert read_reference(_standard(content)) == "GF-TJAR0001"


def test_pages_in_other_fonts_are_read_by_pypdf() -> None:
    """An embedded TrueType font (its codes need the font's own map), a font with custom
    differences, or text before any font: the page is read by pypdf, and still answers."""
    import io

    import reportlab
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.ttfonts import TTFont
    from reportlab.pdfgen.canvas import Canvas

    vera = f"{reportlab.__path__[0]}/fonts/Vera.ttf"
    pdfmetrics.registerFont(TTFont("Vera", vera))
    buffer = io.BytesIO()
    canvas = Canvas(buffer, invariant=True)
    canvas.setFont("Vera", 11)
    canvas.drawString(72, 720, "Our reference: GF-TTF00001")
    canvas.drawString(72, 700, "Patient: Ann Other")
    canvas.drawString(72, 680, "Date of birth: 1970-01-02")
    canvas.showPage()
    canvas.save()
    embedded = buffer.getvalue()
    import pikepdf

    with pikepdf.open(io.BytesIO(embedded)) as pdf:
        assert letters._plain_text(pdf.pages[0]) is None
    assert read_reference(embedded) == "GF-TTF00001"
    assert read_patient(embedded) == ("Ann Other", "1970-01-02")

    differences = dict(_HELVETICA)
    font = {k: pikepdf.Name(v) for k, v in differences.items()}
    font["/Encoding"] = pikepdf.Dictionary(Differences=[65, pikepdf.Name("/B")])
    custom = _pdf({"/F1": font}, b"BT /F1 10 Tf 72 700 Td (GF-DIFF0001) Tj ET")
    with pikepdf.open(io.BytesIO(custom)) as pdf:
        assert letters._plain_text(pdf.pages[0]) is None
    assert read_reference(custom) == "GF-DIFF0001"  # pypdf applies the differences (none used)

    fontless = _standard(b"BT 72 700 Td (GF-NOFT0001) Tj ET")
    with pikepdf.open(io.BytesIO(fontless)) as pdf:
        assert letters._plain_text(pdf.pages[0]) is None
