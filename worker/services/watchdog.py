"""The watchdog: find every case whose next step is overdue and drive it again from the
database, so that a lost message, a dead-lettered step or a crashed worker never costs a case
its deadline silently. The rules are pure (``worker/domain/watchdog.py``); this loads the
candidates (bounded, earliest ``deliver_by`` first), applies each verdict, flags the case and
audits ``case.overdue``. The scheduler runs it every tick and enqueues what it returns.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import ColumnElement, and_, bindparam, exists, or_, select
from sqlalchemy.orm import Session, sessionmaker

from config.settings import Settings
from storage.db import transaction
from storage.models import Case, Delivery, Packet, UTCDateTime
from worker.commands import AssemblePacket, Command, DeliverPacket
from worker.domain.clock import Clock
from worker.domain.lifecycle import LEASE, CaseStatus, DeliveryStatus
from worker.domain.watchdog import Action, CaseWatch, Reason, Verdict, assess
from worker.services.audit import audit
from worker.services.mapping import flag_case

log = structlog.get_logger("goodfaith.watchdog")

#: Most cases (and most stalled supplemental deliveries) one pass acts on.
BATCH = 200

_OPEN = CaseStatus.OPEN.value
_ASSEMBLING = CaseStatus.ASSEMBLING.value
_DELIVERING = CaseStatus.DELIVERING.value
_PENDING = DeliveryStatus.PENDING.value


def _pending(*, stalled: bool = False) -> ColumnElement[bool]:
    clause = exists().where(Delivery.case_id == Case.id, Delivery.status == _PENDING)
    return clause.where(Delivery.next_action_at.is_(None)) if stalled else clause


def candidates(now: Any, assemble_before: Any) -> ColumnElement[bool]:
    """Cases in progress that :func:`assess` may find overdue (the SQL side of its table):
    ``assemble_before`` is ``now`` less the grace (instants, or bind parameters of them)."""
    return and_(
        Case.status.in_([_OPEN, _ASSEMBLING, _DELIVERING]),
        or_(
            Case.deliver_by <= now,
            and_(Case.status.in_([_OPEN, _ASSEMBLING]), Case.assemble_at <= assemble_before),
            and_(Case.status == _ASSEMBLING, Case.next_action_at.is_(None)),
            and_(Case.status == _DELIVERING, or_(_pending(stalled=True), ~_pending())),
        ),
    )


def _statements() -> tuple[Any, Any]:
    """The pass's two statements, built once (a pass runs every scheduler tick and every
    simulation step; building them was most of an idle pass's CPU): whether any case is a
    candidate, and the candidates themselves, claimed."""
    now = bindparam("now", type_=UTCDateTime())
    before = bindparam("assemble_before", type_=UTCDateTime())
    due = and_(candidates(now, before), or_(Case.watchdog_at.is_(None), Case.watchdog_at <= now))
    return (
        select(Case.id).where(due).limit(1),
        select(Case)
        .where(due)
        .order_by(Case.deliver_by, Case.id)
        .limit(BATCH)
        .with_for_update(skip_locked=True, of=Case),  # another scheduler's pass: skip
    )


_ANY_DUE, _CLAIM = _statements()


def watch(*, sessions: sessionmaker[Session], clock: Clock, settings: Settings) -> list[Command]:
    """One watchdog pass; returns the commands that drive overdue cases again.

    A read first: when no case is a candidate (nearly every pass) the pass ends there,
    claiming no row and flushing nothing (on SQLite that read still begins IMMEDIATE, as every
    transaction here does, but holds the writer only for one indexed query)."""
    now = clock.now()
    grace = timedelta(seconds=settings.watchdog_grace_s)
    hold = now + timedelta(seconds=settings.watchdog_interval_s)
    params = {"now": now, "assemble_before": now - grace}
    with sessions() as s:
        anything = s.execute(_ANY_DUE, params).first() is not None or _any_stalled(s)
    if not anything:
        return []
    cmds: list[Command] = []
    with transaction(sessions) as s:
        cases = s.scalars(_CLAIM, params).all()
        latest = _latest_deliveries(s, [c.id for c in cases])
        for case in cases:
            d = latest.get(case.id)
            verdict = assess(_watch(case, d), now, grace)
            if verdict is not None:
                case.watchdog_at = hold
                cmds += _apply(s, case, d, verdict, now)
        cmds += _stalled_supplemental(s, now)
    return cmds


def _latest_deliveries(s: Session, case_ids: list[str]) -> dict[str, Delivery]:
    """Each case's delivery of its latest packet (one query)."""
    rows = s.scalars(
        select(Delivery)
        .join(Packet, Packet.id == Delivery.packet_id)
        .where(Delivery.case_id.in_(case_ids))
        .order_by(Packet.sequence)
    )
    return {d.case_id: d for d in rows}


def _watch(case: Case, d: Delivery | None) -> CaseWatch:
    return CaseWatch(
        status=CaseStatus(case.status),
        assemble_at=case.assemble_at,
        deliver_by=case.deliver_by,
        timer=case.next_action_at,
        delivery=DeliveryStatus(d.status) if d else None,
        delivery_timer=d.next_action_at if d else None,
    )


def _apply(
    s: Session, case: Case, d: Delivery | None, verdict: Verdict, now: datetime
) -> list[Command]:
    """Flag the case; when the verdict drives, lease its timer and return the command."""
    if not flag_case(case, verdict.attention) and not verdict.drives:
        return []  # already flagged for this, and nothing to drive: nothing new to record
    cmd: Command | None = None
    if verdict.action is Action.ASSEMBLE:
        case.next_action_at = now + LEASE  # a lost message is re-enqueued by the timer
        cmd = AssemblePacket(case.id)
    elif verdict.action is Action.DELIVER and d is not None:
        d.next_action_at = now + LEASE
        cmd = DeliverPacket(d.id)
    detail = {"step": verdict.step.value, "reason": verdict.reason.value}
    audit(s, now, "case.overdue", case.id, action=verdict.action.value, **detail)
    log.warning("case.overdue", case_id=case.id, **detail)
    return [cmd] if cmd else []


_STALLED = and_(
    Delivery.status == _PENDING,
    Delivery.next_action_at.is_(None),
    Case.status.in_([st.value for st in CaseStatus if st.delivered]),
)
_ANY_STALLED = select(Delivery.id).join(Case, Case.id == Delivery.case_id).where(_STALLED).limit(1)
_CLAIM_STALLED = (
    select(Delivery)
    .join(Case, Case.id == Delivery.case_id)
    .where(_STALLED)
    .limit(BATCH)
    .with_for_update(skip_locked=True, of=Delivery)
)


def _any_stalled(s: Session) -> bool:
    return s.execute(_ANY_STALLED).first() is not None


def _stalled_supplemental(s: Session, now: datetime) -> list[Command]:
    """Pending deliveries of cases already delivered (supplemental packets) without a timer."""
    rows = s.scalars(_CLAIM_STALLED).all()
    for d in rows:
        d.next_action_at = now + LEASE
        detail = {"step": "deliver", "reason": Reason.TIMER_LOST.value}
        audit(s, now, "case.overdue", d.case_id, action="deliver", delivery_id=d.id, **detail)
        log.warning("case.overdue", case_id=d.case_id, delivery_id=d.id, **detail)
    return [DeliverPacket(d.id) for d in rows]
