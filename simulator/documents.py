"""Synthetic documents the simulated far side sends back: provider records replies, "no records"
letters, a carrier's evidence of coverage and a member's signed authorization.

Every function returns PDF bytes drawn directly on a reportlab canvas (no platypus: the
1,000-case benchmark generates thousands of these). Output is deterministic: the same arguments
give byte-identical PDFs (``invariant=True`` fixes the creation date and document id, and the
filler text is chosen from a seed derived from the arguments). Nothing here is real PHI.
"""

from __future__ import annotations

import functools
import hashlib
import io
from datetime import date, timedelta

from reportlab.lib.pagesizes import LETTER
from reportlab.lib.rl_accel import escapePDF
from reportlab.pdfgen.canvas import Canvas

__all__ = [
    "generate_authorization_pdf",
    "generate_eoc_pdf",
    "generate_no_records_certificate",
    "generate_no_records_letter",
    "generate_records_pdf",
]

_WIDTH, _HEIGHT = LETTER
_MARGIN = 72.0  # points (1 inch)
_LINE = 14.0  # points between lines of body text

_CLINICAL_SENTENCES = (
    "Patient seen in follow-up for chronic lower back pain radiating to the left leg.",
    "Reports pain 6/10 at rest, worse with prolonged sitting; sleep is disturbed.",
    "Completed six weeks of physical therapy with partial relief of symptoms.",
    "Trial of NSAIDs and a short course of oral steroids gave limited benefit.",
    "Neurological exam: strength 5/5 bilaterally, reflexes symmetric, sensation intact.",
    "Straight-leg raise positive on the left at 45 degrees.",
    "MRI lumbar spine reviewed: L4-L5 disc protrusion contacting the traversing nerve root.",
    "Discussed conservative options versus interventional treatment with the patient.",
    "Plan: request authorization for the procedure; continue home exercise program.",
    "Vital signs within normal limits. No fever, no weight loss, no bowel or bladder change.",
    "Medication list reconciled; no known drug allergies.",
    "Patient understands the risks and benefits and wishes to proceed.",
    "Follow-up in four weeks or sooner if symptoms worsen.",
    "Functional status: difficulty with stairs and lifting more than ten pounds.",
    "Assessment unchanged from prior visit; symptoms persistent despite therapy.",
)


def _seed(*parts: object) -> int:
    digest = hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "big")


def _canvas(buffer: io.BytesIO, title: str) -> Canvas:
    c = Canvas(buffer, pagesize=LETTER, invariant=True, pageCompression=0)
    c.setTitle(title)
    c.setAuthor("goodfaith simulator")
    return c


def _lines(
    c: Canvas, lines: list[str], y: float, font: str = "Helvetica", size: float = 11
) -> float:
    """Draw ``lines`` downwards from ``y`` in one text object (cheaper than a drawString each);
    return the y below the last line."""
    text = c.beginText(_MARGIN, y)
    text.setFont(font, size, leading=_LINE)
    text.textLines(lines, trim=0)
    c.drawText(text)
    return y - _LINE * len(lines)


@functools.cache
def _escaped(offset: int) -> str:
    return str(escapePDF(_CLINICAL_SENTENCES[offset % len(_CLINICAL_SENTENCES)]))


def _note_body(offset: int, y: float, visit_seed: int) -> str:
    """24 lines of filler clinical text starting at sentence ``offset``, as PDF text operators.
    Each line ends with that visit's own measurements (from ``visit_seed``), so that notes of
    different visits differ as real ones do (the intake's cloned-documentation check would
    otherwise flag every generated reply); sentences are escaped once and cached."""
    shows = []
    for k in range(24):
        r = (visit_seed * 2654435761 + k * 40503) % 1_000_003
        measured = (
            f" BP {104 + r % 40}/{62 + r % 25} HR {56 + r % 41} SpO2 {93 + r % 7} "
            f"pain {r % 11} ROM {30 + r % 61} wt {52 + r % 70}"
        )
        shows.append(f"({_escaped(offset + k)}{measured}) Tj")
    return f"BT 1 0 0 1 {_MARGIN:g} {y:g} Tm {' T* '.join(shows)} ET"


