"""Campaigns: bulk record retrieval loaded at once, chased in the bulk lane, cancelled at once.

A campaign row becomes a one-request case with ``cases.campaign_id`` set (why a case and not
a model of its own: docs/architecture.md, "Campaigns"). Loading validates every row first
(``worker/campaign.py``) and then writes the campaign, its cases and their requests in one
transaction with multi-row inserts: a bad row stores nothing. The cases are opened by the
scheduler's ``opening`` timer (``cases.open_at`` = the load time), 500 a tick and after any
review due sooner, so a load of 100,000 rows never floods the queues; with nothing to fetch
they open in the tick itself (``opening.open_in_bulk``); their messages travel in the
``bulk`` lane (``services/lanes.py``). A campaign's case has no agency and no packet:
at its due date, or when its request closes, it is ``completed``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import structlog
from sqlalchemy import Engine, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from config.jurisdictions import UnknownJurisdiction, get_jurisdiction
from connectors.base import RecordsRequester
from storage.db import analyze_after_load, transaction
from storage.models import Attempt, Campaign, Case, RecordRequest, RequestNumber, new_id
from worker.campaign import CampaignDoc, CampaignError, CampaignHead, CampaignRow, due_instant
from worker.commands import CancelAttempt, Command
from worker.domain.clock import Clock
from worker.domain.faxnumbers import request_fax_numbers
from worker.domain.lifecycle import LEASE, CaseStatus, RequestStatus
from worker.domain.outreach import DEFAULT_SETTINGS, ChannelRecord, OutreachSettings
from worker.domain.types import ChannelKind
from worker.services.audit import audit
from worker.services.cancel import _withdrawable
from worker.services.closing import stop_request
from worker.services.mapping import new_reference

log = structlog.get_logger("goodfaith.services")

#: Rows per multi-row INSERT statement while loading.
CHUNK = 1_000

Progress = Callable[[str, int, int], None]  # (phase, done, total)


@dataclass(frozen=True)
class LoadResult:
    campaign_id: str
    requests: int
    #: False: this load had been made before (same key, or same content without a key) and
    #: ``campaign_id`` is the campaign it made; nothing was stored this time
    created: bool = True
    status: str = "open"


#: The longest Idempotency-Key (``--key``) a load takes.
MAX_KEY = 64


def content_sha256(doc: CampaignDoc) -> str:
    """SHA-256 of the campaign as validated: its head (name, jurisdiction, policy) and every
    row's values in order, as canonical JSON. The same campaign as CSV or as JSON rows, with
    other spacing or quoting, has the same digest."""
    digest = hashlib.sha256()
    digest.update(_canonical(doc.head.model_dump(mode="json")))
    for row in doc.rows:
        digest.update(b"\n")
        digest.update(_canonical(dataclasses.asdict(row)))
    return digest.hexdigest()


def _canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str).encode()


def load_key_of(key: str | None, digest: str) -> str:
    """The campaign's ``load_key``: the caller's key, else the content's digest."""
    if key is None:
        return f"sha256:{digest}"
    if not 1 <= len(key) <= MAX_KEY or not key.isascii() or not key.isprintable():
        raise CampaignError(
            [(0, "idempotency_key", f"must be 1 to {MAX_KEY} printable ASCII characters")]
        )
    return f"key:{key}"


def _loaded(s: Session, load_key: str, digest: str) -> LoadResult | None:
    """The campaign an earlier load with ``load_key`` made, or None; CampaignError when the
    caller's key was used for other content (a new campaign needs a new key)."""
    found = s.scalars(select(Campaign).where(Campaign.load_key == load_key)).one_or_none()
    if found is None:
        return None
    if found.content_sha256 != digest:
        raise CampaignError(
            [
                (
                    0,
                    "idempotency_key",
                    f"already used for campaign {found.id} with other content: "
                    "give a new key to load a new campaign",
                )
            ]
        )
    return LoadResult(found.id, found.requests, created=False, status=found.status)


