"""What a packet is built from, and what building it returns."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import Any

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
    document_id: str | None = None  # the Document row, for the manifest and the audit trail


@dataclass(frozen=True)
class BuiltPacket:
    pdf: bytes
    pages: int
    sha256: str  # of ``pdf``
    manifest: dict[str, Any]
    #: parts left out (the manifest's ``excluded``): kind, title, provider_id, document_id,
    #: source_sha256 and the reason (which step failed, never document content)
    excluded: Sequence[dict[str, Any]] = ()