def _fax_header(c: Canvas, provider_name: str, page: int, pages: int) -> None:
    c.setFont("Helvetica", 8)
    c.drawString(_MARGIN, _HEIGHT - 24, f"FROM: {provider_name}   FAX")
    c.drawRightString(_WIDTH - _MARGIN, _HEIGHT - 24, f"P. {page}/{pages}")


def generate_records_pdf(
    reference: str,
    provider_name: str,
    member_id: str,
    pages: int,
    *,
    patient_name: str = "",
    birth_date: str = "",
) -> bytes:
    """A provider's records reply as a fax brings it: a fax cover quoting ``Re: <reference>``,
    then ``pages - 1`` progress-note pages. ``pages`` is the total page count, cover included
    (minimum 1: a cover alone). Every page names the patient (``patient_name``, ``birth_date``
    as the request letter gave them) when they are given."""
    total = max(1, pages)
    seed = _seed(reference, provider_name, member_id, total)
    buffer = io.BytesIO()
    c = _canvas(buffer, f"Records {reference}")

    # Page 1: fax cover
    _fax_header(c, provider_name, 1, total)
    c.setFont("Helvetica-Bold", 22)
    c.drawString(_MARGIN, _HEIGHT - 110, "FAX")
    y = _lines(
        c,
        [
            f"From: {provider_name}, Health Information Management",
            "To: Medical Records Requests",
            f"Re: {reference}",
            f"Patient: {patient_name}   DOB: {birth_date}",
            f"Member ID: {member_id}",
            f"Pages (including cover): {total}",
        ],
        _HEIGHT - 150,
        size=12,
    )
    _lines(
        c,
        [
            "Enclosed are the medical records and treatment notes you requested.",
            "CONFIDENTIAL: this facsimile contains protected health information. If you",
            "received it in error, notify the sender and destroy all copies.",
        ],
        y - _LINE,
    )
    c.showPage()

    start = date(2025, 1, 6) + timedelta(days=seed % 200)
    n_sentences = len(_CLINICAL_SENTENCES)
    for index in range(2, total + 1):
        _fax_header(c, provider_name, index, total)
        visit = start + timedelta(days=14 * (index - 2))
        c.setFont("Helvetica-Bold", 14)
        c.drawString(_MARGIN, _HEIGHT - 90, "Progress note")
        y = _lines(
            c,
            [
                f"Date of service: {visit.isoformat()}",
                f"Provider: {provider_name}",
                f"Patient: {patient_name}   DOB: {birth_date}",
                f"Member ID: {member_id}",
            ],
            _HEIGHT - 115,
        )
        y -= _LINE
        offset = ((seed >> (index % 32)) + index) % n_sentences
        c.setFont("Helvetica", 10, leading=_LINE)  # the literal below draws in this font
        c.addLiteral(_note_body(offset, y, seed + index))
        c.showPage()

    c.save()
    return buffer.getvalue()


def generate_no_records_certificate(
    reference: str, vendor_name: str, provider_name: str, issued_at: str
) -> bytes:
    """One page: a retrieval vendor's formal certificate that ``provider_name`` holds no
    records for the patient of request ``reference`` (``issued_at`` as printed)."""
    buffer = io.BytesIO()
    c = _canvas(buffer, f"Certificate of no records {reference}")
    c.setFont("Helvetica-Bold", 14)
    c.drawString(_MARGIN, _HEIGHT - 90, "Certificate of No Records")
    _lines(
        c,
        [
            f"Issued by {vendor_name}, designee of {provider_name}",
            "",
            f"Re: {reference}",
            "",
            "No records.",
            "",
            "A diligent search of the provider's record systems found no medical records",
            "for this patient in the scope of the request quoted above.",
            "",
            f"Issued: {issued_at}",
            "Release of Information Services",
        ],
        _HEIGHT - 120,
        size=12,
    )
    c.showPage()
    c.save()
    return buffer.getvalue()