def check_head(head: CampaignHead) -> None:
    """Refuse an unknown jurisdiction (row 0), before any row is read."""
    try:
        get_jurisdiction(head.jurisdiction)
    except UnknownJurisdiction as exc:
        raise CampaignError([(0, "jurisdiction", str(exc).strip("'\""))]) from None


def load_campaign(
    doc: CampaignDoc,
    created_by: str,
    progress: Progress | None = None,
    key: str | None = None,
    *,
    sessions: sessionmaker[Session],
    engine: Engine,
    clock: Clock,
) -> LoadResult:
    """Write the campaign and one open case (one request) per row, in one transaction.
    ``doc`` is already validated; ``progress(phase, done, total)`` follows the inserts. A
    large load then refreshes the planner's statistics of the tables it filled
    (``storage.db.analyze_after_load``): the scheduler opens its cases at once.

    Idempotent: a load is known by ``key`` (the caller's Idempotency-Key) or, without one, by
    the content's SHA-256. The same load again returns the campaign the first one made
    (``created=False``, nothing stored), also when two run at once (the unique ``load_key``
    decides); a key given again with other content is refused (CampaignError)."""
    check_head(doc.head)
    jurisdiction = get_jurisdiction(doc.head.jurisdiction)
    digest = content_sha256(doc)
    load_key = load_key_of(key, digest)
    with transaction(sessions) as s:
        earlier = _loaded(s, load_key, digest)
    if earlier is not None:
        log.info("campaign.load_repeated", campaign_id=earlier.campaign_id)
        return earlier
    try:
        result = _store(
            doc, created_by, progress, load_key, digest, jurisdiction.tz, sessions, clock
        )
    except IntegrityError:  # the same load committed meanwhile (load_key is unique)
        with transaction(sessions) as s:
            earlier = _loaded(s, load_key, digest)
        if earlier is None:
            raise
        log.info("campaign.load_repeated", campaign_id=earlier.campaign_id)
        return earlier
    analyze_after_load(engine, result.requests, LOADED_TABLES)
    return result


#: the tables a load fills, row for row with its requests, and the one their first attempts
#: fill next: analyzed with a handful of rows, ``attempts.request_id`` is known to be nearly
#: unique, so the batches' reads of their requests' attempts probe its index as it grows
#: (never analyzed, the planner guessed 200 distinct values and scanned the whole table: 56 ms
#: against 0.9 ms a batch at 100,000 attempts)
LOADED_TABLES = (
    Case.__tablename__,
    RecordRequest.__tablename__,
    RequestNumber.__tablename__,
    Attempt.__tablename__,
)


def _store(
    doc: CampaignDoc,
    created_by: str,
    progress: Progress | None,
    load_key: str,
    digest: str,
    tz: Any,
    sessions: sessionmaker[Session],
    clock: Clock,
) -> LoadResult:
    now = clock.now()
    campaign_id = new_id()
    total = len(doc.rows)
    policy = doc.head.policy
    with transaction(sessions) as s:
        s.add(
            Campaign(
                id=campaign_id,
                name=doc.head.name,
                jurisdiction=doc.head.jurisdiction,
                attempts=policy.attempts,
                spacing_fraction=policy.spacing_fraction,
                first_channel=policy.first_channel,
                status="open",
                requests=total,
                created_at=now,
                created_by=created_by,
                load_key=load_key,
                content_sha256=digest,
            )
        )
        s.flush()  # a concurrent identical load fails here, before any row is written
        references: set[str] = set()
        for start in range(0, total, CHUNK):
            chunk = doc.rows[start : start + CHUNK]
            cases, requests, numbers = [], [], []
            for row in chunk:
                case, request = _rows_for(
                    campaign_id, doc.head.jurisdiction, row, now, tz, references
                )
                cases.append(case)
                requests.append(request)
                numbers += [
                    {"number": n, "request_id": request["id"]}
                    for n in sorted(request_fax_numbers(request["channels"]))
                ]
            s.execute(insert(Case), cases)
            s.execute(insert(RecordRequest), requests)
            if numbers:
                s.execute(insert(RequestNumber), numbers)
            if progress is not None:
                progress("stored", start + len(chunk), total)
        audit(
            s,
            now,
            "campaign.loaded",
            None,
            campaign_id=campaign_id,
            requests=total,
            attempts=policy.attempts,
            created_by=created_by,
        )
    log.info("campaign.loaded", campaign_id=campaign_id, requests=total)
    return LoadResult(campaign_id, total)


