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
    #: who answers for the attestation (a person or role, ``GOODFAITH_ATTESTATION_RESPONSIBLE``)
    responsible: str = ""
    #: the outreach cutoff (the packet's assembly cutoff), timezone-aware; None: not printed
    cutoff: datetime | None = None
    #: a supplemental packet's predecessor: the SHA-256 of packet ``sequence - 1`` (None for
    #: the first packet), printed on the cover and kept in the manifest's ``follows``
    follows_sha256: str | None = None


@dataclass(frozen=True)
class AttemptLine:
    """One documented attempt to obtain records, as printed on the attestation. ``at`` is when
    it was sent (when it was planned, if it never was); ``designee`` names the designee an
    attempt went to (None: the provider itself); ``transmissions`` counts dials/sends."""

    number: int
    at: datetime
    channel: str
    destination: str
    outcome: str
    reason: str
    failure_reason: str | None = None
    transmissions: int = 1
    designee: str | None = None


@dataclass(frozen=True)
class ReplyLine:
    """Something a provider (or its designee) sent back: records, or a "no records"
    statement; ``status`` accepted or quarantined, with the ``reason`` it was quarantined."""

    received_at: datetime
    kind: str  # "records" | "no_records"
    status: str  # "accepted" | "quarantined"
    pages: int = 0
    reason: str | None = None


@dataclass(frozen=True)
class ProviderAttestation:
    """One provider's request on the attestation. ``standard_met``: the required attempts
    were made before the cutoff, or records / a "no records" statement were obtained (None:
    not assessed). ``business_windows``: distinct business openings its window allowed."""

    provider_name: str
    provider_id: str
    status: str  # the request's status, e.g. "fulfilled", "no_records", "exhausted"
    attempts: Sequence[AttemptLine]
    designee: str | None = None
    replies: Sequence[ReplyLine] = ()
    business_windows: int | None = None
    required: int = 3
    attempts_before_cutoff: int | None = None
    standard_met: bool | None = None


@dataclass(frozen=True)
class PacketPart:
    kind: str  # "eoc" | "records" | "authorization"
    title: str
    data: bytes  # the PDF to append (DocumentCheck.data)
    source_sha256: str  # of the document as received (DocumentCheck.sha256)
    provider_id: str | None = None
    document_id: str | None = None  # the Document row, for the manifest and the audit trail
    #: QA flags (repaired, cloned, wrong_patient, ...): in the index and the manifest
    #: (worker/services/quality.py)
    flags: tuple[str, ...] = ()
    #: flagged and not released by a person: sent only because the deadline came first, and
    #: marked "unreviewed" in the index
    unreviewed: bool = False


@dataclass(frozen=True)
class BuiltPacket:
    pdf: bytes
    pages: int
    sha256: str  # of ``pdf``
    manifest: dict[str, Any]
    #: parts left out (the manifest's ``excluded``): kind, title, provider_id, document_id,
    #: source_sha256 and the reason (which step failed, never document content)
    excluded: Sequence[dict[str, Any]] = ()
