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

Parts should have passed :func:`worker.documents.check_document`, which ran this same path
(:func:`worker.packet.prepare.trial`) on each of them alone. Assembly still guards every part:
one that cannot be read, appended or stamped is left out and named, with the reason, in the
cover's contents and in the manifest's ``excluded`` list, and the packet goes on (no single
document can stop a packet). :class:`PacketError` is raised only for invalid inputs (an
unknown part kind) or a failure no part can be blamed for.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Sequence
from typing import Any

from pypdf import PdfReader, PdfWriter

from worker.packet.model import (
    PART_KINDS,
    AttemptLine,
    BuiltPacket,
    CoverInfo,
    PacketError,
    PacketPart,
    ProviderAttestation,
    ReplyLine,
)
from worker.packet.pages import Entry, render_attestation, render_cover
from worker.packet.prepare import append_pdf, trial
from worker.packet.stamps import stamped

__all__ = [
    "AttemptLine",
    "BuiltPacket",
    "CoverInfo",
    "PacketError",
    "PacketPart",
    "ProviderAttestation",
    "ReplyLine",
    "build_packet",
    "excluded_entry",
]


#: (index in the given parts, the part, its reader, its page count)
_Readable = tuple[int, PacketPart, PdfReader, int]


def _skipped(excluded: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    return [(e["title"], e["kind"], e["reason"]) for e in excluded]


class _PartFailed(Exception):
    def __init__(self, index: int, reason: str) -> None:
        super().__init__(reason)
        self.index, self.reason = index, reason


def _reason(step: str, exc: BaseException) -> str:
    """What failed, naming the exception class and step only (messages may quote content)."""
    return f"{step}: {type(exc).__name__}"


def excluded_entry(part: PacketPart, reason: str) -> dict[str, Any]:
    """A part left out of the packet, as the manifest lists it."""
    return {
        "kind": part.kind,
        "title": part.title,
        "provider_id": part.provider_id,
        "document_id": part.document_id,
        "source_sha256": part.source_sha256,
        "reason": reason,
    }


def build_packet(
    cover: CoverInfo,
    parts: Sequence[PacketPart],
    attestation: Sequence[ProviderAttestation] = (),
) -> BuiltPacket:
    """Assemble the packet PDF and its manifest. A part that cannot be read, appended or
    stamped is excluded and named (``BuiltPacket.excluded``, the manifest's ``excluded``, the
    cover); raises PacketError only for an unknown part kind or a failure of the packet as a
    whole."""
    for index, part in enumerate(parts):
        if part.kind not in PART_KINDS:
            raise PacketError(f"part {index}: unknown kind {part.kind!r}")
    readers: list[_Readable] = []
    excluded: list[dict[str, Any]] = []
    for index, part in enumerate(parts):
        try:
            reader = PdfReader(io.BytesIO(part.data), strict=False)
            count = len(reader.pages)
        except Exception as exc:
            excluded.append(
                excluded_entry(part, f"part {index} ({part.kind}) " + _reason("unreadable", exc))
            )
            continue
        if count == 0:
            excluded.append(excluded_entry(part, f"part {index} ({part.kind}) has no pages"))
            continue
        readers.append((index, part, reader, count))

    checked = False
    for _ in range(len(parts) + 2):
        try:
            return _assemble(cover, readers, attestation, excluded)
        except _PartFailed as failed:
            part = next(r[1] for r in readers if r[0] == failed.index)
            readers = [r for r in readers if r[0] != failed.index]
            excluded.append(excluded_entry(part, failed.reason))
        except PacketError:
            raise
        except Exception as exc:
            if checked:
                raise PacketError(f"packet cannot be assembled: {type(exc).__name__}") from exc
            # Not pinned on a part (the stamp or the save of the whole): try each part alone.
            checked = True
            kept = []
            for readable in readers:
                index, part = readable[0], readable[1]
                try:
                    trial(part.data)
                except Exception as part_exc:
                    reason = f"part {index} ({part.kind}) " + _reason("stamp", part_exc)
                    excluded.append(excluded_entry(part, reason))
                else:
                    kept.append(readable)
            readers = kept
    raise PacketError("packet cannot be assembled")  # pragma: no cover - bounded by the parts


def _assemble(
    cover: CoverInfo,
    readers: list[_Readable],
    attestation: Sequence[ProviderAttestation],
    excluded: list[dict[str, Any]],
) -> BuiltPacket:
    """One assembly of the readable parts; raises _PartFailed naming a part that fails."""
    attestation_pdf = render_attestation(cover, attestation)
    attestation_pages = len(PdfReader(io.BytesIO(attestation_pdf)).pages)
    body_pages = sum(count for _, _, _, count in readers)

    # The cover lists page ranges that depend on its own length: render until it is stable.
    cover_pages = 1
    for _ in range(5):
        entries, next_page = [], cover_pages + 1
        for _, part, _, count in readers:
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
        cover_pdf, rendered = render_cover(cover, entries, total, _skipped(excluded))
        if rendered == cover_pages:
            break
        cover_pages = rendered
    else:  # pragma: no cover - layout converges in two rounds
        raise PacketError("cover layout did not converge")

    writer = PdfWriter()
    append_pdf(writer, PdfReader(io.BytesIO(cover_pdf)), outline_item="Cover")
    manifest_parts: list[dict[str, Any]] = []
    for (index, part, reader, count), entry in zip(readers, entries, strict=False):
        try:
            append_pdf(writer, reader, outline_item=part.title)
        except Exception as exc:
            reason = f"part {index} ({part.kind}) " + _reason("append", exc)
            raise _PartFailed(index, reason) from exc
        if len(writer.pages) != entry.last:
            raise _PartFailed(index, f"part {index} ({part.kind}) appended {count} pages unevenly")
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
        "excluded": excluded,
        "attestation_pages": {"first_page": attestation_first, "last_page": total},
    }
    return BuiltPacket(pdf=pdf, pages=total, sha256=digest, manifest=manifest, excluded=excluded)
