"""The scheduler tick: enqueue whatever the database says is due.

Timers are columns. :data:`TIMERS` lists each one once — the column, the rows it applies to
and the command it starts — and both :func:`tick` and :func:`next_due` read that table, so a
new timer is one row there. A tick finds every row whose timer has passed, pushes the timer
ahead by a lease (so the next tick does not enqueue it again) and enqueues the command; the
handler then sets the real next time. A lost message is re-enqueued when its lease runs out,
so losing Redis loses no work. Restarts, Redis loss and virtual time are all the same path.
More than one scheduler may run at once (no single point of failure): a tick claims the due
rows it leases with ``SELECT ... FOR UPDATE SKIP LOCKED``, so two ticks never enqueue the
same timer (:func:`_due_rows`; the watchdog claims its cases the same way).
Due work goes out earliest deadline first: ordered by its case's ``deliver_by``, then by the
timer (work of no case, e.g. an inbound fax not yet matched, after work with a deadline).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    func,
    literal,
    literal_column,
    select,
    true,
    type_coerce,
    union_all,
)
from sqlalchemy.orm import InstrumentedAttribute

from storage.auditchain import chain_pending
from storage.db import transaction
from storage.models import (
    Attempt,
    Case,
    Delivery,
    InboundItem,
    RecordRequest,
    Sweep,
    UTCDateTime,
)
from worker.commands import (
    AssemblePacket,
    CancelAttempt,
    Command,
    DeliverPacket,
    IngestInbound,
    OpenCase,
    PlanOutreach,
    PollTask,
    ReconcileAttempt,
    SendAttempt,
    SweepInbound,
)
from worker.domain.lifecycle import (
    LEASE,
    TIMED_CASE_STATES,
    CaseStatus,
    DeliveryStatus,
    RequestStatus,
)
from worker.domain.types import AttemptOutcome
from worker.services import bulk
from worker.services.deps import call
from worker.services.opening import open_in_bulk
from worker.services.watchdog import watch
from worker.wiring import Container

BATCH = 500  # rows per timer per tick


@dataclass(frozen=True)
class Timer:
    """One timer column: rows of ``model`` where ``active`` holds are due at ``column``;
    ``case_id`` names the row's case (None: the row has none), whose deadline orders the tick."""

    name: str
    model: type[Any]
    column: InstrumentedAttribute[datetime | None]
    active: ColumnElement[bool]
    command: Callable[[str], Command]
    case_id: InstrumentedAttribute[str] | None = None
    #: ``active`` as alternatives that each match an index's leading columns: the timer's
    #: earliest instant is read per alternative (one index probe each) and the least taken.
    #: ``min(column) WHERE status IN (…)`` read every matching row (45 ms a tick with 100,000
    #: open campaign cases, against 0.2 ms for one probe per status).
    each: tuple[ColumnElement[bool], ...] = ()


TIMERS: tuple[Timer, ...] = (
    Timer(
        "opening",
        Case,
        Case.open_at,
        Case.status == CaseStatus.OPEN.value,
        OpenCase,
        Case.id,
    ),
    Timer(
        "outreach",
        RecordRequest,
        RecordRequest.next_action_at,
        RecordRequest.status == RequestStatus.OPEN,
        PlanOutreach,
        RecordRequest.case_id,
    ),
    Timer("redial", Attempt, Attempt.redial_at, true(), SendAttempt, Attempt.case_id),
    Timer("poll", Attempt, Attempt.poll_at, true(), PollTask, Attempt.case_id),
    Timer("cancel", Attempt, Attempt.cancel_at, true(), CancelAttempt, Attempt.case_id),
    Timer(
        "check",
        Attempt,
        Attempt.check_at,
        # written out, not a bound parameter: the planner matches it to the partial index
        # ix_attempts_check_sent (a generic plan's parameter matches no index predicate)
        Attempt.outcome == literal_column(f"'{AttemptOutcome.SENT.value}'"),
        ReconcileAttempt,
    ),
    Timer(
        "packet",
        Case,
        Case.next_action_at,
        Case.status.in_([s.value for s in TIMED_CASE_STATES]),
        AssemblePacket,
        Case.id,
        each=tuple(Case.status == s.value for s in TIMED_CASE_STATES),  # ix_cases_status_next
    ),
    Timer(
        "delivery",
        Delivery,
        Delivery.next_action_at,
        Delivery.status == DeliveryStatus.PENDING,
        DeliverPacket,
        Delivery.case_id,
    ),
    Timer("sweep", Sweep, Sweep.next_at, true(), SweepInbound),
    Timer(
        "inbound",
        InboundItem,
        InboundItem.next_action_at,
        InboundItem.processed_at.is_(None),
        IngestInbound,
    ),
)
#: the timer that opens cases (``open_at``): its rows with nothing to fetch open in the tick
OPENING = next(timer for timer in TIMERS if timer.name == "opening")