def _rows_for(
    campaign_id: str,
    jurisdiction: str,
    row: CampaignRow,
    now: datetime,
    tz: Any,
    references: set[str],
) -> tuple[dict[str, Any], dict[str, Any]]:
    case_id = new_id()
    due = max(due_instant(row.due_date, tz), now)
    dispute = {
        "service": row.request,
        "codes": [],
        "dates_of_service": [d.isoformat() for d in row.dates_of_service],
    }
    case = {
        "id": case_id,
        "notification_id": f"campaign:{campaign_id}:{row.row}",
        "jurisdiction": jurisdiction,
        "review_type": "standard",
        "agency_id": "",  # a campaign delivers no packet to an agency
        "received_at": now,
        "opened_at": now,
        "due_at": due,
        "assemble_at": due,
        "deliver_by": due,
        "status": CaseStatus.OPEN.value,
        "insured_member_id": row.member_id,
        "insured_name": row.member_name,
        "insured_birth_date": row.birth_date.isoformat(),
        "plan_id": "",
        "dispute": dispute,
        "notification": {"campaign_id": campaign_id, "row": row.row},
        "next_action_at": due,  # completed then (``complete_case``) if still open
        "created_at": now,
        "open_at": now,  # opened by the scheduler's ``opening`` timer, a batch a tick
        "campaign_id": campaign_id,
    }
    reference = new_reference()
    while reference in references:
        reference = new_reference()
    references.add(reference)
    channels = [
        {"kind": kind, "destination": dest, "designee": False, "owner_id": row.npi}
        for kind, dest in row.channels
    ]
    request = {
        "id": new_id(),
        "case_id": case_id,
        "position": 0,
        "provider_id": row.provider_id,
        "provider_name": row.provider_name,
        "npi": row.npi,
        "role": "treating",
        "network": "in",
        "channels": channels,
        "business_hours": list(row.business_hours) if row.business_hours else None,
        "reference": reference,
        "status": RequestStatus.OPEN.value,
    }
    return case, request


def cancel_campaign(
    campaign_id: str,
    reason: str,
    by: str,
    *,
    sessions: sessionmaker[Session],
    clock: Clock,
    requesters: Mapping[ChannelKind, RecordsRequester],
) -> tuple[int | None, list[Command]]:
    """Cancel every open request of the campaign and stop its redials and polls (audited per
    case and once for the campaign). Returns how many cases were cancelled (None: no such
    campaign) and the far-side withdrawals to run (what a requester can withdraw there: a
    CDex Task, a vendor's order; as ``services/cancel.py`` does for one case). Idempotent."""
    now = clock.now()
    follow: list[Command] = []
    with transaction(sessions) as s:
        campaign = s.get(Campaign, campaign_id, with_for_update=True)
        if campaign is None:
            return None, []
        cases = list(
            s.scalars(
                select(Case)
                .where(Case.campaign_id == campaign_id, Case.status == CaseStatus.OPEN.value)
                .with_for_update()
            )
        )
        for case in cases:
            case.status = CaseStatus.CANCELLED.value
            case.next_action_at = case.open_at = None
            for r in case.requests:
                if r.status != RequestStatus.OPEN:
                    continue
                stop_request(r, RequestStatus.CANCELLED, now)
                for a in r.attempts:
                    if a.served_by in (None, a.id) and _withdrawable(a, requesters):
                        a.cancel_at = now + LEASE
                        follow.append(CancelAttempt(a.id))
            audit(s, now, "case.cancelled", case.id, reason=reason, campaign_id=campaign_id)
        if campaign.status != "cancelled":
            campaign.status = "cancelled"
            campaign.cancelled_at = now
        audit(
            s,
            now,
            "campaign.cancelled",
            None,
            campaign_id=campaign_id,
            cases=len(cases),
            reason=reason,
            by=by,
        )
    log.info("campaign.cancelled", campaign_id=campaign_id, cases=len(cases))
    return len(cases), follow


