"""The outbound records-request letter: what is faxed to a provider (or attached to a FHIR Task).

Page 1 is the request letter. It prints the request reference large near the top, so the
provider can quote it and :func:`worker.documents.extract_reference` can find it in the text
layer of a reply that carries our letter back; what is requested; which attempt this is; the
response deadline; and how to answer (fax the records to ``return_fax`` quoting the reference,
or tell us in writing that the office holds none). The insured's signed authorization, when
given, follows as pages 2 onwards. The wording must not itself read as a "no records" reply
(:func:`worker.documents.is_no_records_reply`): providers often fax the letter back.

Output is deterministic for the same inputs (qpdf's deterministic id), and drawn with the
standard Helvetica fonts (cp1252 text only; other characters print as "?"): see ``_Page``.
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


#: the page's font resources: the standard font each name stands for
_FONT_KEYS = {"Helvetica": b"/F1", "Helvetica-Bold": b"/F2"}


class _Page:
    """One page of text and boxes in the standard Helvetica fonts, as a PDF content stream.

    The letter is drawn for every attempt sent. reportlab's general page model, and a second
    qpdf pass to append the authorization, cost 2.0–2.4 ms a letter with a one-page
    authorization (issue 11's eighth session), most of it building and serialising reportlab's
    object tree. The page's content stream is written here (text operators, WinAnsi strings)
    and the document is built and saved by qpdf (pikepdf), which appends the authorization's
    pages in the same document: 0.8–0.9 ms. Widths still come from reportlab's font metrics."""

    def __init__(self) -> None:
        self.ops: list[bytes] = []
        self.font, self.size = "Helvetica", 10.0

    def set_font(self, font: str, size: float) -> None:
        self.font, self.size = font, size

    def text(self, x: float, y: float, text: str) -> None:
        data = text.encode("cp1252", errors="replace")
        data = data.replace(b"\\", b"\\\\").replace(b"(", b"\\(").replace(b")", b"\\)")
        self.ops.append(
            b"BT %s %s Tf %s %s Td (%s) Tj ET"
            % (_FONT_KEYS[self.font], _num(self.size), _num(x), _num(y), data)
        )

    def text_right(self, x: float, y: float, text: str) -> None:
        self.text(x - stringWidth(text, self.font, self.size), y, text)

    def rect(self, x: float, y: float, width: float, height: float, line_width: float) -> None:
        self.ops.append(
            b"%s w %s %s %s %s re S"
            % (_num(line_width), _num(x), _num(y), _num(width), _num(height))
        )

    def pdf(self, title: str) -> pikepdf.Pdf:
        """A one-page document of what was drawn."""
        pdf = pikepdf.new()
        fonts = pikepdf.Dictionary(
            {
                key.decode(): pikepdf.Dictionary(
                    Type=pikepdf.Name.Font,
                    Subtype=pikepdf.Name.Type1,
                    BaseFont=pikepdf.Name("/" + font),
                    Encoding=pikepdf.Name.WinAnsiEncoding,
                )
                for font, key in _FONT_KEYS.items()
            }
        )
        page = pikepdf.Dictionary(
            Type=pikepdf.Name.Page,
            MediaBox=[0, 0, _WIDTH, _HEIGHT],
            Resources=pikepdf.Dictionary(Font=fonts),
            Contents=pdf.make_stream(b"\n".join(self.ops)),
        )
        pdf.pages.append(pikepdf.Page(page))
        pdf.docinfo["/Title"] = title
        return pdf


def _num(value: float) -> bytes:
    """A PDF number: at most 2 decimals, no trailing zeros."""
    return (b"%.2f" % value).rstrip(b"0").rstrip(b".") or b"0"


def _letter_page(info: LetterInfo) -> pikepdf.Pdf:
    c = _Page()
    y = _HEIGHT - 64

    c.set_font("Helvetica-Bold", 14)
    c.text(_MARGIN, y, _safe(info.carrier_name))
    c.set_font("Helvetica", 9)
    c.text_right(_WIDTH - _MARGIN, y, f"Reply by fax: {info.return_fax}")
    y -= 30

    # The reference, large and boxed: providers copy it onto their reply.
    c.rect(_MARGIN, y - 34, _TEXT_WIDTH, 44, line_width=1.5)
    c.set_font("Helvetica-Bold", 22)
    c.text(_MARGIN + 12, y - 22, f"Re: {info.reference}")
    c.set_font("Helvetica", 9)
    c.text_right(_WIDTH - _MARGIN - 12, y - 14, "Quote this reference on every page")
    c.text_right(_WIDTH - _MARGIN - 12, y - 26, "of your reply.")
    y -= 58

    c.set_font("Helvetica-Bold", 13)
    attempt = f"{_ordinal(info.attempt_number)} request (attempt {info.attempt_number})"
    title = "RECORDS REVIEW" if info.purpose else "EXTERNAL REVIEW"
    c.text(_MARGIN, y, f"REQUEST FOR MEDICAL RECORDS - {title}")
    y -= 16
    c.set_font("Helvetica-Bold", 11)
    c.text(_MARGIN, y, attempt)
    y -= 24

    def paragraph(text: str, font: str = "Helvetica", size: float = 10.5) -> None:
        nonlocal y
        c.set_font(font, size)
        for line in _wrap_paragraph(_safe(text), font, size, _TEXT_WIDTH):
            c.text(_MARGIN, y, line)
            y -= size * 1.35
        y -= 6

    def field(label: str, value: str) -> None:
        nonlocal y
        c.set_font("Helvetica-Bold", 10.5)
        c.text(_MARGIN, y, label)
        c.set_font("Helvetica", 10.5)
        lines = _wrap(_safe(value), "Helvetica", 10.5, _TEXT_WIDTH - 130) or ("",)
        for line in lines:
            c.text(_MARGIN + 130, y, line)
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
    c.set_font("Helvetica", 8)
    c.text(_MARGIN, 40, f"{info.reference} - {attempt}")
    return c.pdf(f"Request for medical records {info.reference}")


def build_request_letter(info: LetterInfo, authorization_pdf: bytes | None) -> bytes:
    """The request letter (one page) followed by the authorization's pages, as PDF bytes.
    Raises LetterError for a malformed reference or an authorization PDF qpdf cannot open
    (run it through check_document first)."""
    if not REFERENCE_RE.fullmatch(info.reference):
        raise LetterError(f"reference {info.reference!r} is not of the form GF-XXXXXXXX")
    if info.attempt_number < 1:
        raise LetterError("attempt_number is 1-based")
    with _letter_page(info) as letter:
        if authorization_pdf is None:
            return _saved(letter)
        try:
            with pikepdf.open(io.BytesIO(authorization_pdf)) as auth:
                letter.pages.extend(auth.pages)
                return _saved(letter)
        except Exception as exc:
            raise LetterError(
                f"authorization PDF cannot be appended: {type(exc).__name__}; "
                "check it with worker.documents.check_document and pass DocumentCheck.data"
            ) from exc


def _saved(pdf: pikepdf.Pdf) -> bytes:
    out = io.BytesIO()
    pdf.save(out, deterministic_id=True, compress_streams=True)
    return out.getvalue()