def tick(c: Container) -> list[Command]:
    """Enqueue every due command, earliest case deadline first across all timers (then the
    earliest timer); returns them in that order. Each timer takes at most :data:`BATCH` rows
    a tick, the most urgent ones. The watchdog runs first: it leases the timers it drives, so they are not enqueued twice.
    Audit events a race left pending are chained first (storage/auditchain.py)."""
    try:
        chain_pending(c.engine, wait=False)
    except Exception as exc:  # the audit trail waits; due work must not
        import structlog

        structlog.get_logger("goodfaith.scheduler").warning(
            "audit.chain_deferred", error=type(exc).__name__
        )
    driven = watchdog(c)
    now = c.clock.now()
    earliest = next_due_by_timer(c.engine)
    due = [timer for timer in TIMERS if (at := earliest.get(timer.name)) and at <= now]
    if not due:
        return driven  # the common case: two reads, no write transaction
    lease = now + LEASE
    ranked: list[tuple[datetime, datetime, int, Command]] = []
    with transaction(c.sessions) as s:
        for timer in due:  # only the timers with a due row: one claim query each
            rows = [(row, deadline, getattr(row, timer.column.key)) for row, deadline in
                    s.execute(_due_rows(timer, now))]  # fmt: skip
            # cases with nothing to fetch (a campaign's) open here, not one message each
            opened = (
                call(open_in_bulk, c, s, [r for r, *_ in rows], now) if timer is OPENING else {}
            )
            firsts: list[tuple[datetime, datetime, Command]] = []
            for row, deadline, due_at in rows:
                if row.id in opened:  # its requests' first plannings go in batches, below
                    firsts += [(deadline or _NO_DEADLINE, due_at, cmd) for cmd in opened[row.id]]
                    continue
                setattr(row, timer.column.key, lease)
                ranked.append(
                    (deadline or _NO_DEADLINE, due_at, len(ranked), timer.command(row.id))
                )
            for i in range(0, len(firsts), bulk.BATCH):  # each batch ranks as its most urgent
                chunk = firsts[i : i + bulk.BATCH]
                for cmd in bulk.batched(cmd for *_, cmd in chunk):
                    ranked.append((chunk[0][0], chunk[0][1], len(ranked), cmd))
    ranked.sort(key=lambda item: item[:3])
    cmds = [cmd for *_, cmd in ranked]
    c.dispatcher.enqueue(cmds)
    return driven + cmds


def watchdog(c: Container) -> list[Command]:
    """The watchdog pass: drive again every case whose next step is overdue, and flag it
    (rules: worker/domain/watchdog.py; query: worker/services/watchdog.py)."""
    cmds = call(watch, c)
    c.dispatcher.enqueue(cmds)
    return cmds


_NO_DEADLINE = datetime.max.replace(tzinfo=UTC)


