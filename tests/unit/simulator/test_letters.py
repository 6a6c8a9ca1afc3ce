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
    opened: list[int] = []
    real = letters.PdfReader

    def counting(stream: Any) -> Any:
        opened.append(1)
        return real(stream)

    monkeypatch.setattr(letters, "PdfReader", counting)
    for _ in range(3):
        assert read_reference(bytes(pdf)) == "GF-ONCE0001"
        assert read_patient(bytes(pdf)) == ("Jane Q. Sample", "1961-04-12")
        assert page_count(bytes(pdf)) == 2
    assert len(opened) == 2  # once for its text, once for its page count
    assert read_reference(letter("GF-AAAA0002")) == "GF-AAAA0002"  # other bytes: read anew
    assert len(opened) == 3


def test_the_second_page_is_read_only_when_the_first_does_not_answer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Our letter says everything on its first page: its appended authorization is not read.
    Behind a cover sheet without our reference, the second page is read and answers."""
    import io

    from pypdf import PageObject, PdfReader, PdfWriter

    extracted: list[int] = []
    real = PageObject.extract_text

    def counting(page: Any, *args: Any, **kwargs: Any) -> Any:
        extracted.append(1)
        return real(page, *args, **kwargs)

    monkeypatch.setattr(PageObject, "extract_text", counting)
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
