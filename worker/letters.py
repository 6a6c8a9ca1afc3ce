"""The outbound records-request letter: what is faxed to a provider (or attached to a FHIR Task).

Page 1 is the request letter. It prints the request reference large near the top, so the
provider can quote it and :func:`worker.documents.extract_reference` can find it in the text
layer of a reply that carries our letter back; what is requested; which attempt this is; the
response deadline; and how to answer (fax the records to ``return_fax`` quoting the reference,
or tell us in writing that the office holds none). The insured's signed authorization, when
given, follows as pages 2 onwards. The wording must not itself read as a "no records" reply
(:func:`worker.documents.is_no_records_reply`): providers often fax the letter back.

Output is deterministic for the same inputs (reportlab ``invariant``, qpdf's deterministic id), and drawn with the
standard Helvetica fonts (cp1252 text only; other characters print as "?").
"""

from __future__ import annotations

import functools
import io
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, tzinfo

import pikepdf
from reportlab.lib.pagesizes import LETTER
from reportlab.pdfbase.pdfmetrics import stringWidth
from reportlab.pdfgen.canvas import Canvas

from worker.documents import REFERENCE_RE
from worker.localtime import format_local

__all__ = ["LetterError", "LetterInfo", "build_request_letter"]


class LetterError(ValueError):
    """The letter cannot be built (bad reference, unreadable authorization PDF)."""


@dataclass(frozen=True)
class LetterInfo:
    """What one request letter prints. ``citation`` and ``tz`` come from the case's
    jurisdiction (``Jurisdiction.citation``/``.tz``): the rule the carrier acts under, and the
    zone every instant is printed in."""

    reference: str  # "GF-XXXXXXXX"
    carrier_name: str
    return_fax: str  # E.164
    provider_name: str
    insured_name: str
    member_id: str
    birth_date: str  # as printed, e.g. "1961-04-12"
    service: str  # the disputed service, in words
    codes: Sequence[str]  # CPT/HCPCS/ICD codes of the disputed service
    dates_of_service: Sequence[str]
    respond_by: datetime  # timezone-aware
    attempt_number: int  # 1-based
    citation: str  # the jurisdiction's rule, e.g. "Tex. Ins. Code 4201.402"
    tz: tzinfo  # the jurisdiction's zone: respond_by is printed in it
    #: a campaign's request: what the records are for (its name), instead of an external review
    purpose: str | None = None
    #: the other requests this one letter serves (a coalesced chase), one line each:
    #: "GF-XXXXXXXX: what is asked"; a reply quoting any of them serves them all
    also: Sequence[str] = ()


_WIDTH, _HEIGHT = LETTER
_MARGIN = 66.0  # points
_TEXT_WIDTH = _WIDTH - 2 * _MARGIN


def _safe(text: str) -> str:
    # Standard fonts draw cp1252 only; substitute anything else visibly rather than silently.
    return text.encode("cp1252", errors="replace").decode("cp1252")


def _wrap(text: str, font: str, size: float, width: float) -> tuple[str, ...]:
    """``text`` broken into lines no wider than ``width`` points."""
    words, lines, current = text.split(), [], ""
    for word in words:
        candidate = f"{current} {word}".strip()
        if current and stringWidth(candidate, font, size) > width:
            lines.append(current)
            current = word
        else:
            current = candidate
    if current:
        lines.append(current)
    return tuple(lines)


#: :func:`_wrap` for the letter's paragraphs, which are the same in most letters (measuring
#: them was a third of drawing a letter). Only paragraphs go through it, never the patient's
#: fields: the cache must not keep PHI after the letter is drawn.
_wrap_paragraph = functools.lru_cache(maxsize=256)(_wrap)


def _ordinal(number: int) -> str:
    if 10 <= number % 100 <= 20:
        suffix = "th"
    else:
        suffix = {1: "st", 2: "nd", 3: "rd"}.get(number % 10, "th")
    return f"{number}{suffix}"


