"""Packet v1: one PDF for the external review agency, and its manifest.

Order of pages::

    cover (case, insured, agency, due time, contents with page ranges)
    parts, in the order given (the caller puts the EOC first, then each provider's records)
    good-faith attestation (every provider's documented attempts and the request's status)

Every page carries a footer stamp ``<case_id> · page N of M``. The stamp is a small content
stream added after each page's own content (wrapped in ``q``/``Q``), with a standard Helvetica
font resource: the original content streams are never parsed or decoded. Parts are merged with
qpdf's own copy of foreign pages (pikepdf ``pages.extend``, what ``qpdf --pages`` does: the
path intake tried on each document alone), then stamped, given bookmarks (cover, a section per
kind of part with one bookmark per document, attestation) and saved once, with every stream
written as stored. Only pages are copied: a part's JavaScript, embedded files, outline and
form catalog stay behind. (pypdf's ``merge_page`` of a reportlab overlay would parse and
re-encode every page's content; merging with pypdf's writer took twice qpdf's time.)

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

import pikepdf
from pikepdf import Name, OutlineItem

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
from worker.packet.prepare import add_pages, trial
from worker.packet.stamps import save_stamped

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


#: (index in the given parts, the part, the part opened by pikepdf, its page count)
_Readable = tuple[int, PacketPart, pikepdf.Pdf, int]


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
    try:
        for index, part in enumerate(parts):
            try:
                source = pikepdf.open(io.BytesIO(part.data))
            except Exception as exc:
                excluded.append(
                    excluded_entry(
                        part, f"part {index} ({part.kind}) " + _reason("unreadable", exc)
                    )
                )
                continue
            try:
                count = len(source.pages)
            except Exception as exc:
                source.close()
                reason = f"part {index} ({part.kind}) " + _reason("unreadable", exc)
                excluded.append(excluded_entry(part, reason))
                continue
            if count == 0:
                source.close()
                excluded.append(excluded_entry(part, f"part {index} ({part.kind}) has no pages"))
                continue
            readers.append((index, part, source, count))
        return _assemble_guarded(cover, readers, attestation, excluded)
    finally:
        for readable in readers:
            readable[2].close()


def _assemble_guarded(
    cover: CoverInfo,
    readers: list[_Readable],
    attestation: Sequence[ProviderAttestation],
    excluded: list[dict[str, Any]],
) -> BuiltPacket:
    """Assemble; leave out each part that fails (by itself, or alone on the trial path)."""
    checked = False
    for _ in range(len(readers) + 2):
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


def _pages(pdf: bytes) -> int:
    with pikepdf.open(io.BytesIO(pdf)) as doc:
        return len(doc.pages)


def _assemble(
    cover: CoverInfo,
    readers: list[_Readable],
    attestation: Sequence[ProviderAttestation],
    excluded: list[dict[str, Any]],
) -> BuiltPacket:
    """One assembly of the readable parts; raises _PartFailed naming a part that fails."""
    attestation_pdf = render_attestation(cover, attestation)
    attestation_pages = _pages(attestation_pdf)
    body_pages = sum(count for _, _, _, count in readers)

    # The cover lists page ranges that depend on its own length: render until it is stable.
    cover_pages = 1
    for _ in range(5):
        entries, next_page = [], cover_pages + 1
        for _, part, _, count in readers:
            entries.append(
                Entry(
                    part.title,
                    part.kind,
                    next_page,
                    next_page + count - 1,
                    part.flags,
                    part.unreviewed,
                )
            )
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

    with (
        pikepdf.new() as packet,
        pikepdf.open(io.BytesIO(cover_pdf)) as cover_doc,
        pikepdf.open(io.BytesIO(attestation_pdf)) as attestation_doc,
    ):
        add_pages(packet, cover_doc)
        manifest_parts: list[dict[str, Any]] = []
        for (index, part, source, count), entry in zip(readers, entries, strict=False):
            try:
                add_pages(packet, source)
            except Exception as exc:
                reason = f"part {index} ({part.kind}) " + _reason("append", exc)
                raise _PartFailed(index, reason) from exc
            if len(packet.Root.Pages.Kids) != entry.last:  # packet.pages would be cached
                reason = f"part {index} ({part.kind}) appended {count} pages unevenly"
                raise _PartFailed(index, reason)
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
                    "flags": list(part.flags),
                    "unreviewed": part.unreviewed,
                }
            )
        add_pages(packet, attestation_doc)
        if len(packet.pages) != total:  # the first read of the page tree: a real count
            raise PacketError(f"assembled {len(packet.pages)} pages, expected {total}")
        _outline(packet, entries)
        packet.docinfo[Name.Title] = f"Records packet {cover.case_id}"
        packet.docinfo[Name.Producer] = "goodfaith"
        pdf = save_stamped(packet, cover.case_id)
    digest = hashlib.sha256(pdf).hexdigest()
    attestation_first = entries[-1].first
    manifest: dict[str, Any] = {
        "case_id": cover.case_id,
        "notification_id": cover.notification_id,
        "supplemental": cover.supplemental,
        "sequence": cover.sequence,
        "follows": (
            {"sequence": cover.sequence - 1, "packet_sha256": cover.follows_sha256}
            if cover.follows_sha256
            else None
        ),
        "generated_at": cover.generated_at.isoformat(),
        "pages": total,
        "packet_sha256": digest,
        "cover_pages": {"first_page": 1, "last_page": cover_pages},
        "parts": manifest_parts,
        "excluded": excluded,
        "attestation_pages": {"first_page": attestation_first, "last_page": total},
    }
    return BuiltPacket(pdf=pdf, pages=total, sha256=digest, manifest=manifest, excluded=excluded)


#: Outline sections, by part kind, in the packet's order
_SECTIONS = {
    "eoc": "Evidence of coverage",
    "authorization": "Carrier's records",
    "records": "Providers' records",
}


def _outline(packet: pikepdf.Pdf, entries: Sequence[Entry]) -> None:
    """Bookmarks: the cover, one section per kind of part (evidence of coverage, the
    carrier's records, the providers' records) with one bookmark per document under it, and
    the attestation. Page numbers are 0-based here."""
    with packet.open_outline() as outline:
        outline.root.append(OutlineItem("Cover and index", 0))
        sections: dict[str, OutlineItem] = {}
        for entry in entries[:-1]:
            section = sections.get(entry.kind)
            if section is None:
                section = OutlineItem(_SECTIONS.get(entry.kind, entry.kind), entry.first - 1)
                sections[entry.kind] = section
                outline.root.append(section)
            section.children.append(OutlineItem(entry.title, entry.first - 1))
        last = entries[-1]
        outline.root.append(OutlineItem("Good-faith attestation", last.first - 1))
