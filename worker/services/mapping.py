"""ORM ↔ domain: the one place that turns rows into domain values and notifications into rows.

Use cases call these instead of reading JSON columns or status strings themselves.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from datetime import datetime, time

from storage.models import Attempt, Case, RecordRequest, RequestNumber
from worker.domain.deadlines import Timeline
from worker.domain.faxnumbers import request_fax_numbers
from worker.domain.lifecycle import CaseStatus, RequestStatus
from worker.domain.types import AttemptFact, AttemptOutcome, Channel, ChannelKind
from worker.domain.watchdog import flag
from worker.notification import Designee, Notification

REF_ALPHABET = "23456789ABCDEFGHJKLMNPQRSTUVWXYZ"  # no 0/O, 1/I: read off faxes by people


def new_reference() -> str:
    """A request reference (``GF-`` + 8 characters) printed on letters and matched in replies."""
    return "GF-" + "".join(secrets.choice(REF_ALPHABET) for _ in range(8))


def flag_case(case: Case, reason: str) -> bool:
    """Add ``reason`` to the case's reasons for attention (after those already there, each
    once; ``worker.domain.watchdog.flag``); False when it was there already (or the field is
    full: the audit trail keeps the rest)."""
    attention = flag(case.attention, reason)
    if attention is None:
        return False
    case.attention = attention
    return True


def case_status(case: Case) -> CaseStatus:
    return CaseStatus(case.status)


def request_status(r: RecordRequest) -> RequestStatus:
    return RequestStatus(r.status)


def attempt_outcome(a: Attempt) -> AttemptOutcome:
    return AttemptOutcome(a.outcome)


def channels(r: RecordRequest) -> list[Channel]:
    """A request's channels, the provider's first and then its designee's, in order."""
    return [
        Channel(
            kind=ChannelKind(ch["kind"]),
            destination=ch["destination"],
            designee=bool(ch.get("designee")),
            owner_id=ch.get("owner_id"),
        )
        for ch in r.channels
    ]


def provider_hours(r: RecordRequest) -> tuple[time, time] | None:
    """The provider's own local business hours, or None (the jurisdiction's apply)."""
    if not r.business_hours:
        return None
    opens, closes = (time.fromisoformat(str(h)) for h in r.business_hours)
    return opens, closes


def designee_name(r: RecordRequest) -> str | None:
    """Who the provider's designee is (``"name (vendor id)"``), or None without one."""
    for ch in r.channels:
        if ch.get("designee") and ch.get("designee_name"):
            return f"{ch['designee_name']} ({ch.get('designee_id', '?')})"
    return None


def facts(r: RecordRequest) -> list[AttemptFact]:
    """What the outreach policy needs to know of the attempts already made."""
    known = channels(r)
    out = []
    for a in r.attempts:
        channel = next(
            (ch for ch in known if ch.kind == a.channel and ch.destination == a.destination),
            Channel(ChannelKind(a.channel), a.destination, a.designee),
        )
        out.append(
            AttemptFact(
                number=a.number,
                planned_at=a.planned_at,
                sent_at=a.sent_at,
                channel=channel,
                outcome=attempt_outcome(a),
            )
        )
    return out


def requested_text(case: Case) -> str:
    """What an attempt asks for, in words (printed on the letter and the attestation)."""
    d = case.dispute
    dates = ", ".join(d.get("dates_of_service") or []) or "all relevant dates"
    codes = ", ".join(d.get("codes") or [])
    what = f"{d.get('service', 'the disputed service')}" + (f" ({codes})" if codes else "")
    return f"Medical records and treatment notes for {what}, dates of service {dates}"


def new_case(
    n: Notification,
    tl: Timeline,
    now: datetime,
    directory: Callable[[str | None], Designee | None] | None = None,
) -> Case:
    """The case row, with one open request per provider, for a validated notification.

    ``directory`` (an NPI → designee look-up, config/providers.py) supplies the designee of a
    provider the notification names none for."""
    case = Case(
        notification_id=n.notification_id,
        jurisdiction=n.jurisdiction,
        review_type=n.review_type.value,
        agency_id=n.agency_id,
        received_at=tl.received_at,
        opened_at=max(now, tl.received_at),
        due_at=tl.due_at,
        assemble_at=tl.assemble_at,
        deliver_by=tl.deliver_by,
        status=CaseStatus.OPEN.value,
        insured_member_id=n.insured.member_id,
        insured_name=n.insured.name,
        insured_birth_date=n.insured.birth_date.isoformat(),
        plan_id=n.coverage.plan_id,
        eoc_uri=n.coverage.eoc_uri,
        authorization_uri=n.authorization_uri,
        dispute=json.loads(n.dispute.model_dump_json(exclude_none=True)),
        notification=json.loads(n.model_dump_json()),
        next_action_at=tl.assemble_at,
        created_at=now,
    )
    for pos, p in enumerate(n.providers):
        chans = [
            {"kind": ch.kind, "destination": ch.destination, "designee": False, "owner_id": p.npi}
            for ch in p.channels
        ]
        designee = p.designee or (directory(p.npi) if directory else None)
        if designee:
            chans += [
                {
                    "kind": ch.kind,
                    "destination": ch.destination,
                    "designee": True,
                    "owner_id": p.npi,
                    "designee_id": designee.vendor_id,
                    "designee_name": designee.name,
                }
                for ch in designee.channels
            ]
        case.requests.append(
            RecordRequest(
                position=pos,
                provider_id=p.provider_id,
                provider_name=p.name,
                npi=p.npi,
                role=p.role,
                network=p.network,
                channels=chans,
                numbers=[RequestNumber(number=n) for n in sorted(request_fax_numbers(chans))],
                business_hours=list(p.business_hours) if p.business_hours else None,
                reference=new_reference(),
                status=RequestStatus.OPEN.value,
                next_action_at=None,
            )
        )
    return case