def complete_case(s: Session, case: Case, now: datetime) -> None:
    """A campaign's case at its due date or with its request closed: what is still open is
    unresponsive, and the case is ``completed`` (no packet: the records stay with it)."""
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
    case.status = CaseStatus.COMPLETED.value
    case.next_action_at = None
    audit(s, now, "case.completed", case.id, campaign_id=case.campaign_id)


def outreach_settings(s: Session, case: Case) -> tuple[OutreachSettings, bool]:
    """The outreach policy of ``case``'s requests, and whether the first channel follows the
    provider's profile: the campaign's own policy, or the default for a review."""
    facts = campaign_facts(s, case.campaign_id) if case.campaign_id is not None else None
    if facts is None:
        return DEFAULT_SETTINGS, False
    return facts.settings, facts.by_profile


@dataclass(frozen=True)
class CampaignFacts:
    """What a campaign's outreach reads on every attempt: its name (printed on the letter),
    its policy and whether the first channel follows the provider's profile."""

    name: str
    settings: OutreachSettings
    by_profile: bool


def campaign_facts(s: Session, campaign_id: str) -> CampaignFacts | None:
    """The campaign's :class:`CampaignFacts` (None: no such campaign). They never change once
    the campaign is loaded, so each worker process reads them once, not on every attempt it
    plans and sends."""
    known = _FACTS.get(campaign_id)
    if known is not None:
        return known
    campaign = s.get(Campaign, campaign_id)
    if campaign is None:
        return None
    facts = CampaignFacts(
        campaign.name,
        OutreachSettings(
            min_attempts=campaign.attempts, spacing_fraction=campaign.spacing_fraction
        ),
        campaign.first_channel == "profile",
    )
    if len(_FACTS) >= _FACTS_KEPT:
        _FACTS.clear()
    _FACTS[campaign_id] = facts
    return facts


#: campaign id → its facts, in this process (a few hundred bytes each; cleared when full)
_FACTS: dict[str, CampaignFacts] = {}
_FACTS_KEPT = 10_000


def channel_profile(s: Session, provider_id: str) -> dict[ChannelKind, ChannelRecord]:
    """The provider's completed attempts per channel kind (sending attempts only, one
    aggregate query): what ``first_channel = profile`` chooses by."""
    from sqlalchemy import case as when
    from sqlalchemy import func

    rows = s.execute(
        select(
            Attempt.channel,
            func.count(),
            func.sum(when((Attempt.outcome == "delivered", 1), else_=0)),
        )
        .join(RecordRequest, RecordRequest.id == Attempt.request_id)
        .where(
            RecordRequest.provider_id == provider_id,
            Attempt.outcome.in_(["delivered", "failed"]),
            (Attempt.served_by.is_(None)) | (Attempt.served_by == Attempt.id),
        )
        .group_by(Attempt.channel)
    )
    out: dict[ChannelKind, ChannelRecord] = {}
    for channel, completed, delivered in rows:
        try:
            out[ChannelKind(channel)] = ChannelRecord(int(completed), int(delivered or 0))
        except ValueError:
            continue  # a channel kind this build does not know
    return out
