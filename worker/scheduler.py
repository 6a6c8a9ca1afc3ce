"""The scheduler tick: enqueue whatever the database says is due.

Timers are columns. A tick finds every row whose timer has passed, pushes the timer ahead by
a lease (so the next tick does not enqueue it again) and enqueues the command; the handler
then sets the real next time. A lost message is re-enqueued when its lease runs out, so
losing Redis loses no work. Restarts, Redis loss and virtual time are all the same path.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, select, union_all

from storage.db import transaction
from storage.models import Attempt, Case, Delivery, InboundItem, RecordRequest, UTCDateTime
from worker.commands import (
    AssemblePacket,
    Command,
    DeliverPacket,
    IngestInbound,
    PlanOutreach,
    PollTask,
    SendAttempt,
)
from worker.domain.lifecycle import LEASE
from worker.wiring import Container

BATCH = 500  # rows per timer kind per tick
#: Case states whose timer (assembly cutoff, supplemental packet) the scheduler watches.
ACTIVE_CASES = ("open", "assembling", "delivered", "late")


def tick(c: Container) -> list[Command]:
    """Enqueue every due command; returns what was enqueued."""
    now = c.clock.now()
    due = next_due(c)
    if due is None or due > now:
        return []  # the common case: one read, no write transaction
    lease = now + LEASE
    cmds: list[Command] = []
    with transaction(c.sessions) as s:
        for r in s.scalars(
            select(RecordRequest)
            .where(RecordRequest.status == "open", RecordRequest.next_action_at <= now)
            .limit(BATCH)
        ):
            r.next_action_at = lease
            cmds.append(PlanOutreach(r.id))
        for a in s.scalars(select(Attempt).where(Attempt.redial_at <= now).limit(BATCH)):
            a.redial_at = lease
            cmds.append(SendAttempt(a.id))
        for a in s.scalars(select(Attempt).where(Attempt.poll_at <= now).limit(BATCH)):
            a.poll_at = lease
            cmds.append(PollTask(a.id))
        for case in s.scalars(
            select(Case)
            .where(
                Case.status.in_(ACTIVE_CASES),
                Case.next_action_at <= now,
            )
            .limit(BATCH)
        ):
            case.next_action_at = lease
            cmds.append(AssemblePacket(case.id))
        for d in s.scalars(
            select(Delivery)
            .where(Delivery.status == "pending", Delivery.next_action_at <= now)
            .limit(BATCH)
        ):
            d.next_action_at = lease
            cmds.append(DeliverPacket(d.id))
        for item in s.scalars(
            select(InboundItem)
            .where(InboundItem.processed_at.is_(None), InboundItem.next_action_at <= now)
            .limit(BATCH)
        ):
            item.next_action_at = lease
            cmds.append(IngestInbound(item.id))
    c.dispatcher.enqueue(cmds)
    return cmds


def _next_due_statement() -> Any:
    branches = [
        select(func.min(RecordRequest.next_action_at).label("t")).where(
            RecordRequest.status == "open"
        ),
        select(func.min(Attempt.redial_at).label("t")),
        select(func.min(Attempt.poll_at).label("t")),
        select(func.min(Case.next_action_at).label("t")).where(Case.status.in_(ACTIVE_CASES)),
        select(func.min(Delivery.next_action_at).label("t")).where(Delivery.status == "pending"),
        select(func.min(InboundItem.next_action_at).label("t")).where(
            InboundItem.processed_at.is_(None)
        ),
    ]
    timers = union_all(*branches).subquery()
    return select(func.min(timers.c.t, type_=UTCDateTime()))


_NEXT_DUE: Any = None


def next_due(c: Container) -> datetime | None:
    """The earliest timer in the database, or None when nothing is scheduled (one query).

    Called every scheduler tick and every simulation step: the statement is built once."""
    global _NEXT_DUE
    if _NEXT_DUE is None:
        _NEXT_DUE = _next_due_statement()
    with c.engine.connect() as conn:
        value: datetime | None = conn.execute(_NEXT_DUE).scalar()
    return value