def generate_no_records_letter(reference: str, provider_name: str) -> bytes:
    """One page: the provider answers in writing that it holds no records for the patient,
    quoting ``Re: <reference>``."""
    buffer = io.BytesIO()
    c = _canvas(buffer, f"No records {reference}")
    _fax_header(c, provider_name, 1, 1)
    c.setFont("Helvetica-Bold", 14)
    c.drawString(_MARGIN, _HEIGHT - 90, provider_name)
    _lines(
        c,
        [
            "Health Information Management",
            "",
            f"Re: {reference}",
            "",
            "No records.",
            "",
            "We hold no medical records for this patient for the dates of service in your",
            "request. This letter is our written response to the request quoted above.",
            "",
            "Sincerely,",
            "Release of Information Desk",
        ],
        _HEIGHT - 120,
        size=12,
    )
    c.showPage()
    c.save()
    return buffer.getvalue()


def generate_eoc_pdf(plan_id: str, pages: int = 6) -> bytes:
    """A sample evidence of coverage for plan ``plan_id``: ``pages`` pages (minimum 1)."""
    total = max(1, pages)
    buffer = io.BytesIO()
    c = _canvas(buffer, f"Evidence of Coverage {plan_id}")
    sections = (
        "Definitions",
        "Covered services",
        "Prior authorization and medical necessity",
        "Exclusions and limitations",
        "Grievances and appeals",
        "External review",
        "Member rights and responsibilities",
    )
    for index in range(1, total + 1):
        c.setFont("Helvetica", 8)
        c.drawString(_MARGIN, _HEIGHT - 24, f"Evidence of Coverage - plan {plan_id}")
        if index == 1:
            c.setFont("Helvetica-Bold", 20)
            c.drawString(_MARGIN, _HEIGHT - 120, "Evidence of Coverage")
            _lines(
                c,
                [
                    f"Plan: {plan_id}",
                    "This booklet describes the benefits, limitations and exclusions of your",
                    "health plan, and how to appeal a decision and request external review.",
                ],
                _HEIGHT - 150,
                size=12,
            )
        else:
            section = sections[(index - 2) % len(sections)]
            c.setFont("Helvetica-Bold", 14)
            c.drawString(_MARGIN, _HEIGHT - 90, f"Section {index - 1}. {section}")
            body = [
                f"{index - 1}.{k} The plan covers medically necessary services described in this"
                " section,"
                for k in range(1, 13)
            ]
            _lines(c, body, _HEIGHT - 120, size=10)
        c.setFont("Helvetica", 8)
        c.drawCentredString(_WIDTH / 2, 30, f"EOC {plan_id} - {index}")
        c.showPage()
    c.save()
    return buffer.getvalue()


def generate_authorization_pdf(member_id: str, name: str) -> bytes:
    """A sample signed authorization for release of medical records (one page)."""
    buffer = io.BytesIO()
    c = _canvas(buffer, "Authorization for release of medical records")
    c.setFont("Helvetica-Bold", 16)
    c.drawString(_MARGIN, _HEIGHT - 90, "Authorization for Release of Medical Records")
    y = _lines(
        c,
        [
            f"Patient name: {name}",
            f"Member ID: {member_id}",
            "",
            "I authorize any physician, hospital or other health care provider that has treated",
            "me to release my medical records and treatment notes to my health plan and to the",
            "independent external review agency assigned to my request for external review.",
            "",
            "This authorization expires one year from the date signed. I may revoke it in",
            "writing at any time, except to the extent action has already been taken on it.",
        ],
        _HEIGHT - 125,
        size=11,
    )
    y -= 2 * _LINE
    c.line(_MARGIN, y, _MARGIN + 220, y)
    c.setFont("Helvetica-Oblique", 14)
    c.drawString(_MARGIN + 6, y + 4, name)
    c.setFont("Helvetica", 9)
    c.drawString(_MARGIN, y - 12, "Signature of patient or personal representative")
    c.drawString(_MARGIN + 260, y - 12, "Date: 2025-01-02")
    c.showPage()
    c.save()
    return buffer.getvalue()
