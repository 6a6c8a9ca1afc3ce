"""The pages goodfaith writes into a packet: the cover (with the contents and their page
ranges) and the good-faith attestation. Times are printed in the jurisdiction's zone."""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass

from reportlab.lib.pagesizes import LETTER
from reportlab.pdfbase.pdfmetrics import stringWidth
from reportlab.pdfgen.canvas import Canvas

from worker.domain.notices import windows_note
from worker.localtime import format_local
from worker.packet.model import CoverInfo, ProviderAttestation

_WIDTH, _HEIGHT = LETTER
_MARGIN = 60.0  # points
_TOP = _HEIGHT - 60.0
_BOTTOM = 60.0  # leaves room for the footer stamp
_BODY = 10.0  # font size, points
_LEADING = 13.0


def wrap(text: str, font: str, size: float, width: float) -> list[str]:
    """``text`` broken into lines that fit ``width`` points: at spaces, and inside a word only
    when the word alone is wider than a line. Nothing is ever cut off."""
    lines: list[str] = []
    for paragraph in text.split("\n"):
        line = ""
        for word in paragraph.split():
            candidate = f"{line} {word}" if line else word
            if stringWidth(candidate, font, size) <= width:
                line = candidate
                continue
            if line:
                lines.append(line)
            while stringWidth(word, font, size) > width:  # a word wider than a whole line
                cut = len(word)
                while cut > 1 and stringWidth(word[:cut], font, size) > width:
                    cut -= 1
                lines.append(word[:cut])
                word = word[cut:]
            line = word
        lines.append(line)
    return lines


class _Flow:
    """Top-to-bottom wrapped text on as many LETTER pages as it needs."""

    def __init__(self, title: str) -> None:
        self.buffer = io.BytesIO()
        self.canvas = Canvas(self.buffer, pagesize=LETTER, invariant=True, pageCompression=1)
        self.canvas.setTitle(title)
        self.y = _TOP
        self.pages = 1

    def _need(self, height: float) -> None:
        if self.y - height < _BOTTOM:
            self.canvas.showPage()
            self.pages += 1
            self.y = _TOP

    def line(
        self, text: str, *, font: str = "Helvetica", size: float = _BODY, indent: float = 0.0
    ) -> None:
        """``text``, wrapped to the page width (continuation lines at the same indent)."""
        leading = max(_LEADING, size * 1.3)
        x = _MARGIN + indent
        for part in wrap(text, font, size, _WIDTH - _MARGIN - x):
            self._need(leading)
            self.canvas.setFont(font, size)
            self.canvas.drawString(x, self.y - size, part)
            self.y -= leading

    def columns(
        self, cells: Sequence[tuple[float, str]], *, font: str = "Helvetica", size: float = 9.0
    ) -> None:
        """One row of cells at x offsets (points from the margin); each cell wraps within its
        column (up to the next cell's offset) and the row is as tall as its tallest cell."""
        edges = [offset for offset, _ in cells[1:]] + [_WIDTH - 2 * _MARGIN]
        wrapped = [
            wrap(text, font, size, edge - offset - 6)
            for (offset, text), edge in zip(cells, edges, strict=True)
        ]
        rows = max(len(w) for w in wrapped)
        self._need(rows * _LEADING)
        self.canvas.setFont(font, size)
        for (offset, _), parts in zip(cells, wrapped, strict=True):
            for row, part in enumerate(parts):
                self.canvas.drawString(_MARGIN + offset, self.y - size - row * _LEADING, part)
        self.y -= rows * _LEADING

    def gap(self, height: float = _LEADING / 2) -> None:
        self.y -= height

    def keep(self, height: float) -> None:
        """Start a new page unless ``height`` points still fit on this one."""
        self._need(height)

    def finish(self) -> bytes:
        self.canvas.showPage()
        self.canvas.save()
        return self.buffer.getvalue()


@dataclass(frozen=True)
class Entry:
    title: str
    kind: str
    first: int
    last: int
    flags: tuple[str, ...] = ()
    unreviewed: bool = False


def flags_text(flags: Sequence[str], unreviewed: bool = False) -> str:
    """How the index prints a document's QA flags: "-" for none, else the flags, then
    "unreviewed" when no person released the document before the deadline forced it out,
    or "released" when one did."""
    if not flags:
        return "-"
    return ", ".join(
        [*(f.replace("_", " ") for f in flags), "unreviewed" if unreviewed else "released"]
    )


