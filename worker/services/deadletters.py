"""Dead letters: messages dramatiq gave up on after every retry. Each one is recorded (ids and
the error's type, no message body, no PHI), its case is flagged for ops, and ops can retry it:
the command is rebuilt from the row and enqueued again.

The dramatiq middleware (``worker/actors.py``: ``DeadLetters``) calls :func:`record_dead_letter`
with the command only; the case is found from the command's entity id.
"""

from __future__ import annotations

from dataclasses import astuple
from enum import StrEnum
from typing import Any

import structlog
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from storage.db import transaction
from storage.models import Attempt, Case, DeadLetter, Delivery, RecordRequest
from worker.commands import (
    AssemblePacket,
    CancelAttempt,
    Command,
    DeliverPacket,
    OpenCase,
    PlanOutreach,
    PollTask,
    SendAttempt,
    command_named,
)
from worker.domain.clock import Clock
from worker.domain.watchdog import ATTENTION, Reason
from worker.services.audit import audit
from worker.services.mapping import flag_case

log = structlog.get_logger("goodfaith.deadletters")

#: Where each command's entity keeps its case id (commands not listed have no case yet).
_CASE_OF: dict[type, Any] = {
    OpenCase: Case.id,
    AssemblePacket: Case.id,
    PlanOutreach: RecordRequest.case_id,
    SendAttempt: Attempt.case_id,
    PollTask: Attempt.case_id,
    CancelAttempt: Attempt.case_id,
    DeliverPacket: Delivery.case_id,
}


class RetryOutcome(StrEnum):
    RETRIED = "retried"
    UNKNOWN = "unknown"
    ALREADY_RETRIED = "already_retried"


def _case_id(s: Session, cmd: Command) -> str | None:
    column = _CASE_OF.get(type(cmd))
    if column is None:
        return None
    key = column.class_.id
    value: str | None = s.scalar(select(column).where(key == astuple(cmd)[0]))
    return value


def record_dead_letter(
    cmd: Command,
    actor: str,
    message_id: str,
    error: str,
    retries: int,
    *,
    sessions: sessionmaker[Session],
    clock: Clock,
) -> str | None:
    """Record one dead-lettered message and flag its case; returns the row id (None when this
    message was already recorded: a redelivered failure)."""
    now = clock.now()
    with transaction(sessions) as s:
        if s.scalar(select(DeadLetter.id).where(DeadLetter.message_id == message_id)):
            return None
        case_id = _case_id(s, cmd)
        letter = DeadLetter(
            message_id=message_id,
            actor=actor,
            command=type(cmd).__name__,
            entity_id=str(astuple(cmd)[0]),
            case_id=case_id,
            error=error[:128],
            retries=retries,
            failed_at=now,
        )
        s.add(letter)
        s.flush()
        case = s.get(Case, case_id) if case_id else None
        if case is not None:
            flag_case(case, ATTENTION[Reason.DEAD_LETTER])
        detail = {"dead_letter_id": letter.id, "actor": actor, "error": letter.error}
        audit(s, now, "dead_letter.recorded", case_id, entity_id=letter.entity_id, **detail)
        log.error("dead_letter.recorded", case_id=case_id, **detail)
        return letter.id


def retry_dead_letter(
    letter_id: str, *, sessions: sessionmaker[Session], clock: Clock
) -> tuple[RetryOutcome, list[Command]]:
    """Mark a dead letter retried and return its command to enqueue again (audited). A letter
    is retried once: if the command fails again, that is a new dead letter."""
    now = clock.now()
    with transaction(sessions) as s:
        letter = s.get(DeadLetter, letter_id, with_for_update=True)
        if letter is None:
            return RetryOutcome.UNKNOWN, []
        if letter.retried_at is not None:
            return RetryOutcome.ALREADY_RETRIED, []
        cmd = command_named(letter.command, letter.entity_id)
        letter.retried_at = now
        detail = {"dead_letter_id": letter.id, "actor": letter.actor}
        audit(s, now, "dead_letter.retried", letter.case_id, entity_id=letter.entity_id, **detail)
        log.info("dead_letter.retried", case_id=letter.case_id, **detail)
        return RetryOutcome.RETRIED, [cmd]
