"""``/metrics``: Prometheus text exposition (format 0.0.4), every name ``goodfaith_*``.

Every figure is an aggregate query (counts and sums in SQL, histogram buckets as filtered
counts): nothing loads rows. Families::

    goodfaith_cases{status}                         gauge
    goodfaith_attempts{channel,outcome}             gauge
    goodfaith_documents{status}                     gauge (quarantined documents)
    goodfaith_cases_delivered{timeliness}           gauge (on_time | late)
    goodfaith_intake_to_first_attempt_seconds       histogram (case stored → first attempt sent)
    goodfaith_deadline_margin_at_delivery_seconds   histogram (due_at − delivered_at; < 0 late)
    goodfaith_timers_overdue{timer}                 gauge (due over 5 min ago, not picked up)
    goodfaith_cases_overdue, goodfaith_cases_at_risk{reason}, goodfaith_dead_letters{state}
                                                    gauges (worker/readmodels/risk.py)
    goodfaith_broker_up, goodfaith_queue_depth{queue}, goodfaith_queue_delayed{queue},
    goodfaith_queue_dead_letters{queue}, goodfaith_queue_oldest_message_age_seconds{queue},
    goodfaith_workers_alive                         gauges, when the broker is reachable
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import timedelta
from typing import Any

from sqlalchemy import func, select

from storage.models import Attempt, Case, Document
from worker.readmodels.dashboard import status_counts
from worker.readmodels.queues import QueueHealth
from worker.readmodels.risk import metric_lines as risk_lines
from worker.wiring import Container

__all__ = ["LATENCY_BUCKETS", "MARGIN_BUCKETS", "OVERDUE_AFTER", "render_metrics"]

#: seconds from a case stored to its first attempt sent
LATENCY_BUCKETS = (1, 5, 15, 60, 300, 900, 3600, 14_400, 86_400)
#: seconds of the deadline left at delivery (negative: delivered late)
MARGIN_BUCKETS = (-86_400, -3600, 0, 3600, 4 * 3600, 12 * 3600, 86_400, 2 * 86_400, 4 * 86_400)
#: a timer due longer ago than this and not yet picked up means the scheduler is behind
OVERDUE_AFTER = timedelta(minutes=5)


def _label(value: object) -> str:
    return str(value).replace("\\", r"\\").replace('"', r"\"").replace("\n", r"\n")


def _family(name: str, kind: str, help_text: str) -> list[str]:
    return [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]


def _gauge(
    name: str, help_text: str, samples: Iterable[tuple[dict[str, object], float]]
) -> list[str]:
    lines = _family(name, "gauge", help_text)
    for labels, value in samples:
        inner = ",".join(f'{k}="{_label(v)}"' for k, v in labels.items())
        lines.append(f"{name}{{{inner}}} {_num(value)}" if inner else f"{name} {_num(value)}")
    return lines


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _seconds(c: Container, later: Any, earlier: Any) -> Any:
    """``later − earlier`` in seconds, as a SQL expression (PostgreSQL or SQLite)."""
    if c.engine.dialect.name == "postgresql":
        return func.extract("epoch", later - earlier)
    return (func.julianday(later) - func.julianday(earlier)) * 86_400.0


def _histogram(
    c: Container, s: Any, name: str, help_text: str, value: Any, source: Any, buckets: Sequence[int]
) -> list[str]:
    """One histogram of ``value`` over the rows of ``source`` (a subquery), one query."""
    columns = [func.count().filter(value <= b) for b in buckets]
    row = s.execute(
        select(func.count(), func.coalesce(func.sum(value), 0.0), *columns).select_from(source)
    ).one()
    total, total_sum, counts = int(row[0]), float(row[1]), row[2:]
    lines = _family(name, "histogram", help_text)
    for b, n in zip(buckets, counts, strict=True):
        lines.append(f'{name}_bucket{{le="{b}"}} {int(n)}')
    lines.append(f'{name}_bucket{{le="+Inf"}} {total}')
    lines.append(f"{name}_sum {_num(round(total_sum, 3))}")
    lines.append(f"{name}_count {total}")
    return lines


def _database_lines(c: Container) -> list[str]:
    from worker.scheduler import TIMERS  # the scheduler's one table of timer columns

    now = c.clock.now()
    lines: list[str] = []
    counts = status_counts(c)
    lines += _gauge(
        "goodfaith_cases",
        "Cases by status.",
        (({"status": k}, v) for k, v in sorted(counts.items())),
    )
    with c.sessions() as s:
        rows = s.execute(
            select(Attempt.channel, Attempt.outcome, func.count())
            .group_by(Attempt.channel, Attempt.outcome)
            .order_by(Attempt.channel, Attempt.outcome)
        ).all()
        lines += _gauge(
            "goodfaith_attempts",
            "Documented attempts by channel and outcome.",
            (({"channel": ch, "outcome": out}, n) for ch, out, n in rows),
        )
        docs = s.execute(
            select(Document.status, func.count())
            .group_by(Document.status)
            .order_by(Document.status)
        ).all()
        lines += _gauge(
            "goodfaith_documents",
            "Received documents by status (quarantined: refused by the checks, flagged for ops).",
            (({"status": st}, n) for st, n in docs),
        )
        delivered = s.execute(
            select(
                func.count().filter(Case.delivered_at <= Case.due_at),
                func.count().filter(Case.delivered_at > Case.due_at),
            ).where(Case.delivered_at.is_not(None))
        ).one()
        lines += _gauge(
            "goodfaith_cases_delivered",
            "Cases delivered to the agency, on time (by due_at) or late.",
            [({"timeliness": "on_time"}, delivered[0]), ({"timeliness": "late"}, delivered[1])],
        )
        first = (
            select(Case.created_at.label("stored"), func.min(Attempt.sent_at).label("sent"))
            .join(Attempt, Attempt.case_id == Case.id)
            .where(Attempt.sent_at.is_not(None))
            .group_by(Case.id, Case.created_at)
            .subquery()
        )
        lines += _histogram(
            c,
            s,
            "goodfaith_intake_to_first_attempt_seconds",
            "Seconds from a case stored at intake to its first attempt sent.",
            _seconds(c, first.c.sent, first.c.stored),
            first,
            LATENCY_BUCKETS,
        )
        margins = (
            select(Case.due_at.label("due"), Case.delivered_at.label("delivered"))
            .where(Case.delivered_at.is_not(None))
            .subquery()
        )
        lines += _histogram(
            c,
            s,
            "goodfaith_deadline_margin_at_delivery_seconds",
            "Seconds of the legal deadline left when the packet was delivered (negative: late).",
            _seconds(c, margins.c.due, margins.c.delivered),
            margins,
            MARGIN_BUCKETS,
        )
        stale = now - OVERDUE_AFTER
        overdue: list[tuple[dict[str, object], float]] = []
        for timer in TIMERS:
            n = s.scalar(
                select(func.count())
                .select_from(timer.model)
                .where(timer.active, timer.column <= stale)
            )
            overdue.append(({"timer": timer.name}, n or 0))
        lines += _gauge(
            "goodfaith_timers_overdue",
            "Timers due more than 5 minutes ago and not yet picked up (the scheduler is behind).",
            overdue,
        )
    return lines


def _queue_lines(health: QueueHealth | None) -> list[str]:
    lines = _gauge(
        "goodfaith_broker_up",
        "1 when the broker (Redis or RabbitMQ) answered.",
        [({}, 0 if health is None else 1)],
    )
    if health is None:
        return lines
    q = health.queues
    lines += _gauge(
        "goodfaith_queue_depth",
        "Messages waiting per queue.",
        (({"queue": x.queue}, x.depth) for x in q),
    )
    lines += _gauge(
        "goodfaith_queue_delayed",
        "Delayed messages (transport retries) per queue.",
        (({"queue": x.queue}, x.delayed) for x in q),
    )
    lines += _gauge(
        "goodfaith_queue_dead_letters",
        "Messages in dramatiq's dead-letter set per queue.",
        (({"queue": x.queue}, x.dead) for x in q),
    )
    if health.ages_known:  # RabbitMQ cannot tell without taking the message
        lines += _gauge(
            "goodfaith_queue_oldest_message_age_seconds",
            "Age of the oldest waiting message per queue (0 when empty).",
            (({"queue": x.queue}, round(x.oldest_age_s or 0.0, 3)) for x in q),
        )
    lines += _gauge(
        "goodfaith_workers_alive",
        "Redis: dramatiq broker connections (worker processes, and processes that enqueue) "
        "with a heartbeat in the last 60 s; RabbitMQ: the most consumers of one lane queue.",
        [({}, health.workers_alive)],
    )
    return lines


def render_metrics(c: Container, queues: Callable[[], QueueHealth | None] | None = None) -> str:
    """The whole exposition; ``queues`` reads queue health (None when there is no broker to
    read, e.g. in tests; a failing read is ``goodfaith_broker_up 0``)."""
    lines = _database_lines(c) + risk_lines(c)
    if queues is not None:
        try:
            health = queues()
        except Exception:  # the broker is down: say so, keep the database's figures
            health = None
        lines += _queue_lines(health)
    return "\n".join(lines) + "\n"