def _letter_page(info: LetterInfo) -> bytes:
    buffer = io.BytesIO()
    c = Canvas(buffer, pagesize=LETTER, invariant=True, pageCompression=1)
    c.setTitle(f"Request for medical records {info.reference}")
    y = _HEIGHT - 64

    c.setFont("Helvetica-Bold", 14)
    c.drawString(_MARGIN, y, _safe(info.carrier_name))
    c.setFont("Helvetica", 9)
    c.drawRightString(_WIDTH - _MARGIN, y, f"Reply by fax: {info.return_fax}")
    y -= 30

    # The reference, large and boxed: providers copy it onto their reply.
    c.setLineWidth(1.5)
    c.rect(_MARGIN, y - 34, _TEXT_WIDTH, 44)
    c.setFont("Helvetica-Bold", 22)
    c.drawString(_MARGIN + 12, y - 22, f"Re: {info.reference}")
    c.setFont("Helvetica", 9)
    c.drawRightString(_WIDTH - _MARGIN - 12, y - 14, "Quote this reference on every page")
    c.drawRightString(_WIDTH - _MARGIN - 12, y - 26, "of your reply.")
    y -= 58

    c.setFont("Helvetica-Bold", 13)
    attempt = f"{_ordinal(info.attempt_number)} request (attempt {info.attempt_number})"
    title = "RECORDS REVIEW" if info.purpose else "EXTERNAL REVIEW"
    c.drawString(_MARGIN, y, f"REQUEST FOR MEDICAL RECORDS - {title}")
    y -= 16
    c.setFont("Helvetica-Bold", 11)
    c.drawString(_MARGIN, y, attempt)
    y -= 24

    def paragraph(text: str, font: str = "Helvetica", size: float = 10.5) -> None:
        nonlocal y
        c.setFont(font, size)
        for line in _wrap_paragraph(_safe(text), font, size, _TEXT_WIDTH):
            c.drawString(_MARGIN, y, line)
            y -= size * 1.35
        y -= 6

    def field(label: str, value: str) -> None:
        nonlocal y
        c.setFont("Helvetica-Bold", 10.5)
        c.drawString(_MARGIN, y, label)
        c.setFont("Helvetica", 10.5)
        lines = _wrap(_safe(value), "Helvetica", 10.5, _TEXT_WIDTH - 130) or ("",)
        for line in lines:
            c.drawString(_MARGIN + 130, y, line)
            y -= 14

    paragraph(f"To: {info.provider_name}, Medical Records / Release of Information")
    if info.purpose:
        paragraph(
            f"{info.carrier_name} requests the patient's medical records below for "
            f"{info.purpose}. We do not hold them and ask you to send them."
        )
    else:
        paragraph(
            f"{info.carrier_name} is required to send the patient's medical and treatment "
            f"records to the independent external review agency under {info.citation}. We do "
            "not hold the records below and ask you to send them."
        )
    field("Patient:", info.insured_name)
    field("Date of birth:", info.birth_date)
    field("Member ID:", info.member_id)
    field("Service in review:", info.service)
    field("Codes:", ", ".join(info.codes) or "-")
    field("Dates of service:", ", ".join(info.dates_of_service) or "-")
    field("Please respond by:", format_local(info.respond_by, info.tz))
    for line in info.also:
        field("Also requested:", line)
    y -= 8

    paragraph("What we request", font="Helvetica-Bold", size=11)
    paragraph(
        "All medical records and treatment notes for the service in review: office and "
        "progress notes, consultation reports, imaging and test results, operative or "
        "procedure notes, and the letter of medical necessity or opinion of the treating "
        "provider who requested or provided the service."
    )
    paragraph("How to reply", font="Helvetica-Bold", size=11)
    paragraph(
        f"1. Fax the records to {info.return_fax}, with the reference {info.reference} on "
        "your cover sheet."
    )
    paragraph(
        f"2. If your office holds none of these records, tell us so in a short written reply "
        f"quoting {info.reference}, faxed to {info.return_fax}."
    )
    paragraph(
        "The patient's signed authorization for release of medical records is attached. "
        "Disclosure for this purpose is also permitted under HIPAA (45 CFR 164.506, payment "
        "and health care operations)."
    )
    c.setFont("Helvetica", 8)
    c.drawString(_MARGIN, 40, f"{info.reference} - {attempt}")
    c.showPage()
    c.save()
    return buffer.getvalue()


def build_request_letter(info: LetterInfo, authorization_pdf: bytes | None) -> bytes:
    """The request letter (one page) followed by the authorization's pages, as PDF bytes.
    Raises LetterError for a malformed reference or an authorization PDF qpdf cannot open
    (run it through check_document first)."""
    if not REFERENCE_RE.fullmatch(info.reference):
        raise LetterError(f"reference {info.reference!r} is not of the form GF-XXXXXXXX")
    if info.attempt_number < 1:
        raise LetterError("attempt_number is 1-based")
    letter = _letter_page(info)
    if authorization_pdf is None:
        return letter
    # qpdf (pikepdf) copies the authorization's pages in about a quarter of pypdf's time: this
    # runs for every attempt sent (measured: 0.6 ms against 2.3 ms for a 1-page authorization)
    try:
        with (
            pikepdf.open(io.BytesIO(letter)) as out_pdf,
            pikepdf.open(io.BytesIO(authorization_pdf)) as auth,
        ):
            out_pdf.pages.extend(auth.pages)
            out = io.BytesIO()
            out_pdf.save(out, deterministic_id=True)
    except Exception as exc:
        raise LetterError(
            f"authorization PDF cannot be appended: {type(exc).__name__}; "
            "check it with worker.documents.check_document and pass DocumentCheck.data"
        ) from exc
    return out.getvalue()
