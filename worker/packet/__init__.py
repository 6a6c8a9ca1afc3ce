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
from typing import Any

from pypdf import PdfReader, PdfWriter

from worker.documents import append_pdf
from worker.packet.model import (
    PART_KINDS,
    AttemptLine,
    BuiltPacket,
    CoverInfo,
    PacketError,
    PacketPart,
    ProviderAttestation,
)
from worker.packet.pages import Entry, render_attestation, render_cover
from worker.packet.stamps import stamped

__all__ = [
    "AttemptLine",
    "BuiltPacket",
    "CoverInfo",
    "PacketError",
    "PacketPart",
    "ProviderAttestation",
    "build_packet",
]


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

    attestation_pdf = render_attestation(cover, attestation)
    attestation_pages = len(PdfReader(io.BytesIO(attestation_pdf)).pages)
    body_pages = sum(count for _, _, count in readers)

    # The cover lists page ranges that depend on its own length: render until it is stable.
    cover_pages = 1
    for _ in range(5):
        entries, next_page = [], cover_pages + 1
        for part, _, count in readers:
            entries.append(Entry(part.title, part.kind, next_page, next_page + count - 1))
            next_page += count
        entries.append(
            Entry(
                "Good-faith attestation",
                "attestation",
                next_page,
                next_page + attestation_pages - 1,
            )
        )
        total = cover_pages + body_pages + attestation_pages
        cover_pdf, rendered = render_cover(cover, entries, total)
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
    pdf = stamped(merged, cover.case_id)
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
