"""Outreach: plan each attempt with the pure policy, write it, then send it; follow its fax
status. An attempt row is committed before its connector is called (write the attempt, then
send), and connectors are called outside database transactions.

An attempt left mid-send by a crash (``lifecycle.left_mid_send``: counted, never answered) is
not sent blindly again: the far side is asked first (``FindsSent.find_sent``) and what it has
is adopted; only when it has nothing is the same transmission sent, with the same key."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import structlog
from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session, joinedload, sessionmaker

from config.jurisdictions import get_jurisdiction
from connectors.base import (
    ConnectorError,
    FaxStatusEvent,
    FindsSent,
    PatientRef,
    PermanentError,
    PollingRequester,
    ProviderRef,
    RecordsRequest,
    RecordsRequester,
    SendReceipt,
    TransientError,
)
from storage.db import by_id, one_by_id, transaction
from storage.models import Attempt, RecordRequest
from storage.objects import ObjectStore, content_key
from worker.commands import Command, PlanOutreach, SendAttempt
from worker.domain.clock import Clock
from worker.domain.lifecycle import (
    LEASE,
    LOOKUP_SKEW,
    SEND_LEASE,
    SendAction,
    StatusChecks,
    failure_reason,
    outreach_allowed,
    send_action,
    transmission_key,
)
from worker.domain.polling import poll_delay
from worker.domain.types import AttemptOutcome, Channel, ChannelKind
from worker.services.audit import audit
from worker.services.coalescing import (
    campaign_purpose,
    join_chase,
    lock_first_planning,
    plan_chase,
    plan_next,
    served_lines,
    write_attempt,
)
from worker.services.mapping import (
    attempt_outcome,
    case_status,
    request_status,
)
from worker.services.reconcile import ATTEMPT_LOCKED, apply_fax_status

if TYPE_CHECKING:
    from worker.letters import LetterInfo

log = structlog.get_logger("goodfaith.services")

#: an attempt with its request and case in one query (they are read on every send)
WITH_CASE = (
    joinedload(Attempt.request, innerjoin=True).joinedload(RecordRequest.case, innerjoin=True),
)
#: a request with its case and its attempts in one query, as the policy reads them (a request
#: has a handful of attempts: joining them costs less than selectinload's second query)
REQUEST_STATE = (
    joinedload(RecordRequest.case, innerjoin=True),
    joinedload(RecordRequest.attempts),
)
#: The hot path's reads, built once (storage/db.py ``by_id``). Each locks only the row named:
#: the case and its other rows stay free for their own work.
_PLAN_READ = by_id(RecordRequest, *REQUEST_STATE, lock_of=RecordRequest)
_LETTER_READ = by_id(Attempt, *WITH_CASE)
_SEND_READ = by_id(Attempt, *WITH_CASE, lock_of=Attempt)


def plan_outreach(
    cmd: PlanOutreach, *, sessions: sessionmaker[Session], clock: Clock
) -> list[Command]:
    """Ask the outreach policy for the next attempt; write it (pending) or set the timer."""
    now = clock.now()
    with transaction(sessions) as s:
        lock_first_planning(s, cmd.request_id)  # before the row lock: see coalescing.py
        r = one_by_id(s, _PLAN_READ, cmd.request_id)
        return [] if r is None else plan_request(s, r, now)


def plan_request(
    s: Session, r: RecordRequest, now: datetime, *, alone: bool = False
) -> list[Command]:
    """Plan ``r`` (read with :data:`REQUEST_STATE`, locked, its first planning's lock taken)
    in the caller's transaction: write its next attempt (pending) or set its timer.
    ``alone``: its member is known to have no other open case (no chase to look for)."""
    case = r.case
    if not outreach_allowed(request_status(r), case_status(case)):
        r.next_action_at = None
        return []
    if r.chase_id is None and not r.attempts and not alone:
        join_chase(s, r, now)
    if r.chase_id is not None:  # one outreach for every open request of this member here
        return plan_chase(s, r, now)
    pending = [a for a in r.attempts if a.outcome == AttemptOutcome.PENDING]
    if pending:  # a send message was lost or is under way: (re)send it, same key
        r.next_action_at = now + LEASE
        return [SendAttempt(pending[0].id)]
    planned = plan_next(s, r, now)
    if planned is None or planned.at > now:
        r.next_action_at = planned.at if planned else None
        return []
    attempt = write_attempt(s, r, planned, now)
    r.next_action_at = now + LEASE
    return [SendAttempt(attempt.id)]


def _build_letter(
    attempt_id: str,
    *,
    sessions: sessionmaker[Session],
    store: ObjectStore,
    carrier_name: str,
    return_fax: str,
) -> str | None:
    """Write the attempt's request letter to the store (outside any transaction: PDF work is
    slow and SQLite has one writer). Returns its URI, or None when there is nothing to send."""
    with transaction(sessions) as s:
        a = one_by_id(s, _LETTER_READ, attempt_id)
        if a is None:
            return None
        draft = letter_draft(s, a, carrier_name, return_fax)
    return None if draft is None else draft.write(store)


@dataclass(frozen=True)
class LetterDraft:
    """What an attempt's request letter says, read in a transaction, written after it."""

    info: LetterInfo
    case_id: str
    authorization_uri: str | None

    def write(self, store: ObjectStore) -> str:
        """Render the letter (the authorization's pages appended) and store it; its URI."""
        from worker.letters import build_request_letter

        auth = store.get(self.authorization_uri) if self.authorization_uri else None
        letter = build_request_letter(self.info, auth)
        key = content_key(self.case_id, "letters", letter, "pdf")
        return store.put(key, letter, "application/pdf")


