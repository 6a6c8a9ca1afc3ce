"""The watchdog's rules: which cases are overdue for their next step, and what to do about it.
Pure: the scheduler's watchdog pass (``worker/services/watchdog.py``) loads a
:class:`CaseWatch` per candidate case, asks :func:`assess`, and applies the :class:`Verdict`.

Nothing may stall a case silently. A lost message, a dead-lettered step or a crashed worker
leaves the database saying what the case needs next; the watchdog reads that and drives the
step again (idempotent handlers make a second run harmless), and flags the case for ops.

=========== ============================================= ===================================
status      overdue when (first match)                    verdict (step, reason → action)
=========== ============================================= ===================================
open        now ≥ deliver_by                              assemble, past_deliver_by → assemble
            now ≥ assemble_at + grace                     assemble, not_assembled → assemble
assembling  no case timer                                 assemble, timer_lost → assemble
            now ≥ deliver_by                              assemble, past_deliver_by → assemble
            now ≥ assemble_at + grace                     assemble, not_assembled → assemble
delivering  pending delivery without a timer              deliver, timer_lost → deliver
            pending delivery, now ≥ deliver_by            deliver, past_deliver_by → deliver
            no pending delivery, one failed               deliver, delivery_failed → flag
            no delivery at all                            deliver, delivery_missing → flag
=========== ============================================= ===================================

Delivered, late and cancelled cases are never overdue; a supplemental packet's pending
delivery that has lost its timer is driven again by the watchdog pass all the same (a pending
delivery always has a timer).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from worker.domain.lifecycle import REASON_CHARS, CaseStatus, DeliveryStatus


class Step(StrEnum):
    ASSEMBLE = "assemble"
    DELIVER = "deliver"


class Reason(StrEnum):
    """Why a case is at risk. The first five come from :func:`assess`; ``dead_letter`` is
    recorded by the dead-letter middleware. Metric label values (``goodfaith_cases_at_risk``)."""

    NOT_ASSEMBLED = "not_assembled"  # open or assembling past assemble_at + grace
    PAST_DELIVER_BY = "past_deliver_by"  # not delivered by the internal delivery target
    TIMER_LOST = "timer_lost"  # assembling / pending delivery with no timer: nothing would run
    DELIVERY_FAILED = "delivery_failed"  # the agency refused the packet (permanent error)
    DELIVERY_MISSING = "delivery_missing"  # delivering, but no delivery row to drive
    DEAD_LETTER = "dead_letter"  # a message for the case exhausted its retries


class Action(StrEnum):
    ASSEMBLE = "assemble"  # enqueue AssemblePacket(case)
    DELIVER = "deliver"  # enqueue DeliverPacket(pending delivery)
    FLAG = "flag"  # nothing can be driven: a person must act


#: What ops read in ``Case.attention`` (short; no PHI: ids and states only).
ATTENTION: dict[Reason, str] = {
    Reason.NOT_ASSEMBLED: "packet not assembled by the assembly cutoff: watchdog re-driving",
    Reason.PAST_DELIVER_BY: "delivery target missed: packet not delivered by deliver_by",
    Reason.TIMER_LOST: "case stalled without a timer: watchdog re-driving",
    Reason.DELIVERY_FAILED: "delivery to the agency failed permanently: deliver by hand",
    Reason.DELIVERY_MISSING: "packet delivering but no delivery queued: check the case",
    Reason.DEAD_LETTER: "a step failed after every retry: see dead letters",
}


@dataclass(frozen=True)
class CaseWatch:
    """What the watchdog knows about one case (loaded from the database)."""

    status: CaseStatus
    assemble_at: datetime
    deliver_by: datetime
    timer: datetime | None  # Case.next_action_at
    #: the case's latest delivery: its status and timer, or None when there is none
    delivery: DeliveryStatus | None = None
    delivery_timer: datetime | None = None


@dataclass(frozen=True)
class Verdict:
    step: Step
    reason: Reason
    action: Action

    @property
    def attention(self) -> str:
        return ATTENTION[self.reason]

    @property
    def drives(self) -> bool:
        """The verdict enqueues a command (otherwise only a person can move the case)."""
        return self.action is not Action.FLAG


def deadline_reason(
    status: CaseStatus,
    assemble_at: datetime,
    deliver_by: datetime,
    now: datetime,
    grace: timedelta,
) -> Reason | None:
    """The deadline a case in progress has missed, if any (timers aside): past ``deliver_by``
    first, then not assembled ``grace`` after ``assemble_at``."""
    if status.closed:
        return None
    if now >= deliver_by:
        return Reason.PAST_DELIVER_BY
    if status in (CaseStatus.OPEN, CaseStatus.ASSEMBLING) and now >= assemble_at + grace:
        return Reason.NOT_ASSEMBLED
    return None


def assess(w: CaseWatch, now: datetime, grace: timedelta) -> Verdict | None:
    """Whether the case's next step is overdue, why, and what drives it again (None: on track).

    ``grace`` is how long after ``assemble_at`` the assembly may still be under way (the
    cutoff timer's own retries and lease) before the watchdog steps in."""
    if w.status.closed:
        return None
    late = deadline_reason(w.status, w.assemble_at, w.deliver_by, now, grace)
    if w.status is CaseStatus.DELIVERING:
        return _delivering(w, late)
    if w.status is CaseStatus.ASSEMBLING and w.timer is None:
        return Verdict(Step.ASSEMBLE, Reason.TIMER_LOST, Action.ASSEMBLE)
    if late is not None:
        return Verdict(Step.ASSEMBLE, late, Action.ASSEMBLE)
    return None


def _delivering(w: CaseWatch, late: Reason | None) -> Verdict | None:
    if w.delivery is DeliveryStatus.PENDING:
        if w.delivery_timer is None:
            return Verdict(Step.DELIVER, Reason.TIMER_LOST, Action.DELIVER)
        if late is not None:
            return Verdict(Step.DELIVER, late, Action.DELIVER)
        return None
    if w.delivery is DeliveryStatus.FAILED:
        return Verdict(Step.DELIVER, Reason.DELIVERY_FAILED, Action.FLAG)
    if w.delivery is None:
        return Verdict(Step.DELIVER, Reason.DELIVERY_MISSING, Action.FLAG)
    return None  # delivered: the case status catches up in the same transaction


def flag(current: str | None, text: str, limit: int = REASON_CHARS) -> str | None:
    """``Case.attention`` once ``text`` is added: the reasons already there stay first (clipped
    to ``limit`` characters); None when ``text`` is already there (nothing to change)."""
    if current and text in current:
        return None
    new = (f"{current}; {text}" if current else text)[:limit]
    return None if new == current else new  # full: the audit trail keeps the rest


def unflag(current: str | None, prefix: str) -> str | None:
    """``Case.attention`` once the reasons starting with ``prefix`` are resolved: the others
    stay, in order (None: nothing left to flag)."""
    kept = [r for r in (current or "").split("; ") if r and not r.startswith(prefix)]
    return "; ".join(kept) or None
