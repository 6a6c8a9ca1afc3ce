"""Packet v1: one PDF for the external review agency, and its manifest.

Order of pages::

    cover (case, insured, agency, due time, contents with page ranges)
    parts, in the order given (the caller puts the EOC first, then each provider's records)
    good-faith attestation (every provider's documented attempts and the request's status)

Every page carries a footer stamp ``<case_id> · page N of M``. The stamp is a small content
stream added after each page's own content (wrapped in ``q``/``Q``), with a standard Helvetica
font resource: the original content streams are never parsed or decoded. Parts are merged with
pypdf (the append that intake checked); the merged file is stamped and saved with pikepdf,
whose public API adds streams and resources to a page (pypdf has none that does not re-encode
or rely on private methods), with every stream written as stored. (pypdf's
``merge_page`` of a reportlab overlay would parse and re-encode every page's content: slower,
and it fails on pages whose content it cannot decode, such as JBIG2 "bomb" pages that intake
accepted because it never decodes them either.)

Parts must have passed :func:`worker.documents.check_document`; their ``data`` is appended with
:func:`worker.documents.append_pdf`, the same call the check verified. A part that still fails
raises :class:`PacketError`: a packet never silently drops a document.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import Any

import pikepdf
from pikepdf import Dictionary, Name
from pypdf import PdfReader, PdfWriter
from reportlab.lib.pagesizes import LETTER
from reportlab.pdfbase.pdfmetrics import stringWidth
from reportlab.pdfgen.canvas import Canvas

from worker.documents import append_pdf
from worker.localtime import format_local

__all__ = [
    "AttemptLine",
    "BuiltPacket",
    "CoverInfo",
    "PacketError",
    "PacketPart",
    "ProviderAttestation",
    "build_packet",
]

PART_KINDS = frozenset({"eoc", "records", "authorization"})


class PacketError(ValueError):
    """A packet cannot be built from these inputs (a part is unreadable, a field is invalid).
    The message names the part by index and kind, never by content."""


@dataclass(frozen=True)
class CoverInfo:
    """What the cover and the attestation print about the case. ``citation`` and ``tz`` come
    from the case's jurisdiction (``Jurisdiction.citation``/``.tz``): every instant on the
    packet is printed in that zone with its offset; the manifest keeps ISO 8601 UTC."""

    case_id: str
    notification_id: str
    agency_name: str
    jurisdiction: str
    review_type: str
    insured_name: str
    member_id: str
    due_at: datetime  # timezone-aware
    generated_at: datetime  # timezone-aware
    carrier_name: str
    citation: str  # the jurisdiction's rule, e.g. "958 CMR 3.409 (notice under 958 CMR 3.408)"
    tz: tzinfo  # the jurisdiction's zone
    supplemental: bool = False
    sequence: int = 1  # 1 for the first packet of a case, 2.. for supplemental packets


@dataclass(frozen=True)
class AttemptLine:
    """One documented attempt to obtain records, as printed on the attestation."""

    number: int
    at: datetime
    channel: str
    destination: str
    outcome: str
    reason: str


@dataclass(frozen=True)
class ProviderAttestation:
    provider_name: str
    provider_id: str
    status: str  # the request's status, e.g. "fulfilled", "no_records", "exhausted"
    attempts: Sequence[AttemptLine]


@dataclass(frozen=True)
class PacketPart:
    kind: str  # "eoc" | "records" | "authorization"
    title: str
    data: bytes  # the PDF to append (DocumentCheck.data)
    source_sha256: str  # of the document as received (DocumentCheck.sha256)
    provider_id: str | None = None


@dataclass(frozen=True)
class BuiltPacket:
    pdf: bytes
    pages: int
    sha256: str  # of ``pdf``
    manifest: dict[str, Any]


# --- layout -----------------------------------------------------------------------------------

_WIDTH, _HEIGHT = LETTER
_MARGIN = 60.0  # points
_TOP = _HEIGHT - 60.0
_BOTTOM = 60.0  # leaves room for the footer stamp
_BODY = 10.0  # font size, points
_LEADING = 13.0

_STAMP_FONT = Name("/GFStampHelv")
_STAMP_SIZE = 8.0  # points
_STAMP_INSET = 18.0  # points from the visible bottom and right edges


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
class _Entry:
    title: str
    kind: str
    first: int
    last: int


def _render_cover(cover: CoverInfo, entries: Sequence[_Entry], total: int) -> tuple[bytes, int]:
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
    pdf = flow.finish()
    return pdf, flow.pages


def _render_attestation(cover: CoverInfo, attestation: Sequence[ProviderAttestation]) -> bytes:
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


# --- stamping ---------------------------------------------------------------------------------


def _pdf_string(text: str) -> bytes:
    raw = text.encode("cp1252", errors="replace")
    return b"(" + raw.replace(b"\\", b"\\\\").replace(b"(", b"\\(").replace(b")", b"\\)") + b")"


def _num(value: float) -> bytes:
    return f"{value:.2f}".rstrip("0").rstrip(".").encode()


def _stamp_pages(pdf: pikepdf.Pdf, case_id: str) -> None:
    """Add ``<case_id> · page N of M`` at the visible bottom right of every page, honouring
    /Rotate and the crop box, without touching the original content streams: a ``q`` stream is
    put before them and the stamp (which opens with the matching ``Q``) after them."""
    font = pdf.make_indirect(
        Dictionary(
            Type=Name.Font,
            Subtype=Name.Type1,
            BaseFont=Name.Helvetica,
            Encoding=Name.WinAnsiEncoding,
        )
    )
    save_state = pikepdf.Stream(pdf, b"q\n")  # one stream object, shared by every page
    total = len(pdf.pages)
    for number, page in enumerate(pdf.pages, start=1):
        box = page.cropbox  # falls back to the media box, inherited values included
        x0, y0, x1, y1 = (float(box[i]) for i in range(4))
        rotation = int(page.obj.get(Name.Rotate, 0)) % 360
        # Map a visually upright coordinate system (origin at the visible bottom left) onto
        # the page's user space.
        if rotation == 90:
            matrix, width = (0.0, 1.0, -1.0, 0.0, x1, y0), y1 - y0
        elif rotation == 180:
            matrix, width = (-1.0, 0.0, 0.0, -1.0, x1, y1), x1 - x0
        elif rotation == 270:
            matrix, width = (0.0, -1.0, 1.0, 0.0, x0, y1), y1 - y0
        else:
            matrix, width = (1.0, 0.0, 0.0, 1.0, x0, y0), x1 - x0
        text = f"{case_id} \u00b7 page {number} of {total}"
        text_width = stringWidth(text, "Helvetica", _STAMP_SIZE)
        x = max(_STAMP_INSET, width - _STAMP_INSET - text_width)
        stamp = (
            b"\nQ\nq "
            + b" ".join(_num(v) for v in matrix)
            + b" cm 0 g BT "
            + str(_STAMP_FONT).encode()
            + b" "
            + _num(_STAMP_SIZE)
            + b" Tf "
            + _num(x)
            + b" "
            + _num(_STAMP_INSET)
            + b" Td "
            + _pdf_string(text)
            + b" Tj ET Q\n"
        )
        # contents_add only rewrites the /Contents array; no stream is parsed or decoded.
        page.contents_add(save_state, prepend=True)
        page.contents_add(stamp)
        page.add_resource(font, Name.Font, _STAMP_FONT)


def _stamped(merged: io.BytesIO, case_id: str) -> bytes:
    """The merged packet with every page stamped, saved by qpdf with every stream kept as it is
    (never decoded nor recompressed: a bomb stays a small compressed stream)."""
    merged.seek(0)
    out = io.BytesIO()
    with pikepdf.open(merged) as pdf:
        _stamp_pages(pdf, case_id)
        pdf.save(
            out,
            stream_decode_level=pikepdf.StreamDecodeLevel.none,
            compress_streams=False,
            fix_metadata_version=False,
            deterministic_id=True,
        )
    return out.getvalue()


# --- assembly ---------------------------------------------------------------------------------


def build_packet(
    cover: CoverInfo,
    parts: Sequence[PacketPart],
    attestation: Sequence[ProviderAttestation] = (),
) -> BuiltPacket:
    """Assemble the packet PDF and its manifest. Raises PacketError when a part cannot be
    appended (run parts through check_document first)."""
    readers: list[tuple[PacketPart, PdfReader, int]] = []
    for index, part in enumerate(parts):
        if part.kind not in PART_KINDS:
            raise PacketError(f"part {index}: unknown kind {part.kind!r}")
        try:
            reader = PdfReader(io.BytesIO(part.data), strict=False)
            count = len(reader.pages)
        except Exception as exc:
            raise PacketError(
                f"part {index} ({part.kind}) cannot be read: {type(exc).__name__}; "
                "pass DocumentCheck.data of an accepted check"
            ) from exc
        if count == 0:
            raise PacketError(f"part {index} ({part.kind}) has no pages")
        readers.append((part, reader, count))

    attestation_pdf = _render_attestation(cover, attestation)
    attestation_pages = len(PdfReader(io.BytesIO(attestation_pdf)).pages)
    body_pages = sum(count for _, _, count in readers)

    # The cover lists page ranges that depend on its own length: render until it is stable.
    cover_pages = 1
    for _ in range(5):
        entries, next_page = [], cover_pages + 1
        for part, _, count in readers:
            entries.append(_Entry(part.title, part.kind, next_page, next_page + count - 1))
            next_page += count
        entries.append(
            _Entry(
                "Good-faith attestation",
                "attestation",
                next_page,
                next_page + attestation_pages - 1,
            )
        )
        total = cover_pages + body_pages + attestation_pages
        cover_pdf, rendered = _render_cover(cover, entries, total)
        if rendered == cover_pages:
            break
        cover_pages = rendered
    else:  # pragma: no cover - layout converges in two rounds
        raise PacketError("cover layout did not converge")

    writer = PdfWriter()
    append_pdf(writer, PdfReader(io.BytesIO(cover_pdf)), outline_item="Cover")
    manifest_parts: list[dict[str, Any]] = []
    for index, ((part, reader, count), entry) in enumerate(zip(readers, entries, strict=False)):
        try:
            append_pdf(writer, reader, outline_item=part.title)
        except Exception as exc:
            raise PacketError(
                f"part {index} ({part.kind}) cannot be appended: {type(exc).__name__}"
            ) from exc
        if len(writer.pages) != entry.last:
            raise PacketError(f"part {index} ({part.kind}) appended {count} pages unevenly")
        manifest_parts.append(
            {
                "kind": part.kind,
                "title": part.title,
                "provider_id": part.provider_id,
                "source_sha256": part.source_sha256,
                "sha256_in_packet": hashlib.sha256(part.data).hexdigest(),
                "pages": count,
                "first_page": entry.first,
                "last_page": entry.last,
            }
        )
    append_pdf(
        writer, PdfReader(io.BytesIO(attestation_pdf)), outline_item="Good-faith attestation"
    )
    if len(writer.pages) != total:
        raise PacketError(f"assembled {len(writer.pages)} pages, expected {total}")

    writer.add_metadata({"/Title": f"Records packet {cover.case_id}", "/Producer": "goodfaith"})
    merged = io.BytesIO()
    writer.write(merged)
    del writer, readers  # the merged bytes are all that is needed from here on
    pdf = _stamped(merged, cover.case_id)
    digest = hashlib.sha256(pdf).hexdigest()
    attestation_first = entries[-1].first
    manifest: dict[str, Any] = {
        "case_id": cover.case_id,
        "notification_id": cover.notification_id,
        "supplemental": cover.supplemental,
        "sequence": cover.sequence,
        "generated_at": cover.generated_at.isoformat(),
        "pages": total,
        "packet_sha256": digest,
        "cover_pages": {"first_page": 1, "last_page": cover_pages},
        "parts": manifest_parts,
        "attestation_pages": {"first_page": attestation_first, "last_page": total},
    }
    return BuiltPacket(pdf=pdf, pages=total, sha256=digest, manifest=manifest)