def letter_draft(s: Session, a: Attempt, carrier_name: str, return_fax: str) -> LetterDraft | None:
    """The letter of ``a`` (read with its request and case), or None when it has one already
    or is no longer pending (nothing to send)."""
    from worker.letters import LetterInfo

    if a.letter_uri is not None or a.outcome != AttemptOutcome.PENDING:
        return None
    r, case = a.request, a.request.case
    jurisdiction = get_jurisdiction(case.jurisdiction)
    info = LetterInfo(
        reference=r.reference,
        carrier_name=carrier_name,
        return_fax=return_fax,
        provider_name=r.provider_name,
        insured_name=case.insured_name,
        member_id=case.insured_member_id,
        birth_date=case.insured_birth_date,
        service=case.dispute.get("service", ""),
        codes=case.dispute.get("codes") or [],
        dates_of_service=case.dispute.get("dates_of_service") or [],
        respond_by=case.assemble_at,
        attempt_number=a.number,
        citation=jurisdiction.citation,
        tz=jurisdiction.tz,
        purpose=campaign_purpose(s, case),
        also=served_lines(s, a),
    )
    return LetterDraft(info, case.id, case.authorization_object_uri)


@dataclass(frozen=True)
class Outgoing:
    request: RecordsRequest
    request_id: str
    case_id: str
    look_since: datetime | None = None  # left mid-send: look at the far side from here first


def send_attempt(
    cmd: SendAttempt,
    *,
    sessions: sessionmaker[Session],
    clock: Clock,
    store: ObjectStore,
    requesters: Mapping[ChannelKind, RecordsRequester],
    media_url: Callable[[str], str],
    carrier_name: str,
    return_fax: str,
    status_checks: StatusChecks,
) -> list[Command]:
    """Send one attempt (or redial it): the letter is stored and the transmission counted
    before the connector is called; the outcome is written after. An attempt left mid-send is
    looked for at the far side first and adopted when found."""
    letter_uri = _build_letter(
        cmd.attempt_id,
        sessions=sessions,
        store=store,
        carrier_name=carrier_name,
        return_fax=return_fax,
    )
    now = clock.now()
    with transaction(sessions) as s:
        a = one_by_id(s, _SEND_READ, cmd.attempt_id)
        out = (
            None
            if a is None
            else start_transmission(a, letter_uri, now, requesters, media_url, carrier_name)
        )
    if out is None:
        return []
    requester = requesters[out.request.channel.kind]
    answer = None
    if out.look_since is not None:
        try:
            answer = look_first(requester, out, cmd.attempt_id)
        except Exception:  # no answer: free the attempt, and let the message be retried
            _release(cmd.attempt_id, sessions)
            raise
    answer = answer or transmit(requester, out)
    with transaction(sessions) as s:
        a = one_by_id(s, ATTEMPT_LOCKED, cmd.attempt_id)
        assert a is not None
        write_answer(s, a, out.case_id, answer, requester, clock.now(), status_checks)
    return [PlanOutreach(out.request_id)]


