"""The scheduler tick: enqueue whatever the database says is due.

Timers are columns. :data:`TIMERS` lists each one once — the column, the rows it applies to
and the command it starts — and both :func:`tick` and :func:`next_due` read that table, so a
new timer is one row there. A tick finds every row whose timer has passed, pushes the timer
ahead by a lease (so the next tick does not enqueue it again) and enqueues the command; the
handler then sets the real next time. A lost message is re-enqueued when its lease runs out,
so losing Redis loses no work. Restarts, Redis loss and virtual time are all the same path.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, func, select, true, union_all
from sqlalchemy.orm import InstrumentedAttribute

from storage.db import transaction
from storage.models import Attempt, Case, Delivery, InboundItem, RecordRequest, UTCDateTime
from worker.commands import (
    AssemblePacket,
    Command,
    DeliverPacket,
    IngestInbound,
    PlanOutreach,
    PollTask,
    ReconcileAttempt,
    SendAttempt,
)
from worker.domain.lifecycle import LEASE, TIMED_CASE_STATES, DeliveryStatus, RequestStatus
from worker.domain.types import AttemptOutcome
from worker.wiring import Container

BATCH = 500  # rows per timer per tick


@dataclass(frozen=True)
class Timer:
    """One timer column: rows of ``model`` where ``active`` holds are due at ``column``."""

    name: str
    model: type[Any]
    column: InstrumentedAttribute[datetime | None]
    active: ColumnElement[bool]
    command: Callable[[str], Command]


TIMERS: tuple[Timer, ...] = (
    Timer(
        "outreach",
        RecordRequest,
        RecordRequest.next_action_at,
        RecordRequest.status == RequestStatus.OPEN,
        PlanOutreach,
    ),
    Timer("redial", Attempt, Attempt.redial_at, true(), SendAttempt),
    Timer("poll", Attempt, Attempt.poll_at, true(), PollTask),
    Timer(
        "check",
        Attempt,
        Attempt.check_at,
        Attempt.outcome == AttemptOutcome.SENT.value,
        ReconcileAttempt,
    ),
    Timer(
        "packet",
        Case,
        Case.next_action_at,
        Case.status.in_([s.value for s in TIMED_CASE_STATES]),
        AssemblePacket,
    ),
    Timer(
        "delivery",
        Delivery,
        Delivery.next_action_at,
        Delivery.status == DeliveryStatus.PENDING,
        DeliverPacket,
    ),
    Timer(
        "inbound",
        InboundItem,
        InboundItem.next_action_at,
        InboundItem.processed_at.is_(None),
        IngestInbound,
    ),
)


def tick(c: Container) -> list[Command]:
    """Enqueue every due command, earliest timer first within each kind; returns them."""
    now = c.clock.now()
    due = next_due(c)
    if due is None or due > now:
        return []  # the common case: one read, no write transaction
    lease = now + LEASE
    cmds: list[Command] = []
    with transaction(c.sessions) as s:
        for timer in TIMERS:
            rows = s.scalars(
                select(timer.model)
                .where(timer.active, timer.column <= now)
                .order_by(timer.column)
                .limit(BATCH)
            )
            for row in rows:
                setattr(row, timer.column.key, lease)
                cmds.append(timer.command(row.id))
    c.dispatcher.enqueue(cmds)
    return cmds


def _next_due_statement() -> Any:
    branches = [select(func.min(timer.column).label("t")).where(timer.active) for timer in TIMERS]
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
