"""Packet: at the assembly cutoff, or once every request is closed, close what is still open
as unresponsive and build the packet (or a supplemental one of late records), then queue its
delivery. PDF work runs between two short transactions.

No single document stops a packet: one that cannot be assembled is left out by
:func:`worker.packet.build_packet` and named in the packet; here it is quarantined with the
reason (so no later packet tries it again), recorded as ``document.excluded`` in the audit
trail, and the case is flagged for ops (``Case.attention``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import structlog
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from config.jurisdictions import get_jurisdiction
from storage.db import transaction
from storage.models import Case, Delivery, Document, Packet
from storage.objects import ObjectStore, UriReader, content_key, sha256_hex
from worker.commands import AssemblePacket, Command, DeliverPacket
from worker.domain.clock import Clock
from worker.domain.lifecycle import (
    EOC_LOOK_AGAIN,
    LEASE,
    REASON_CHARS,
    CaseStatus,
    DeliveryStatus,
    DocumentKind,
    DocumentStatus,
    PacketKind,
    RequestStatus,
    packet_to_assemble,
)
from worker.domain.watchdog import unflag
from worker.localtime import format_local
from worker.packet import CoverInfo, PacketPart, ProviderAttestation, build_packet
from worker.services.attestation import attestation_cover, provider_attestations
from worker.services.audit import audit
from worker.services.campaigns import complete_case
from worker.services.closing import stop_request
from worker.services.mapping import case_status, flag_case
from worker.services.opening import EOC_REASON, fetch_eoc
from worker.services.quality import DUPLICATE, PENDING, flags_of

if TYPE_CHECKING:
    from worker.wiring import EocLibrary

log = structlog.get_logger("goodfaith.services")


@dataclass(frozen=True)
class _Spec:
    """One part of the packet, named by its stored object (bytes are read after commit)."""

    kind: str
    title: str
    uri: str
    source_sha256: str  # "" when the part is ours (the EOC): hashed when read
    provider_id: str | None
    document_id: str | None = None  # the Document row (records), None for the EOC
    flags: tuple[str, ...] = ()  # QA flags (worker/services/quality.py)
    unreviewed: bool = False  # flagged, not released: sent because the deadline came first


@dataclass(frozen=True)
class _Plan:
    case_id: str
    agency_id: str
    sequence: int
    supplemental: bool
    cover: CoverInfo
    specs: list[_Spec]
    attestation: list[ProviderAttestation]
    document_ids: list[str]


def assemble_packet(
    cmd: AssemblePacket,
    *,
    sessions: sessionmaker[Session],
    clock: Clock,
    store: ObjectStore,
    reader: UriReader,
    eoc_library: EocLibrary,
    agency_name: Callable[[str], str],
    carrier_name: str,
    responsible: str,
) -> list[Command]:
    """Assemble the packet (or a supplemental one for late records) and queue its delivery.

    A case without its EOC looks for it again first (the notification's link, then the
    library). Still missing, the packet is held, the case flagged, and the look repeated every
    :data:`EOC_LOOK_AGAIN`: ops told to add the EOC to the library need do nothing more."""
    now = clock.now()
    plan = _plan(cmd.case_id, sessions, now, agency_name, carrier_name, responsible)
    if isinstance(plan, _MissingEoc):
        if not _found_eoc(plan, sessions, store, reader, eoc_library, now):
            return []
        plan = _plan(cmd.case_id, sessions, now, agency_name, carrier_name, responsible)
    if not isinstance(plan, _Plan):
        return []
    parts = []
    for spec in plan.specs:
        data = store.get(spec.uri)
        sha = spec.source_sha256 or sha256_hex(data)
        parts.append(
            PacketPart(
                spec.kind,
                spec.title,
                data,
                sha,
                spec.provider_id,
                spec.document_id,
                spec.flags,
                spec.unreviewed,
            )
        )
    built = build_packet(plan.cover, parts, plan.attestation)
    key_base = f"cases/{plan.case_id}/packets/{plan.sequence:03d}-{built.sha256}"
    uri = store.put(f"{key_base}.pdf", built.pdf, "application/pdf")
    manifest = json.dumps(built.manifest, indent=2, sort_keys=True, default=str).encode()
    manifest_uri = store.put(f"{key_base}.manifest.json", manifest, "application/json")
    packet = Packet(
        case_id=plan.case_id,
        sequence=plan.sequence,
        supplemental=plan.supplemental,
        uri=uri,
        manifest_uri=manifest_uri,
        sha256=built.sha256,
        pages=built.pages,
        created_at=now,
    )
    return _record(packet, plan, sessions, now, list(built.excluded))


@dataclass(frozen=True)
class _MissingEoc:
    """The case has no EOC of ours yet: where to look for it."""

    case_id: str
    eoc_uri: str | None
    plan_id: str


#: Case.attention while the packet waits for its EOC (begins with opening.EOC_REASON)
EOC_HELD = f"{EOC_REASON} missing: packet held"


def _found_eoc(
    missing: _MissingEoc,
    sessions: sessionmaker[Session],
    store: ObjectStore,
    reader: UriReader,
    eoc_library: EocLibrary,
    now: datetime,
) -> bool:
    """Look for the EOC again (outside any transaction); found, store our copy and clear the
    case's EOC flags; not found, hold the packet, flag the case (audited once, when the hold
    begins) and look again in :data:`EOC_LOOK_AGAIN` (the case's packet timer)."""
    eoc = fetch_eoc(reader, eoc_library, missing.eoc_uri, missing.plan_id)
    uri = None
    if eoc is not None:
        key = content_key(missing.case_id, "eoc", eoc, "pdf")
        uri = store.put(key, eoc, "application/pdf")
    with transaction(sessions) as s:
        case = s.get(Case, missing.case_id, with_for_update=True)
        if case is None or packet_to_assemble(case_status(case)) is None:
            return False  # gone, or cancelled meanwhile
        if uri is not None:
            case.eoc_object_uri = case.eoc_object_uri or uri
            case.attention = unflag(case.attention, EOC_REASON)
            audit(s, now, "case.eoc_found", case.id)
            return True
        case.next_action_at = now + EOC_LOOK_AGAIN
        if flag_case(case, EOC_HELD):
            audit(s, now, "packet.held", case.id, reason="eoc_missing")
        return False


def _plan(
    case_id: str,
    sessions: sessionmaker[Session],
    now: datetime,
    agency_name: Callable[[str], str],
    carrier_name: str,
    responsible: str,
) -> _Plan | _MissingEoc | None:
    """Decide what goes into the packet; close open requests at the first packet."""
    with transaction(sessions) as s:
        case = s.get(Case, case_id, with_for_update=True)
        if case is None:
            return None
        kind = packet_to_assemble(case_status(case))
        if kind is None:
            return None  # cancelled, or already delivering
        if case.campaign_id is not None:  # a campaign delivers no packet: the case is done
            if kind is PacketKind.INITIAL:
                complete_case(s, case, now)
            else:
                case.next_action_at = None
            return None
        supplemental = kind is PacketKind.SUPPLEMENTAL
        if case.eoc_object_uri is None:  # look for it again before holding the packet
            return _MissingEoc(case.id, case.eoc_uri, case.plan_id)
        docs = list(
            s.scalars(
                select(Document)
                .where(
                    Document.case_id == case.id,
                    Document.status == DocumentStatus.ACCEPTED,
                    Document.kind == DocumentKind.RECORDS,
                    Document.packet_id.is_(None),
                )
                .order_by(Document.received_at)
            )
        )
        # The same document received twice is stored and noted, never repeated in a packet.
        docs = [d for d in docs if DUPLICATE not in flags_of(d)]
        pending = [d for d in docs if d.review_status == PENDING]
        if pending and (supplemental or now < case.assemble_at):
            # Flagged documents wait for a person; only the deadline sends them unreviewed:
            # the first packet waits for the assembly cutoff (or the last release), a
            # supplemental one goes without them (a release assembles it again).
            if not supplemental:
                case.next_action_at = case.assemble_at
                audit(s, now, "packet.waiting_review", case.id, documents=len(pending))
                return None
            docs = [d for d in docs if d.review_status != PENDING]
        if supplemental and not docs:
            case.next_action_at = None
            return None
        if not supplemental:
            _close_unanswered(s, case, now)
            case.status = CaseStatus.ASSEMBLING.value
        case.next_action_at = now + LEASE
        sequence = len(case.packets) + 1
        return _Plan(
            case_id=case.id,
            agency_id=case.agency_id,
            sequence=sequence,
            supplemental=supplemental,
            cover=attestation_cover(
                case,
                now,
                agency_name,
                carrier_name,
                responsible,
                supplemental=supplemental,
                sequence=sequence,
                follows_sha256=case.packets[-1].sha256 if case.packets else None,
            ),
            specs=_specs(case, docs, supplemental),
            attestation=provider_attestations(s, case),
            document_ids=[d.id for d in docs],
        )


def _close_unanswered(s: Session, case: Case, now: datetime) -> None:
    for r in case.requests:
        if r.status == RequestStatus.OPEN:
            stop_request(r, RequestStatus.UNRESPONSIVE, now)
            audit(
                s,
                now,
                "request.unresponsive",
                case.id,
                request_id=r.id,
                attempts=len(r.attempts),
            )


def _specs(case: Case, docs: list[Document], supplemental: bool) -> list[_Spec]:
    """The EOC (first packet only), then each provider's records in provider order."""
    assert case.eoc_object_uri is not None
    by_request = {r.id: r for r in case.requests}
    specs = []
    if not supplemental:
        specs.append(
            _Spec(
                "eoc", f"Evidence of coverage — plan {case.plan_id}", case.eoc_object_uri, "", None
            )
        )
    tz = get_jurisdiction(case.jurisdiction).tz
    for d in sorted(docs, key=lambda d: by_request[d.request_id].position if d.request_id else 0):
        owner = by_request.get(d.request_id or "")
        # the index names each document's source and when it came (wrapped, never cut)
        via = f"{d.source} from {d.sender}" if d.sender else d.source
        specs.append(
            _Spec(
                "records",
                f"Records from {owner.provider_name if owner else 'provider'}"
                f" (received {format_local(d.received_at, tz)} by {via})",
                d.usable_uri or d.uri,
                d.sha256,
                owner.provider_id if owner else None,
                d.id,
                tuple(flags_of(d)),
                d.review_status == PENDING,
            )
        )
    return specs


def _record(
    packet: Packet,
    plan: _Plan,
    sessions: sessionmaker[Session],
    now: datetime,
    excluded: list[dict[str, Any]],
) -> list[Command]:
    """Write the packet row and its pending delivery; the first one written stands."""
    with transaction(sessions) as s:
        case = s.get(Case, plan.case_id, with_for_update=True)
        assert case is not None
        try:
            with s.begin_nested():
                s.add(packet)
        except IntegrityError:  # assembled twice concurrently: the first one stands
            return []
        left_out = {e["document_id"] for e in excluded if e["document_id"]}
        for d in s.scalars(select(Document).where(Document.id.in_(plan.document_ids))):
            if d.id not in left_out:
                d.packet_id = packet.id
        _exclude(s, case, packet, excluded, now)
        delivery = Delivery(
            packet_id=packet.id,
            case_id=plan.case_id,
            agency_id=plan.agency_id,
            idempotency_key=f"dlv-{packet.id}",
            status=DeliveryStatus.PENDING.value,
            next_action_at=now + LEASE,
        )
        s.add(delivery)
        s.flush()
        was = case.status
        if not plan.supplemental:
            case.status = CaseStatus.DELIVERING.value
        case.next_action_at = None
        audit(
            s,
            now,
            "packet.assembled",
            plan.case_id,
            packet_id=packet.id,
            sequence=plan.sequence,
            pages=packet.pages,
            sha256=packet.sha256,
            documents=len(plan.document_ids) - len(left_out),
            excluded=len(excluded),
        )
        log.info(
            "packet.assembled",
            case_id=plan.case_id,
            packet_id=packet.id,
            pages=packet.pages,
            supplemental=plan.supplemental,
            was=was,
        )
        return [DeliverPacket(delivery.id)]


def _exclude(
    s: Session, case: Case, packet: Packet, excluded: list[dict[str, Any]], now: datetime
) -> None:
    """Quarantine each document left out of ``packet``, audit it and flag the case."""
    if not excluded:
        return
    for e in excluded:
        reason = f"excluded from packet {packet.sequence}: {e['reason']}"[:REASON_CHARS]
        d = s.get(Document, e["document_id"]) if e["document_id"] else None
        if d is not None:
            d.status = DocumentStatus.QUARANTINED.value
            d.reason = reason
        audit(
            s,
            now,
            "document.excluded",
            case.id,
            packet_id=packet.id,
            document_id=e["document_id"],
            part_kind=e["kind"],
            sha256=e["source_sha256"],
            reason=e["reason"],
        )
        log.warning(
            "document.excluded",
            case_id=case.id,
            packet_id=packet.id,
            document_id=e["document_id"],
            kind=e["kind"],
            reason=e["reason"],
        )
    flag_case(
        case,
        f"{len(excluded)} document(s) left out of packet {packet.sequence}: see document.excluded",
    )
