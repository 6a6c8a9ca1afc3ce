"""The scheduler tick: enqueue whatever the database says is due.

Timers are columns. A tick finds every row whose timer has passed, pushes the timer ahead by
a lease (so the next tick does not enqueue it again) and enqueues the command; the handler
then sets the real next time. A lost message is re-enqueued when its lease runs out, so
losing Redis loses no work. Restarts, Redis loss and virtual time are all the same path.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select

from storage.db import transaction
from storage.models import Attempt, Case, Delivery, InboundItem, RecordRequest
from worker.commands import (
    AssemblePacket,
    Command,
    DeliverPacket,
    IngestInbound,
    PlanOutreach,
    PollTask,
    SendAttempt,
)
from worker.services import LEASE
from worker.wiring import Container

BATCH = 500  # rows per timer kind per tick


def tick(c: Container) -> list[Command]:
    """Enqueue every due command; returns what was enqueued."""
    now = c.clock.now()
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
                Case.status.in_(("open", "assembling", "delivered", "late")),
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


def next_due(c: Container) -> datetime | None:
    """The earliest timer in the database, or None when nothing is scheduled."""
    with transaction(c.sessions) as s:
        candidates = [
            s.scalar(
                select(func.min(RecordRequest.next_action_at)).where(RecordRequest.status == "open")
            ),
            s.scalar(select(func.min(Attempt.redial_at))),
            s.scalar(select(func.min(Attempt.poll_at))),
            s.scalar(
                select(func.min(Case.next_action_at)).where(
                    Case.status.in_(("open", "assembling", "delivered", "late"))
                )
            ),
            s.scalar(select(func.min(Delivery.next_action_at)).where(Delivery.status == "pending")),
            s.scalar(
                select(func.min(InboundItem.next_action_at)).where(
                    InboundItem.processed_at.is_(None)
                )
            ),
        ]
    found = [t for t in candidates if t is not None]
    return min(found) if found else None
