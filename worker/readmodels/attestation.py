"""The good-faith attestation of one case as a standalone compliance export: a PDF (the same
page the packet carries, stamped ``<case_id> · page N of M``) or JSON with the same content.

Instants in the JSON are ISO 8601 in the jurisdiction's zone, with their offset.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import selectinload

from storage.db import transaction
from storage.models import Case, RecordRequest
from worker.packet.model import CoverInfo, ProviderAttestation
from worker.packet.pages import LEGAL_SENTENCE, render_attestation
from worker.packet.stamps import stamped
from worker.services.attestation import attestation_cover, provider_attestations
from worker.wiring import Container

__all__ = ["CaseAttestation", "attestation_json", "attestation_pdf", "case_attestation"]


@dataclass(frozen=True)
class CaseAttestation:
    cover: CoverInfo
    providers: list[ProviderAttestation]


def case_attestation(c: Container, case_id: str) -> CaseAttestation | None:
    """The attestation of ``case_id`` as of now, or None for an unknown case."""
    with transaction(c.sessions) as s:
        case = s.scalar(
            select(Case)
            .where(Case.id == case_id)
            .options(selectinload(Case.requests).selectinload(RecordRequest.attempts))
        )
        if case is None:
            return None
        cover = attestation_cover(case, c.clock.now(), c.agency_name, c.carrier_name, c.responsible)
        return CaseAttestation(cover, provider_attestations(s, case))


def attestation_pdf(a: CaseAttestation) -> bytes:
    """The attestation as a PDF of its own, every page stamped with the case id."""
    return stamped(io.BytesIO(render_attestation(a.cover, a.providers)), a.cover.case_id)


def _local(t: datetime | None, tz: tzinfo) -> str | None:
    return t.astimezone(tz).isoformat() if t else None


def attestation_json(a: CaseAttestation) -> dict[str, Any]:
    """The attestation's content as a JSON-able document."""
    cover, tz = a.cover, a.cover.tz
    return {
        "case_id": cover.case_id,
        "notification_id": cover.notification_id,
        "jurisdiction": cover.jurisdiction,
        "review_type": cover.review_type,
        "citation": cover.citation,
        "statement": LEGAL_SENTENCE,
        "carrier": cover.carrier_name,
        "responsible": cover.responsible,
        "generated_at": _local(cover.generated_at, tz),
        "cutoff": _local(cover.cutoff, tz),
        "due_at": _local(cover.due_at, tz),
        "providers": [
            {
                "provider_id": p.provider_id,
                "provider_name": p.provider_name,
                "designee": p.designee,
                "status": p.status,
                "business_windows": p.business_windows,
                "required_attempts": p.required,
                "attempts_before_cutoff": p.attempts_before_cutoff,
                "standard_met": p.standard_met,
                "attempts": [
                    {
                        "number": t.number,
                        "sent_at": _local(t.at, tz),
                        "channel": t.channel,
                        "destination": t.destination,
                        "to": "designee" if t.designee else "provider",
                        "designee": t.designee,
                        "reason": t.reason,
                        "outcome": t.outcome,
                        "failure_reason": t.failure_reason,
                        "transmissions": t.transmissions,
                    }
                    for t in p.attempts
                ],
                "replies": [
                    {
                        "received_at": _local(r.received_at, tz),
                        "kind": r.kind,
                        "status": r.status,
                        "pages": r.pages,
                        "reason": r.reason,
                    }
                    for r in p.replies
                ],
            }
            for p in a.providers
        ],
    }
