"""Reconciliation: what a fax status means for its attempt, whether it came by webhook or by
asking the vendor, and the ``check`` timer that asks when no final webhook came.

A ``fax.delivered`` / ``fax.failed`` webhook can be lost. Every fax transmission therefore sets
``Attempt.check_at`` (:class:`~worker.domain.lifecycle.StatusChecks`: first after 15 minutes by
default); :func:`reconcile_attempt` then reads the fax's status from the vendor and applies the
same :func:`~worker.domain.lifecycle.fax_status_step` as :func:`apply_fax_status` does for a
webhook: delivered, redial, or failed (the policy plans the next attempt). A fax still queued
or sending is asked about again until the give-up time, when the attempt is failed.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

import structlog
from sqlalchemy import exists, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from connectors.base import (
    ConnectorError,
    FaxChannel,
    FaxStatusEvent,
    ListsReceived,
    RecordsRequester,
)
from storage.db import by_id, one_by_id, transaction
from storage.models import Attempt, RecordRequest, Sweep
from worker.commands import Command, PlanOutreach, ReconcileAttempt, SweepInbound
from worker.domain.clock import Clock
from worker.domain.lifecycle import (
    INBOUND_SWEEP_EVERY,
    INBOUND_SWEEP_OVERLAP,
    REDIAL_DELAY,
    FaxStep,
    RequestStatus,
    StatusChecks,
    failure_reason,
    fax_status_step,
)
from worker.domain.types import AttemptOutcome, ChannelKind
from worker.services.audit import audit
from worker.services.mapping import attempt_outcome

log = structlog.get_logger("goodfaith.services")


def apply_fax_status(
    s: Session, a: Attempt, event: FaxStatusEvent, now: datetime, *, via: str = "webhook"
) -> list[Command]:
    """Apply a final fax status to its attempt (inside the caller's transaction).

    Duplicates and out-of-order events are harmless: a finished attempt ignores them.
    ``via`` ("webhook" or "status check") is written to the audit trail."""
    if event.outcome is None:
        return []
    step = fax_status_step(
        attempt_outcome(a),
        delivered=event.outcome is AttemptOutcome.DELIVERED,
        retryable=event.retryable,
        transmissions=a.transmissions,
    )
    if step is FaxStep.IGNORE:
        return []
    a.check_at = None  # final, or waiting for its redial (whose send sets a new check)
    if step is FaxStep.DELIVERED:
        a.outcome = AttemptOutcome.DELIVERED.value
        a.completed_at = event.occurred_at
        a.failure_reason = None
        arm_inbound_sweep(s, now + INBOUND_SWEEP_EVERY)  # the answer's webhook may be lost
        audit(s, now, "attempt.delivered", a.case_id, attempt_id=a.id, number=a.number, via=via)
        return []
    a.failure_reason = failure_reason(event.failure_reason or "failed")
    if step is FaxStep.REDIAL:
        a.redial_at = now + REDIAL_DELAY
        audit(
            s,
            now,
            "attempt.redial",
            a.case_id,
            attempt_id=a.id,
            transmission=a.transmissions,
            reason=a.failure_reason,
            via=via,
        )
        return []
    return fail_attempt(s, a, event.occurred_at, now, via=via)


def fail_attempt(s: Session, a: Attempt, at: datetime, now: datetime, *, via: str) -> list[Command]:
    """Mark ``a`` failed at ``at`` (its reason already set), audited; the policy then plans the
    next attempt."""
    a.outcome = AttemptOutcome.FAILED.value
    a.completed_at = at
    audit(
        s,
        now,
        "attempt.failed",
        a.case_id,
        attempt_id=a.id,
        number=a.number,
        reason=a.failure_reason,
        via=via,
    )
    return [PlanOutreach(a.request_id)]


#: an attempt, locked (built once: storage/db.py ``by_id``; outreach.py reads through it too)
ATTEMPT_LOCKED = by_id(Attempt, lock_of=Attempt)


def reconcile_attempt(
    cmd: ReconcileAttempt,
    *,
    sessions: sessionmaker[Session],
    clock: Clock,
    requesters: Mapping[ChannelKind, RecordsRequester],
    status_checks: StatusChecks,
) -> list[Command]:
    """The ``check`` timer: ask the fax vendor where an attempt's transmission stands."""
    now = clock.now()
    with transaction(sessions) as s:
        a = s.get(Attempt, cmd.attempt_id)
        if a is None:
            return []
        if (
            a.outcome != AttemptOutcome.SENT
            or a.external_id is None
            or a.redial_at is not None
            or a.channel != ChannelKind.FAX
        ):
            a.check_at = None  # finished, or a redial is due: nothing to ask about
            return []
        external_id, sent_at = a.external_id, a.sent_at or now
    fax = requesters[ChannelKind.FAX]
    event: FaxStatusEvent | None = None
    if isinstance(fax, FaxChannel):
        try:
            event = fax.status(external_id)
        except ConnectorError as exc:  # no answer this time: ask again, or give up on time
            log.warning("attempt.status_check_failed", attempt_id=cmd.attempt_id, error=str(exc))
    with transaction(sessions) as s:
        a = one_by_id(s, ATTEMPT_LOCKED, cmd.attempt_id)
        assert a is not None
        if event is not None and event.outcome is not None:
            return apply_fax_status(s, a, event, now, via="status check")
        if a.outcome != AttemptOutcome.SENT or a.external_id != external_id:
            a.check_at = None  # a webhook or a redial overtook this check
            return []
        following = status_checks.next(sent_at, now)
        if following is not None:
            a.check_at = following
            return []
        a.check_at = None
        a.failure_reason = failure_reason(
            f"no final fax status from {a.vendor or 'the vendor'} "
            f"within {status_checks.give_up} of sending"
        )
        log.warning("attempt.status_unknown", case_id=a.case_id, attempt_id=a.id)
        return fail_attempt(s, a, now, now, via="status check")


# --- the inbound sweep -------------------------------------------------------------------------

INBOUND_SWEEP = "inbound_fax"


def arm_inbound_sweep(s: Session, at: datetime) -> None:
    """An answer may come (a fax reached a provider): make sure the inbound sweep runs by
    ``at`` (inside the caller's transaction; touches the row only when it is not armed)."""
    s.execute(
        update(Sweep)
        .where(Sweep.id == INBOUND_SWEEP, or_(Sweep.next_at.is_(None), Sweep.next_at > at))
        .values(next_at=at)
    )


def sweep_inbound(
    cmd: SweepInbound, *, sessions: sessionmaker[Session], clock: Clock, fax: FaxChannel
) -> list[Command]:
    """The ``sweep`` timer: list the faxes received since the last sweep and take in every one
    we never heard of (its ``fax.received`` webhook was lost), exactly as the webhook would
    have. Re-armed while open requests await an answer by fax."""
    from worker.services.inbound import record_inbound_fax

    now = clock.now()
    with transaction(sessions) as s:
        row = s.get(Sweep, cmd.sweep_id)
        if row is None:
            return []
        since = (row.swept_at or now) - INBOUND_SWEEP_OVERLAP
    follow: list[Command] = []
    swept = False
    if isinstance(fax, ListsReceived):
        try:
            received = fax.list_received(since)
        except ConnectorError as exc:  # no answer this time: the next sweep looks back further
            log.warning("inbound.sweep_failed", error=type(exc).__name__)
        else:
            swept = True
            for event in received:
                found = record_inbound_fax(event, sessions=sessions, clock=clock)
                if found:
                    log.warning("inbound.webhook_lost", fax_id=event.fax_id)
                follow += found
    with transaction(sessions) as s:
        row = s.get(Sweep, cmd.sweep_id, with_for_update=True)
        assert row is not None
        if swept:
            row.swept_at = now
        awaited = s.scalar(
            select(
                exists().where(
                    Attempt.channel == ChannelKind.FAX.value,
                    Attempt.outcome.in_(
                        [AttemptOutcome.SENT.value, AttemptOutcome.DELIVERED.value]
                    ),
                    RecordRequest.id == Attempt.request_id,
                    RecordRequest.status == RequestStatus.OPEN.value,
                )
            )
        )
        row.next_at = now + INBOUND_SWEEP_EVERY if awaited else None
    return follow