def render_cover(
    cover: CoverInfo,
    entries: Sequence[Entry],
    total: int,
    excluded: Sequence[tuple[str, str, str]] = (),
) -> tuple[bytes, int]:
    """The cover and its page count. ``excluded`` lists (title, kind, reason) of documents
    that could not be put into the packet: the agency and ops see what is missing and why."""
    heading = "Supplemental records packet" if cover.supplemental else "Records packet"
    flow = _Flow(f"{heading} {cover.case_id}")
    flow.line(f"{heading} for external review", font="Helvetica-Bold", size=16)
    flow.line(f"Case {cover.case_id}", font="Helvetica-Bold", size=12)
    flow.gap()
    facts = [
        ("To", cover.agency_name),
        ("From", cover.carrier_name),
        ("Notification", cover.notification_id),
        ("Jurisdiction", cover.jurisdiction),
        ("Rule", cover.citation),
        ("Review type", cover.review_type),
        ("Insured", cover.insured_name),
        ("Member ID", cover.member_id),
        ("Due", format_local(cover.due_at, cover.tz)),
        ("Generated", format_local(cover.generated_at, cover.tz)),
        ("Packet", f"{'supplemental, ' if cover.supplemental else ''}sequence {cover.sequence}"),
        ("Pages", str(total)),
    ]
    for label, value in facts:
        flow.columns([(0.0, f"{label}:"), (90.0, value)], size=_BODY)
    if cover.follows_sha256:
        flow.line(
            f"This packet follows packet {cover.sequence - 1} of this case, "
            f"SHA-256 {cover.follows_sha256}.",
            size=_BODY,
        )
    flow.gap(_LEADING)
    flow.line("Contents", font="Helvetica-Bold", size=12)
    flow.columns(
        [(0.0, "#"), (24.0, "Document"), (250.0, "Kind"), (320.0, "Pages"), (380.0, "QA flags")],
        font="Helvetica-Bold",
    )
    for index, entry in enumerate(entries, start=1):
        span = f"{entry.first}" if entry.first == entry.last else f"{entry.first}-{entry.last}"
        flow.columns(
            [
                (0.0, str(index)),
                (24.0, entry.title),
                (250.0, entry.kind),
                (320.0, span),
                (380.0, flags_text(entry.flags, entry.unreviewed)),
            ]
        )
    if excluded:
        flow.gap(_LEADING)
        flow.line("Not included (could not be processed)", font="Helvetica-Bold", size=12)
        flow.columns([(0.0, "Document"), (220.0, "Kind"), (290.0, "Reason")], font="Helvetica-Bold")
        for title, kind, reason in excluded:
            flow.columns([(0.0, title), (220.0, kind), (290.0, reason)])
    pdf = flow.finish()
    return pdf, flow.pages


#: The sentence the attestation stands on (kept word for word: agencies read for it).
LEGAL_SENTENCE = (
    "For records it did not hold, the carrier made the documented attempts listed below "
    "to each provider or its designee."
)


def render_attestation(cover: CoverInfo, attestation: Sequence[ProviderAttestation]) -> bytes:
    """The good-faith attestation: the rule, who answers for it, and per provider (and
    designee) every attempt, reply and whether the attempt standard was met. Every instant is
    in the jurisdiction's zone; every text wraps, none is cut."""
    flow = _Flow(f"Good-faith attestation {cover.case_id}")
    flow.line("Good-faith efforts to obtain medical records", font="Helvetica-Bold", size=14)
    flow.line(f"Case {cover.case_id} - {cover.jurisdiction} - {cover.carrier_name}")
    flow.line(f"Records duty under {cover.citation}")
    flow.gap()
    flow.line(
        f"Under {cover.citation} the carrier makes no fewer than three reasonable, documented "
        "attempts to obtain the records it does not hold from each provider or the "
        "provider's designee."
    )
    flow.line(LEGAL_SENTENCE)
    if cover.cutoff is not None:
        flow.line(f"Outreach cutoff (packet assembly): {format_local(cover.cutoff, cover.tz)}.")
    flow.line(f"Statement generated {format_local(cover.generated_at, cover.tz)}.")
    if cover.responsible:
        flow.line(f"Responsible for this statement: {cover.responsible}, {cover.carrier_name}.")
    flow.gap(_LEADING)
    if not attestation:
        flow.line("No provider requests were needed for this case.")
    for provider in attestation:
        _provider_block(flow, cover, provider)
    return flow.finish()


def _standard_text(provider: ProviderAttestation) -> str | None:
    if provider.standard_met is None:
        return None
    made = provider.attempts_before_cutoff
    counted = f"{made} of {provider.required} required attempts made before the cutoff"
    if provider.standard_met:
        answered = provider.status in ("fulfilled", "no_records")
        why = "records or a no-records statement obtained; " if answered else ""
        return f"Three-attempt standard: met ({why}{counted})."
    return f"Three-attempt standard: NOT met ({counted})."


def _provider_block(flow: _Flow, cover: CoverInfo, provider: ProviderAttestation) -> None:
    flow.keep(5 * _LEADING)
    flow.line(provider.provider_name, font="Helvetica-Bold", size=11)
    flow.line(f"Provider id {provider.provider_id}")
    if provider.designee:
        flow.line(f"Designee: {provider.designee}")
    flow.line(f"Request status: {provider.status}; documented attempts: {len(provider.attempts)}")
    standard = _standard_text(provider)
    if standard:
        flow.line(standard)
    if provider.business_windows is not None:
        note = windows_note(provider.business_windows)
        short = provider.business_windows < provider.required
        flow.line(
            f"The outreach {note}" + (" (fewer than the attempts required)." if short else ".")
        )
    for attempt in provider.attempts:
        to = f"designee {attempt.designee}" if attempt.designee else "provider"
        dials = f"{attempt.transmissions} transmission{'' if attempt.transmissions == 1 else 's'}"
        flow.line(
            f"Attempt {attempt.number}: {format_local(attempt.at, cover.tz)}; {attempt.channel} "
            f"to {to}; {attempt.reason}; outcome {attempt.outcome}; {dials}",
            indent=10.0,
        )
        flow.line(f"Destination: {attempt.destination}", indent=24.0, size=9.0)
        if attempt.failure_reason:
            flow.line(f"Failure reason: {attempt.failure_reason}", indent=24.0, size=9.0)
    if provider.replies:
        flow.line("Replies received:", indent=10.0)
    for reply in provider.replies:
        what = "no-records statement" if reply.kind == "no_records" else "records"
        pages = f", {reply.pages} page{'' if reply.pages == 1 else 's'}" if reply.pages else ""
        state = reply.status + (f" ({reply.reason})" if reply.reason else "")
        flow.line(
            f"{format_local(reply.received_at, cover.tz)}: {what}{pages}; {state}", indent=24.0
        )
    flow.gap()