@dataclass(frozen=True)
class Answer:
    """What the far side answered for one transmission: a receipt (sent, or found there and
    ``adopted`` after a crash), or the connector's error (failed)."""

    receipt: SendReceipt | None = None
    adopted: bool = False
    error: ConnectorError | None = None


def look_first(requester: RecordsRequester, out: Outgoing, attempt_id: str) -> Answer | None:
    """For an attempt left mid-send (``out.look_since``): what the far side already has,
    adopted; None when it has nothing (send it, same key). A PermanentError fails the attempt
    (we cannot know whether it went out: never send blindly); any other error propagates, and
    the caller frees the attempt for a later try."""
    assert out.look_since is not None
    try:
        found = _look(requester, out.request, out.look_since, attempt_id)
    except PermanentError as exc:
        return Answer(error=exc)
    return None if found is None else Answer(found, adopted=True)


def transmit(requester: RecordsRequester, out: Outgoing) -> Answer:
    """Send ``out``; a connector error is the answer (failed), anything else propagates (the
    attempt stays held until its send lease ends, then is looked for: a crash mid-send)."""
    try:
        return Answer(requester.send(out.request))
    except ConnectorError as exc:
        return Answer(error=exc)


def _look(
    requester: RecordsRequester, request: RecordsRequest, since: datetime, attempt_id: str
) -> SendReceipt | None:
    """What the far side already has for ``request``'s key. A TransientError propagates: the
    message is retried later and nothing is sent meanwhile."""
    if not isinstance(requester, FindsSent):
        log.warning("attempt.resend_unverified", attempt_id=attempt_id, vendor=requester.vendor)
        return None  # this vendor cannot be asked: re-send with the same idempotency key
    return requester.find_sent(request, since)


def start_transmission(
    a: Attempt,
    letter_uri: str | None,
    now: datetime,
    requesters: Mapping[ChannelKind, RecordsRequester],
    media_url: Callable[[str], str],
    carrier_name: str,
) -> Outgoing | None:
    """In the caller's transaction, ``a`` read with its request and case and locked: count
    the transmission, note the vendor, hold it while on the wire, and build what the connector
    sends (None: nothing to send)."""
    r, case = a.request, a.request.case
    in_flight = a.sending_until is not None and a.sending_until > now
    action = send_action(
        attempt_outcome(a),
        a.redial_at is not None,
        request_status(r),
        case_status(case),
        transmissions=a.transmissions,
        has_external_id=a.external_id is not None,
        in_flight=in_flight,
    )
    if action is SendAction.DROP:
        if in_flight:
            log.info("attempt.send_in_flight", attempt_id=a.id)
        else:
            a.redial_at = None
        return None  # a stale message, or another command is transmitting it now
    if action is SendAction.CANCEL:
        a.outcome = AttemptOutcome.CANCELLED.value
        a.completed_at = now
        a.redial_at = None
        return None
    # Held while on the wire; a redial keeps its timer as a lease (re-driven if we crash)
    a.sending_until = now + SEND_LEASE
    if a.redial_at is not None:
        a.redial_at = now + LEASE
    if action is SendAction.LOOK:  # same transmission, same key: not counted again
        return _outgoing(a, media_url, carrier_name, look_since=a.planned_at - LOOKUP_SKEW)
    a.letter_uri = a.letter_uri or letter_uri
    if a.letter_uri is None:  # should not happen: a redial always has its letter
        raise RuntimeError(f"attempt {a.id} has no request letter")
    a.transmissions += 1
    a.external_id = None  # a redial: the previous transmission's id stays in the audit trail
    a.vendor = requesters[ChannelKind(a.channel)].vendor
    return _outgoing(a, media_url, carrier_name)


def _release(attempt_id: str, sessions: sessionmaker[Session]) -> None:
    """End an attempt's send lease: nothing is on the wire for it any more."""
    with transaction(sessions) as s:
        a = one_by_id(s, ATTEMPT_LOCKED, attempt_id)
        if a is not None:
            a.sending_until = None


