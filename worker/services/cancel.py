"""Cancel: a withdrawal or an insurer reversal stops all outreach for a case, and withdraws what
is still open at the far side. Packets already delivered stay exactly as they are.

Stopping is immediate and local: the case and its open requests are cancelled and every timer
of their attempts cleared (no further attempt, redial or poll). Withdrawing at the far side is
a timer of its own (``attempts.cancel_at``, the scheduler's ``cancel`` timer): each attempt
whose request may still be worked on there — one sent over a requester that can withdraw it
(a CDex Task, a retrieval vendor's order) and not failed — is withdrawn by :func:`cancel_attempt`, retried on transient
errors until it is done or impossible. A fax already dialled cannot be called back; one still
queued at the vendor fails when it fetches its letter, which is no longer handed out once every
request it asks for is withdrawn (``GET /v1/media/{attempt_id}``).

A packet built but not yet at the agency (the case ``delivering``) is not sent: its delivery
is cancelled too (``delivery.cancel_delivery``), and a fax of it already under way is flagged.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta

import structlog
from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session, sessionmaker

from connectors.base import CancelsRequest, PermanentError, RecordsRequester, TransientError
from storage.db import transaction
from storage.models import Attempt, Case, Delivery
from worker.commands import CancelAttempt, Command
from worker.domain.clock import Clock
from worker.domain.lifecycle import LEASE, CaseStatus, DeliveryStatus, RequestStatus, can_cancel
from worker.domain.types import AttemptOutcome, ChannelKind
from worker.services.audit import audit
from worker.services.closing import stop_request
from worker.services.delivery import cancel_delivery
from worker.services.mapping import case_status, flag_case

log = structlog.get_logger("goodfaith.services")

#: A withdrawal that failed on a transient error is tried again this much later.
CANCEL_RETRY = timedelta(minutes=5)

#: The ``statusReason`` the far side is given (no PHI: the case's own reason stays with us).
FAR_SIDE_REASON = "external review withdrawn or decided: records no longer needed"


#: What a withdrawn request is called at the far side, per channel (in the ops flag).
_WHAT = {ChannelKind.FHIR.value: "FHIR Task", ChannelKind.VENDOR.value: "retrieval-vendor order"}


#: a case's deliveries still under way, locked (built once: storage/db.py ``by_id``)
_PENDING_DELIVERIES = (
    select(Delivery)
    .where(Delivery.case_id == bindparam("case_id"))
    .where(Delivery.status == DeliveryStatus.PENDING.value)
    .with_for_update()
)


def cancel_case(
    case_id: str,
    reason: str,
    *,
    sessions: sessionmaker[Session],
    clock: Clock,
    requesters: Mapping[ChannelKind, RecordsRequester],
) -> tuple[bool, list[Command]]:
    """Stop the case and its open requests; (False, []) when the case is unknown or already
    closed (delivered, late or cancelled). Returns the withdrawals to run at the far side."""
    now = clock.now()
    follow: list[Command] = []
    with transaction(sessions) as s:
        # the packet's delivery before the case: the order delivery.py locks them in
        deliveries = list(s.scalars(_PENDING_DELIVERIES, {"case_id": case_id}))
        case = s.get(Case, case_id, with_for_update=True)
        if case is None or not can_cancel(case_status(case)):
            return False, []
        case.status = CaseStatus.CANCELLED.value
        case.next_action_at = None
        for d in deliveries:  # the packet is built but the agency does not have it yet
            cancel_delivery(s, d, case, now)
        for r in case.requests:
            if r.status != RequestStatus.OPEN:
                continue
            stop_request(r, RequestStatus.CANCELLED, now)
            for a in r.attempts:
                if _withdrawable(a, requesters):
                    # leased: the command below does it; the timer only if that is lost
                    a.cancel_at = now + LEASE
                    follow.append(CancelAttempt(a.id))
        audit(s, now, "case.cancelled", case.id, reason=reason)
    return True, follow


def _withdrawable(a: Attempt, requesters: Mapping[ChannelKind, RecordsRequester]) -> bool:
    requester = requesters.get(ChannelKind(a.channel))
    return (
        a.external_id is not None
        and a.outcome != AttemptOutcome.FAILED
        and isinstance(requester, CancelsRequest)
    )


def cancel_attempt(
    cmd: CancelAttempt,
    *,
    sessions: sessionmaker[Session],
    clock: Clock,
    requesters: Mapping[ChannelKind, RecordsRequester],
) -> list[Command]:
    """Withdraw one attempt's request at the far side (audited), once; retried later on a
    transient error; given up (audited, case flagged) on a permanent one."""
    with transaction(sessions) as s:
        a = s.get(Attempt, cmd.attempt_id)
        if a is None or a.cancel_at is None or a.external_id is None:
            return []
        external_id, channel = a.external_id, ChannelKind(a.channel)
    requester = requesters.get(channel)
    if not isinstance(requester, CancelsRequest):
        return _done(cmd.attempt_id, sessions, clock, "attempt.withdraw_unsupported")
    try:
        withdrawn = requester.cancel(external_id, FAR_SIDE_REASON)
    except TransientError as exc:
        with transaction(sessions) as s:
            a = s.get(Attempt, cmd.attempt_id)
            assert a is not None
            a.cancel_at = clock.now() + CANCEL_RETRY
        log.info("attempt.withdraw_retry", attempt_id=cmd.attempt_id, error=type(exc).__name__)
        return []
    except PermanentError as exc:
        return _done(
            cmd.attempt_id, sessions, clock, "attempt.withdraw_failed", error=type(exc).__name__
        )
    kind = "attempt.withdrawn" if withdrawn else "attempt.withdraw_not_needed"
    return _done(cmd.attempt_id, sessions, clock, kind)


def _done(
    attempt_id: str, sessions: sessionmaker[Session], clock: Clock, kind: str, **detail: str
) -> list[Command]:
    now = clock.now()
    with transaction(sessions) as s:
        a = s.get(Attempt, attempt_id, with_for_update=True)
        assert a is not None
        a.cancel_at = None
        audit(s, now, kind, a.case_id, attempt_id=a.id, **detail)
        if kind == "attempt.withdraw_failed":
            flag_case(  # joins what else ops must do (e.g. tell the agency of a fax under way)
                a.request.case,
                f"a cancelled case's {_WHAT.get(a.channel, 'request')} could not be withdrawn: "
                "tell the provider",
            )
    log.info(kind, attempt_id=attempt_id, case_id=a.case_id, **detail)
    return []
