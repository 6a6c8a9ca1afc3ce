"""Request coalescing: one outreach per provider covers every open request for one member.

A request joins the open **chase** for its member at its provider when it is first planned
(``join_chase``): an external review and a campaign chart, or two reviews, then share one fax.
``record_requests.chase_id`` names the chase (the id of its first request); a request alone
keeps NULL and costs nothing more than one indexed look-up at its first planning.

Planning a chase (``plan_chase``) asks the outreach policy for its **driver**: the open request
whose case's cutoff is earliest (the earliest deadline drives the chase's timing) and that
still wants an attempt. The attempt is written on the driver (``served_by`` = its own id) and
one row per other open request documents it in that request's own log (``served_by`` = the
sending attempt; never sent itself, it follows the sending attempt's outcome through
``storage/models.py::_mirror_served_attempts``). Every case's attempt log, report, export and
attestation therefore show the attempts that served it, audited on each case.

What comes back serves all of them: a document matched to one request of a chase is attached
to each other one too (``services/inbound.py``), and closes each. When a request closes, the
chase's other open requests are woken (``wake_chase``), so the next driver takes over.
Attempts made before a request joined are not copied into its log: they were not made for it.
Two requests for one member at one provider planned for the first time at the same instant on
two workers are taken one after the other (:func:`lock_first_planning`, PostgreSQL; SQLite
has one writer): the second waits for the first to commit and joins its chase. Each used to
lock its own row and then the other's, and PostgreSQL aborted one as a deadlock; or, when
neither saw the other yet, both started a chase and the provider got two faxes.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import bindparam, exists, func, literal, select
from sqlalchemy.orm import Session

from config.jurisdictions import get_jurisdiction
from storage.models import Attempt, Case, RecordRequest, new_id
from worker.commands import Command, SendAttempt
from worker.domain.lifecycle import LEASE, CaseStatus, RequestStatus, outreach_allowed
from worker.domain.outreach import next_attempt
from worker.domain.types import AttemptOutcome, AttemptReason, PlannedAttempt, ReviewType
from worker.services.audit import audit
from worker.services.campaigns import campaign_facts, channel_profile, outreach_settings
from worker.services.mapping import (
    case_status,
    channels,
    facts,
    provider_hours,
    request_status,
    requested_text,
)


def lock_first_planning(s: Session, request_id: str) -> None:
    """Before a request's row is locked for its first planning (no chase, no attempt yet):
    wait for any other first planning for the same member at the same provider to commit
    (PostgreSQL ``pg_advisory_xact_lock``, released at commit or rollback, keyed by a hash of
    the two ids). Taken before any row lock, so two plannings never hold one row each and wait
    for the other's. One statement; a request already planned takes no lock. Nothing on
    SQLite, whose transactions run one at a time."""
    if s.get_bind().dialect.name == "postgresql":
        s.execute(_FIRST_PLANNING_LOCK, {"request_id": request_id}).all()


#: the advisory lock's key: a hash of the member's id and the provider's
_CHASE_KEY = func.hashtextextended(
    literal("goodfaith-chase|") + Case.insured_member_id + "|" + RecordRequest.provider_id, 0
)
#: a request not planned yet: in no chase, with no attempt
_UNPLANNED = (
    RecordRequest.chase_id.is_(None),
    ~exists().where(Attempt.request_id == RecordRequest.id),
)

_FIRST_PLANNING_LOCK = (  # built once: see storage/db.py ``by_id``
    select(func.pg_advisory_xact_lock(_CHASE_KEY))
    .select_from(RecordRequest)
    .join(Case, Case.id == RecordRequest.case_id)
    .where(RecordRequest.id == bindparam("request_id"), *_UNPLANNED)
)


def lock_first_plannings(s: Session, request_ids: Sequence[str]) -> None:
    """:func:`lock_first_planning` for many requests in one statement (a batch of a
    campaign's, services/bulk.py), taken in the order of their keys: two batches sharing a
    member and provider wait for each other, never one lock each for the other's."""
    if s.get_bind().dialect.name == "postgresql":
        s.execute(_FIRST_PLANNING_LOCKS, {"ids": list(request_ids)}).all()


_KEYS = (
    select(_CHASE_KEY.label("key"))
    .select_from(RecordRequest)
    .join(Case, Case.id == RecordRequest.case_id)
    .where(RecordRequest.id.in_(bindparam("ids", expanding=True)), *_UNPLANNED)
    .distinct()
    .order_by("key")
    .subquery()
)
_FIRST_PLANNING_LOCKS = select(func.pg_advisory_xact_lock(_KEYS.c.key))

#: the open cases of a member (``:member``), by ix_cases_insured_member_id
_MEMBER_OPEN_CASES = select(Case.id).where(
    Case.insured_member_id == bindparam("member"), Case.status == CaseStatus.OPEN.value
)


def join_chase(s: Session, r: RecordRequest, now: datetime) -> None:
    """Put ``r`` (not yet planned) into the open chase for its member at its provider, if any:
    an open request of another open case for the same member id and provider id."""
    member = r.case.insured_member_id
    # The member's open cases first (a handful, by ix_cases_insured_member_id), then their
    # requests at the provider by case id. One joined query let the planner walk every open
    # request of a busy provider and probe its case (~1,000 probes a request in a campaign).
    cases = [
        case_id
        for case_id in s.scalars(_MEMBER_OPEN_CASES, {"member": member})
        if case_id != r.case_id  # a case has one request per provider: never its own
    ]
    if not cases:
        return
    other = s.scalar(
        select(RecordRequest)
        .join(Case, Case.id == RecordRequest.case_id)
        .where(
            RecordRequest.case_id.in_(cases),
            RecordRequest.provider_id == r.provider_id,
            RecordRequest.status == RequestStatus.OPEN.value,
            RecordRequest.id != r.id,
        )
        .order_by(RecordRequest.chase_id.is_(None), Case.created_at, RecordRequest.id)
        .limit(1)
        .with_for_update(of=RecordRequest)
    )
    if other is None:
        return
    chase = other.chase_id or other.id
    other.chase_id = chase
    r.chase_id = chase
    audit(s, now, "request.joined_chase", r.case_id, request_id=r.id, chase_id=chase)
    if other.attempts == [] and other.next_action_at is None:
        other.next_action_at = now  # not started yet: the chase plans it too


#: of the given members (``:members``), those with more than one open case: the only ones
#: whose requests may join a chase (by ix_cases_insured_member_id)
_SHARED_MEMBERS = (
    select(Case.insured_member_id)
    .where(
        Case.insured_member_id.in_(bindparam("members", expanding=True)),
        Case.status == CaseStatus.OPEN.value,
    )
    .group_by(Case.insured_member_id)
    .having(func.count() > 1)
)


def members_alone(s: Session, requests: Sequence[RecordRequest]) -> set[str]:
    """The ids of ``requests`` not yet planned whose member has no other open case: no chase
    for :func:`join_chase` to find (one query for a batch instead of one or two each)."""
    unplanned = [r for r in requests if r.chase_id is None and not r.attempts]
    if not unplanned:
        return set()
    wanted = list({r.case.insured_member_id for r in unplanned})
    shared = set(s.scalars(_SHARED_MEMBERS, {"members": wanted}))
    return {r.id for r in unplanned if r.case.insured_member_id not in shared}


def members(s: Session, chase_id: str) -> list[RecordRequest]:
    """The chase's open requests, locked in id order (one order: no deadlock between two)."""
    return list(
        s.scalars(
            select(RecordRequest)
            .where(
                RecordRequest.chase_id == chase_id,
                RecordRequest.status == RequestStatus.OPEN.value,
            )
            .order_by(RecordRequest.id)
            .with_for_update()
        )
    )


def others(s: Session, r: RecordRequest) -> list[RecordRequest]:
    """The other requests of ``r``'s chase that what answers ``r`` also serves: not
    cancelled, and of a case still open or delivered (late records: a supplemental packet)."""
    if r.chase_id is None:
        return []
    return [
        m
        for m in s.scalars(
            select(RecordRequest)
            .join(Case, Case.id == RecordRequest.case_id)
            .where(
                RecordRequest.chase_id == r.chase_id,
                RecordRequest.id != r.id,
                RecordRequest.status != RequestStatus.CANCELLED.value,
                Case.status.not_in([CaseStatus.CANCELLED.value, CaseStatus.COMPLETED.value]),
            )
            .order_by(RecordRequest.id)
        )
    ]


def wake_chase(s: Session, r: RecordRequest, now: datetime) -> None:
    """``r`` closed: the chase's other open requests plan again now (one of them drives)."""
    for m in s.scalars(
        select(RecordRequest).where(
            RecordRequest.chase_id == r.chase_id,
            RecordRequest.id != r.id,
            RecordRequest.status == RequestStatus.OPEN.value,
        )
    ):
        if m.next_action_at is None or m.next_action_at > now:
            m.next_action_at = now


def sending(a: Attempt) -> bool:
    """Whether ``a`` is an attempt that goes out (not a row documenting a chase's attempt)."""
    return a.served_by is None or a.served_by == a.id


def plan_chase(s: Session, r: RecordRequest, now: datetime) -> list[Command]:
    """Plan the chase of ``r`` (see the module docstring); write its attempt or set the
    driver's timer."""
    assert r.chase_id is not None
    active = [
        m
        for m in members(s, r.chase_id)
        if outreach_allowed(request_status(m), case_status(m.case))
    ]
    if r not in active:
        r.next_action_at = None
    if not active:
        return []
    for m in active:
        pending = [a for a in m.attempts if a.outcome == AttemptOutcome.PENDING and sending(a)]
        if pending:  # a send message was lost or is under way: (re)send it, same key
            m.next_action_at = now + LEASE
            return [SendAttempt(pending[0].id)]
    driver, planned = None, None
    for m in sorted(active, key=lambda m: (m.case.assemble_at, m.case.opened_at, m.id)):
        planned = plan_next(s, m, now)
        if planned is not None:
            driver = m
            break
    for m in active:
        if m is not driver:
            m.next_action_at = None  # the driver's timer plans for all; closing wakes them
    if driver is None or planned is None:
        return []
    if planned.at > now:
        driver.next_action_at = planned.at
        return []
    sent = write_attempt(s, driver, planned, now, chase=True)
    for m in active:
        if m is not driver:
            write_attempt(s, m, planned, now, served_by=sent.id)
    driver.next_action_at = now + LEASE
    return [SendAttempt(sent.id)]


def plan_next(s: Session, r: RecordRequest, now: datetime) -> PlannedAttempt | None:
    """The policy's next attempt for ``r`` alone: its case's window, its own attempts, the
    campaign's policy for a campaign's request (and its provider's profile, when the campaign
    chooses the first channel by it)."""
    case = r.case
    settings, by_profile = outreach_settings(s, case)
    return next_attempt(
        opened_at=case.opened_at,
        cutoff=case.assemble_at,
        review_type=ReviewType(case.review_type),
        channels=channels(r),
        attempts=facts(r),
        now=now,
        jurisdiction=get_jurisdiction(case.jurisdiction),
        settings=settings,
        hours=provider_hours(r),
        profile=channel_profile(s, r.provider_id) if by_profile and not r.attempts else None,
    )


def write_attempt(
    s: Session,
    r: RecordRequest,
    planned: PlannedAttempt,
    now: datetime,
    *,
    chase: bool = False,
    served_by: str | None = None,
) -> Attempt:
    """Write ``r``'s next attempt (pending), audited. ``chase``: it goes out for a chase;
    ``served_by``: it documents that attempt for ``r`` and is never sent itself."""
    case = r.case
    number = len(r.attempts) + 1 if served_by else planned.number
    reason = planned.reason if number > 1 else AttemptReason.INITIAL
    attempt = Attempt(
        id=new_id(),
        case_id=case.id,
        number=number,
        reason=reason.value,
        planned_at=planned.at,
        channel=planned.channel.kind.value,
        destination=planned.channel.destination,
        designee=planned.channel.designee,
        requested=requested_text(case),
        idempotency_key=f"att-{r.id}-{number}",
        outcome=AttemptOutcome.PENDING.value,
    )
    attempt.served_by = served_by or (attempt.id if chase else None)
    r.attempts.append(attempt)
    if chase or served_by:  # a chase's rows name its sending attempt: that one goes in first
        s.flush()
    detail = {"served_by": served_by} if served_by else {}
    audit(
        s,
        now,
        "attempt.planned",
        case.id,
        request_id=r.id,
        attempt_id=attempt.id,
        number=number,
        channel=attempt.channel,
        reason=attempt.reason,
        **detail,
    )
    return attempt


def campaign_purpose(s: Session, case: Case) -> str | None:
    """What a campaign's request letter says the records are for (None: an external review)."""
    if case.campaign_id is None:
        return None
    facts = campaign_facts(s, case.campaign_id)
    return f'the records review "{facts.name}"' if facts else "a records review"


def served_lines(s: Session, a: Attempt) -> list[str]:
    """The other requests a chase's sending attempt serves, one line each for its letter:
    their reference and what is asked for them."""
    if a.served_by != a.id:
        return []
    rows = s.execute(
        select(RecordRequest.reference, Attempt.requested)
        .join(RecordRequest, RecordRequest.id == Attempt.request_id)
        .where(Attempt.served_by == a.id, Attempt.id != a.id)
        .order_by(RecordRequest.reference)
    )
    return [f"{reference}: {requested}" for reference, requested in rows]


def withdrawn(s: Session, a: Attempt) -> bool:
    """Whether every request ``a`` asks for was withdrawn (cancelled with its case): its own,
    and for a chase's sending attempt the other requests it serves. Its letter is then no
    longer handed out (``GET /v1/media/{attempt_id}``)."""
    if a.request.status != RequestStatus.CANCELLED:
        return False
    if a.served_by != a.id:
        return True
    still_asked = s.scalar(
        select(
            exists()
            .where(Attempt.served_by == a.id, Attempt.id != a.id)
            .where(RecordRequest.id == Attempt.request_id)
            .where(RecordRequest.status != RequestStatus.CANCELLED.value)
        )
    )
    return not still_asked
