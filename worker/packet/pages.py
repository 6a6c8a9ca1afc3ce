"""The pages goodfaith writes into a packet: the cover (with the contents and their page
ranges) and the good-faith attestation. Times are printed in the jurisdiction's zone."""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass

from reportlab.lib.pagesizes import LETTER
from reportlab.pdfbase.pdfmetrics import stringWidth
from reportlab.pdfgen.canvas import Canvas

from worker.localtime import format_local
from worker.packet.model import CoverInfo, ProviderAttestation

_WIDTH, _HEIGHT = LETTER
_MARGIN = 60.0  # points
_TOP = _HEIGHT - 60.0
_BOTTOM = 60.0  # leaves room for the footer stamp
_BODY = 10.0  # font size, points
_LEADING = 13.0


def _fit(text: str, font: str, size: float, width: float) -> str:
    """Truncate ``text`` with "..." so it fits ``width`` points."""
    if stringWidth(text, font, size) <= width:
        return text
    while text and stringWidth(text + "...", font, size) > width:
        text = text[:-1]
    return text + "..."


class _Flow:
    """Top-to-bottom lines of text on as many LETTER pages as they need."""

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
        leading = max(_LEADING, size * 1.3)
        self._need(leading)
        self.canvas.setFont(font, size)
        x = _MARGIN + indent
        self.canvas.drawString(x, self.y - size, _fit(text, font, size, _WIDTH - _MARGIN - x))
        self.y -= leading

    def columns(
        self, cells: Sequence[tuple[float, str]], *, font: str = "Helvetica", size: float = 9.0
    ) -> None:
        """One row of cells at x offsets (points from the margin); each cell is truncated to
        the next cell's offset."""
        self._need(_LEADING)
        self.canvas.setFont(font, size)
        edges = [offset for offset, _ in cells[1:]] + [_WIDTH - 2 * _MARGIN]
        for (offset, text), edge in zip(cells, edges, strict=True):
            fitted = _fit(text, font, size, edge - offset - 6)
            self.canvas.drawString(_MARGIN + offset, self.y - size, fitted)
        self.y -= _LEADING

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
    flow.gap(_LEADING)
    flow.line("Contents", font="Helvetica-Bold", size=12)
    flow.columns(
        [(0.0, "#"), (24.0, "Document"), (330.0, "Kind"), (410.0, "Pages")],
        font="Helvetica-Bold",
    )
    for index, entry in enumerate(entries, start=1):
        span = f"{entry.first}" if entry.first == entry.last else f"{entry.first}-{entry.last}"
        flow.columns([(0.0, str(index)), (24.0, entry.title), (330.0, entry.kind), (410.0, span)])
    if excluded:
        flow.gap(_LEADING)
        flow.line("Not included (could not be processed)", font="Helvetica-Bold", size=12)
        flow.columns([(0.0, "Document"), (220.0, "Kind"), (290.0, "Reason")], font="Helvetica-Bold")
        for title, kind, reason in excluded:
            flow.columns([(0.0, title), (220.0, kind), (290.0, reason)])
    pdf = flow.finish()
    return pdf, flow.pages


def render_attestation(cover: CoverInfo, attestation: Sequence[ProviderAttestation]) -> bytes:
    flow = _Flow(f"Good-faith attestation {cover.case_id}")
    flow.line("Good-faith efforts to obtain medical records", font="Helvetica-Bold", size=14)
    flow.line(f"Case {cover.case_id} - {cover.jurisdiction} - {cover.carrier_name}")
    flow.line(f"Records duty under {cover.citation}")
    flow.gap()
    flow.line(
        "For records it did not hold, the carrier made the documented attempts listed below "
        "to each provider or its designee."
    )
    flow.line(f"Statement generated {format_local(cover.generated_at, cover.tz)}.")
    flow.gap(_LEADING)
    if not attestation:
        flow.line("No provider requests were needed for this case.")
    # Column offsets (points from the margin); the time column fits a local time with its
    # zone and offset, "2026-03-02 09:30 EST (-05:00)".
    offsets = (0.0, 20.0, 155.0, 200.0, 330.0, 400.0)
    titles = ("#", "Time", "Channel", "Destination", "Outcome", "Reason")
    header = list(zip(offsets, titles, strict=True))
    for provider in attestation:
        flow.keep(4 * _LEADING)
        flow.line(
            f"{provider.provider_name} (id {provider.provider_id})",
            font="Helvetica-Bold",
            size=11,
        )
        flow.line(
            f"Request status: {provider.status}; documented attempts: {len(provider.attempts)}"
        )
        if provider.attempts:
            flow.columns(header, font="Helvetica-Bold")
        for attempt in provider.attempts:
            cells = (
                str(attempt.number),
                format_local(attempt.at, cover.tz),
                attempt.channel,
                attempt.destination,
                attempt.outcome,
                attempt.reason,
            )
            flow.columns(list(zip(offsets, cells, strict=True)))
        flow.gap()
    return flow.finish()
