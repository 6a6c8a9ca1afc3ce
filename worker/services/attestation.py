"""The good-faith attestation of one case, read from the database: what the packet's
attestation page, the standalone attestation PDF and its JSON export all print.

Per request: every attempt (sent time, channel, full destination, outcome, failure reason,
transmissions, the designee it went to), every reply matched to it (accepted or quarantined,
with the reason; records or a "no records" statement), how many business windows its window
allowed and whether the attempt standard was met before the outreach cutoff.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from config.jurisdictions import get_jurisdiction
from storage.models import Case, Document, RecordRequest
from worker.domain.lifecycle import RequestStatus
from worker.domain.outreach import (
    DEFAULT_SETTINGS,
    attempts_before,
    business_windows,
    standard_met,
)
from worker.packet.model import AttemptLine, CoverInfo, ProviderAttestation, ReplyLine
from worker.services.mapping import designee_name, facts, provider_hours

__all__ = ["attestation_cover", "provider_attestations", "request_standard", "request_windows"]

_ANSWERED = (RequestStatus.FULFILLED, RequestStatus.NO_RECORDS)


def request_windows(r: RecordRequest) -> int:
    """The business windows the request's window allowed (counted at intake; counted now for
    requests taken in before that was recorded)."""
    if r.business_windows is not None:
        return r.business_windows
    case = r.case
    return business_windows(
        opened_at=case.opened_at,
        cutoff=case.assemble_at,
        jurisdiction=get_jurisdiction(case.jurisdiction),
        hours=provider_hours(r),
    )


def request_standard(r: RecordRequest) -> tuple[int, bool]:
    """(documented attempts made before the cutoff, whether the standard was met)."""
    made = attempts_before(facts(r), r.case.assemble_at)
    return made, standard_met(answered=r.status in _ANSWERED, made=made)


def provider_attestations(s: Session, case: Case) -> list[ProviderAttestation]:
    """Every request of ``case`` as the attestation prints it."""
    replies: dict[str, list[ReplyLine]] = {}
    for d in s.scalars(
        select(Document)
        .where(Document.case_id == case.id, Document.request_id.is_not(None))
        .order_by(Document.received_at)
    ):
        replies.setdefault(d.request_id or "", []).append(
            ReplyLine(d.received_at, d.kind, d.status, d.pages, d.reason)
        )
    out = []
    for r in case.requests:
        designee = designee_name(r)
        made, met = request_standard(r)
        out.append(
            ProviderAttestation(
                provider_name=r.provider_name,
                provider_id=r.provider_id,
                status=r.status,
                attempts=[
                    AttemptLine(
                        number=a.number,
                        at=a.sent_at or a.planned_at,
                        channel=a.channel,
                        destination=a.destination,
                        outcome=a.outcome,
                        reason=a.reason,
                        failure_reason=a.failure_reason,
                        transmissions=a.transmissions,
                        designee=(designee or "designee") if a.designee else None,
                    )
                    for a in r.attempts
                ],
                designee=designee,
                replies=replies.get(r.id, []),
                business_windows=request_windows(r),
                required=DEFAULT_SETTINGS.min_attempts,
                attempts_before_cutoff=made,
                standard_met=met,
            )
        )
    return out


def attestation_cover(
    case: Case,
    now: datetime,
    agency_name: Callable[[str], str],
    carrier_name: str,
    responsible: str,
    *,
    supplemental: bool = False,
    sequence: int = 1,
    follows_sha256: str | None = None,
) -> CoverInfo:
    """What the cover and the attestation print about ``case``; ``follows_sha256``: the
    SHA-256 of the packet a supplemental one follows."""
    jurisdiction = get_jurisdiction(case.jurisdiction)
    return CoverInfo(
        case_id=case.id,
        notification_id=case.notification_id,
        agency_name=agency_name(case.agency_id),
        jurisdiction=case.jurisdiction,
        review_type=case.review_type,
        insured_name=case.insured_name,
        member_id=case.insured_member_id,
        due_at=case.due_at,
        generated_at=now,
        carrier_name=carrier_name,
        citation=jurisdiction.citation,
        tz=jurisdiction.tz,
        supplemental=supplemental,
        sequence=sequence,
        responsible=responsible,
        cutoff=case.assemble_at,
        follows_sha256=follows_sha256,
    )