def _due_rows(timer: Timer, now: datetime) -> Any:
    """Due rows of ``timer`` with their case's ``deliver_by``, most urgent first, claimed:
    ``FOR UPDATE SKIP LOCKED`` of the timer's own rows, so a second scheduler (or the same
    one's next tick) passes over rows another tick is leasing, and re-reads any it waited for
    (PostgreSQL; SQLite runs one write transaction at a time and ignores the clause)."""
    if timer.case_id is None:
        return (
            select(timer.model, literal(None, UTCDateTime()))
            .where(timer.active, timer.column <= now)
            .order_by(timer.column)
            .limit(BATCH)
            .with_for_update(skip_locked=True, of=timer.model)
        )
    stmt = select(timer.model, Case.deliver_by).where(timer.active, timer.column <= now)
    if timer.model is not Case:
        stmt = stmt.join(Case, Case.id == timer.case_id)
    return (
        stmt.order_by(Case.deliver_by, timer.column)
        .limit(BATCH)
        .with_for_update(skip_locked=True, of=timer.model)
    )


def _next_due_statement() -> Any:
    branches = [
        select(literal(timer.name).label("timer"), func.min(timer.column).label("t")).where(active)
        for timer in TIMERS
        for active in timer.each or (timer.active,)
    ]
    timers = union_all(*branches).subquery()
    return select(timers.c.timer, type_coerce(timers.c.t, UTCDateTime()))


_NEXT_DUE: Any = None


def next_due(c: Container) -> datetime | None:
    """The earliest timer in the database, or None when nothing is scheduled (one query).

    Called every scheduler tick and every simulation step: the statement is built once."""
    return next_due_at(c.engine)


def next_due_at(engine: Any) -> datetime | None:
    """:func:`next_due` on a bare SQLAlchemy engine (drivers that hold no container)."""
    return min(next_due_by_timer(engine).values(), default=None)


def next_due_by_timer(engine: Any) -> dict[str, datetime]:
    """Each timer's earliest instant (timers with none scheduled left out), in one query: a
    tick claims rows only of the timers that have some due."""
    global _NEXT_DUE
    if _NEXT_DUE is None:
        _NEXT_DUE = _next_due_statement()
    with engine.connect() as conn:
        rows = conn.execute(_NEXT_DUE).all()
    earliest: dict[str, datetime] = {}
    for name, at in rows:  # a timer read in parts (``Timer.each``) has a row per part
        if at is not None and (str(name) not in earliest or at < earliest[str(name)]):
            earliest[str(name)] = at
    return earliest


#: Redis key the scheduler process writes after every tick: ``{"tick_at": <the clock's instant
#: when the tick began, ISO-8601>, "wall": <Unix seconds when it ended>}``. Ops (and
#: ``bench/chaos.py``) read it to see that the scheduler is alive and how far it has ticked.
HEARTBEAT_KEY = "goodfaith:scheduler:heartbeat"


def run_loop(
    c: Container,
    interval_s: float,
    *,
    beat: Callable[[datetime], None] | None = None,
    once: bool = False,
    sleep: Callable[[float], None] | None = None,
) -> None:
    """Tick every ``interval_s`` seconds (wall time) until stopped.

    A tick that fails — PostgreSQL connections dropped, Redis restarting — is logged and the
    next one runs on time: the leases it took are re-driven when they end, so nothing is lost
    and the scheduler never dies of a passing fault. ``beat(instant)`` runs after each tick
    that succeeded (the heartbeat); its own failure is logged too."""
    import time

    import structlog

    log = structlog.get_logger("goodfaith.scheduler")
    pause = sleep or time.sleep
    while True:
        began = c.clock.now()
        try:
            n = len(tick(c))
        except Exception as exc:
            log.warning("scheduler.tick_failed", error=type(exc).__name__)
        else:
            if n:
                log.info("scheduler.tick", enqueued=n)
            if beat is not None:
                try:
                    beat(began)
                except Exception as exc:
                    log.warning("scheduler.heartbeat_failed", error=type(exc).__name__)
        if once:
            return
        pause(interval_s)
