"""The outbound records-request letter (worker/letters.py)."""

from __future__ import annotations

import dataclasses
import io
from datetime import UTC, datetime

import pytest
from pypdf import PdfReader

from config.jurisdictions import get_jurisdiction
from simulator.documents import generate_authorization_pdf
from worker.documents import check_document, extract_reference, is_no_records_reply
from worker.letters import LetterError, LetterInfo, build_request_letter

MA, TX = get_jurisdiction("MA"), get_jurisdiction("TX")
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
    citation=MA.citation,
    tz=MA.tz,
)


def _text(pdf: bytes, page: int = 0) -> str:
    return PdfReader(io.BytesIO(pdf)).pages[page].extract_text()


def test_letter_alone_is_one_page() -> None:
    """Without an authorization the letter is a single page."""
    assert len(PdfReader(io.BytesIO(build_request_letter(INFO, None))).pages) == 1


def test_authorization_pages_follow_the_letter() -> None:
    """The authorization's pages are appended after the letter page, in order."""
    auth = generate_authorization_pdf(INFO.member_id, INFO.insured_name)
    pdf = build_request_letter(INFO, auth)
    assert len(PdfReader(io.BytesIO(pdf)).pages) == 2
    assert "Authorization for Release of Medical Records" in _text(pdf, 1)


def test_reference_is_extractable_from_the_letter() -> None:
    """extract_reference finds the letter's reference, so a faxed-back letter can be matched."""
    assert extract_reference(build_request_letter(INFO, None)) == INFO.reference


def test_letter_says_what_is_requested_and_how_to_reply() -> None:
    """Page 1 names the attempt, the service and codes, the deadline and both ways to reply."""
    text = " ".join(_text(build_request_letter(INFO, None)).split())
    for expected in (
        "attempt 2",
        "2nd request",
        "Acme Orthopedics",
        "Lumbar epidural steroid injection",
        "62323, M54.16",
        "2026-01-05, 2026-01-19",
        "Please respond by: 2026-03-04 12:00 EST (-05:00)",
        "under 958 CMR 3.409 (notice under 958 CMR 3.408).",
        "medical records and treatment notes",
        "Fax the records to +16175550100",
        "holds none of these records",
    ):
        assert expected in text, expected


def test_texas_letter_cites_texas_law_in_central_time() -> None:
    """A TX letter cites the Texas rule, not Massachusetts', and its deadline is Central time
    with the offset, in standard and in daylight time."""
    winter = dataclasses.replace(INFO, citation=TX.citation, tz=TX.tz)
    summer = dataclasses.replace(winter, respond_by=datetime(2026, 4, 21, 21, 0, tzinfo=UTC))
    for info, deadline in (
        (winter, "Please respond by: 2026-03-04 11:00 CST (-06:00)"),
        (summer, "Please respond by: 2026-04-21 16:00 CDT (-05:00)"),
    ):
        text = " ".join(_text(build_request_letter(info, None)).split())
        assert "under Tex. Ins. Code 4201.402." in text and "958 CMR" not in text
        assert deadline in text and "+00:00" not in text


def test_massachusetts_letter_in_daylight_time_prints_edt() -> None:
    """An MA deadline in April prints Eastern daylight time with its -04:00 offset."""
    info = dataclasses.replace(INFO, respond_by=datetime(2026, 4, 17, 13, 49, tzinfo=UTC))
    text = " ".join(_text(build_request_letter(info, None)).split())
    assert "Please respond by: 2026-04-17 09:49 EDT (-04:00)" in text


def test_naive_deadline_is_refused() -> None:
    """A deadline without a zone cannot be printed as local time: ValueError names the fix."""
    info = dataclasses.replace(INFO, respond_by=datetime(2026, 3, 4, 17, 0))
    with pytest.raises(ValueError, match="timezone-aware"):
        build_request_letter(info, None)


def test_letter_is_not_read_as_a_no_records_reply() -> None:
    """Our own letter, faxed back, must not count as the provider saying it holds no records."""
    auth = generate_authorization_pdf(INFO.member_id, INFO.insured_name)
    assert not is_no_records_reply(build_request_letter(INFO, None))
    assert not is_no_records_reply(build_request_letter(INFO, auth))


def test_letter_passes_intake_checks() -> None:
    """The letter is a PDF our own intake accepts (it may be attached to a FHIR Task)."""
    check = check_document(build_request_letter(INFO, None))
    assert check.accepted and check.pages == 1


def test_letter_is_deterministic() -> None:
    """Same inputs give the same bytes (letters are stored and hashed per attempt)."""
    assert build_request_letter(INFO, None) == build_request_letter(INFO, None)


@pytest.mark.parametrize("reference", ["GF-123", "gf-7k3m9q2p", "XX-7K3M9Q2P", "GF-7K3M9Q2PX"])
def test_malformed_reference_is_refused(reference: str) -> None:
    """A reference not of the form GF-XXXXXXXX raises LetterError."""
    with pytest.raises(LetterError):
        build_request_letter(dataclasses.replace(INFO, reference=reference), None)


def test_attempt_number_is_one_based() -> None:
    """attempt_number 0 raises LetterError."""
    with pytest.raises(LetterError):
        build_request_letter(dataclasses.replace(INFO, attempt_number=0), None)


def test_unreadable_authorization_is_refused() -> None:
    """A broken authorization PDF raises LetterError naming the fix, not a pypdf error."""
    with pytest.raises(LetterError, match="check_document"):
        build_request_letter(INFO, b"%PDF-1.4 not really")


def test_non_latin_names_do_not_break_the_letter() -> None:
    """Characters outside cp1252 are replaced, and the letter still builds."""
    info = dataclasses.replace(INFO, insured_name="Zoë 王", provider_name="Ŝtudio Clinic")
    text = _text(build_request_letter(info, None))
    assert "Zoë ?" in text


def test_pdf_string_delimiters_in_names_print_as_written() -> None:
    """Parentheses and backslashes in a name are escaped in the page's text, not read as the
    end of a PDF string: the letter prints them, and qpdf finds nothing wrong."""
    info = dataclasses.replace(
        INFO, insured_name=r"Sample (Jr.) \ O'Neil", provider_name="Acme (North) Clinic)"
    )
    pdf = build_request_letter(info, None)
    text = " ".join(_text(pdf).split())
    assert r"Patient: Sample (Jr.) \ O'Neil" in text
    assert "To: Acme (North) Clinic), Medical Records" in text
    check = check_document(pdf)
    assert check.accepted and check.pages == 1


def test_the_letter_is_a_letter_page_in_the_standard_fonts() -> None:
    """One US Letter page (612 x 792 points) whose text is set in Helvetica and Helvetica-Bold
    (the standard fonts every fax renderer has), titled with the reference."""
    reader = PdfReader(io.BytesIO(build_request_letter(INFO, None)))
    page = reader.pages[0]
    assert [float(v) for v in page.mediabox] == [0, 0, 612, 792]
    fonts = page["/Resources"]["/Font"]
    assert sorted(str(f.get_object()["/BaseFont"]) for f in fonts.values()) == [
        "/Helvetica",
        "/Helvetica-Bold",
    ]
    assert reader.metadata is not None and INFO.reference in str(reader.metadata.title)