def _outgoing(
    a: Attempt,
    media_url: Callable[[str], str],
    carrier_name: str,
    look_since: datetime | None = None,
) -> Outgoing:
    """What the connector sends for the attempt's current transmission."""
    r, case = a.request, a.request.case
    request = RecordsRequest(
        idempotency_key=transmission_key(a.idempotency_key, a.transmissions),
        reference=r.reference,
        channel=Channel(ChannelKind(a.channel), a.destination, a.designee, r.npi),
        document_url=media_url(a.id),
        member_id=case.insured_member_id,
        requester=carrier_name,
        purpose=(
            f"External review ({case.jurisdiction}): {a.requested}"
            if case.campaign_id is None
            else f"Records review: {a.requested}"
        ),
        attempt_number=a.number,
        respond_by=case.assemble_at,
        requested=a.requested,
        patient=PatientRef(case.insured_name, case.insured_birth_date),
        provider=ProviderRef(r.provider_id, r.provider_name, r.npi),
        # the letter served at document_url carries the authorization's pages when we hold one
        authorization_url=media_url(a.id) if case.authorization_object_uri else None,
        claim_id=(case.dispute or {}).get("claim_id"),
        coverage_id=((case.notification or {}).get("coverage") or {}).get("coverage_id"),
    )
    return Outgoing(request, r.id, case.id, look_since)


def write_answer(
    s: Session,
    a: Attempt,
    case_id: str,
    answer: Answer,
    requester: RecordsRequester,
    now: datetime,
    status_checks: StatusChecks,
) -> None:
    """Write the far side's ``answer`` on ``a`` (locked), audited. A fax sent gets its status
    check: after the threshold, or at once when adopted after a crash (its webhooks went to an
    attempt without an external id)."""
    a.sent_at = a.sent_at or now
    a.sending_until = a.redial_at = None
    if answer.receipt is None:
        assert answer.error is not None
        _write_failure(s, a, case_id, answer.error, now)
        return
    a.external_id = answer.receipt.external_id
    if a.outcome == AttemptOutcome.PENDING:
        a.outcome = answer.receipt.outcome.value
    a.notified_until = answer.receipt.notified_until
    a.subscription = answer.receipt.subscription
    if isinstance(requester, PollingRequester):
        cadence = requester.poll_delay(timedelta(0))
        a.poll_at = now + poll_delay(cadence, timedelta(0), a.notified_until, now)
    elif a.channel == ChannelKind.FAX:
        a.check_at = now if answer.adopted else status_checks.first(now)
    audit(
        s,
        now,
        "attempt.adopted" if answer.adopted else "attempt.sent",
        case_id,
        attempt_id=a.id,
        number=a.number,
        channel=a.channel,
        external_id=a.external_id,
        transmission=a.transmissions,
        notified=a.notified_until is not None,
    )
    log.info("attempt.sent", case_id=case_id, attempt_id=a.id, number=a.number, channel=a.channel)


def _write_failure(
    s: Session, a: Attempt, case_id: str, error: ConnectorError, now: datetime
) -> None:
    kind = "transient" if isinstance(error, TransientError) else "permanent"
    a.outcome = AttemptOutcome.FAILED.value
    a.completed_at = now
    a.failure_reason = failure_reason(f"{kind}: {error}")
    audit(
        s,
        now,
        "attempt.failed",
        case_id,
        attempt_id=a.id,
        number=a.number,
        channel=a.channel,
        error=type(error).__name__,
    )
    log.warning("attempt.failed", case_id=case_id, attempt_id=a.id, error=type(error).__name__)


#: the attempt a fax status webhook names, locked (built once: storage/db.py ``by_id``)
_BY_FAX_ID = select(Attempt).where(Attempt.external_id == bindparam("fax_id")).with_for_update()


def record_fax_status(
    event: FaxStatusEvent, *, sessions: sessionmaker[Session], clock: Clock
) -> list[Command]:
    """A status webhook for an outbound fax. Duplicates and out-of-order events are harmless;
    a fax we hold no external id for yet is picked up by its status check."""
    if event.outcome is None:
        return []
    with transaction(sessions) as s:
        a = s.scalar(_BY_FAX_ID, {"fax_id": event.fax_id})
        if a is None:
            return []
        return apply_fax_status(s, a, event, clock.now())
