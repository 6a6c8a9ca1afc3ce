"""Cases at risk of missing their deadline, for ``/metrics``: aggregate counts only.

The conditions are the SQL side of the watchdog's rules (``worker/domain/watchdog.py``); a case
may be at risk for several reasons at once and is counted under each.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import ColumnElement, and_, distinct, exists, func, or_, select

from storage.models import Case, DeadLetter, Delivery
from worker.domain.lifecycle import CaseStatus, DeliveryStatus
from worker.domain.watchdog import Reason
from worker.wiring import Container

_IN_PROGRESS = [s.value for s in CaseStatus if s.in_progress]
_UNASSEMBLED = [CaseStatus.OPEN.value, CaseStatus.ASSEMBLING.value]


def _delivery(status: DeliveryStatus, *, no_timer: bool = False) -> ColumnElement[bool]:
    clause = exists().where(Delivery.case_id == Case.id, Delivery.status == status.value)
    return clause.where(Delivery.next_action_at.is_(None)) if no_timer else clause


def risk_counts(c: Container) -> dict[str, int]:
    """``overdue``: cases in progress past a deadline (not assembled by ``assemble_at`` + grace,
    or not delivered by ``deliver_by``); ``at_risk``: cases by :class:`Reason`;
    ``dead_letters``: rows by state (open, retried)."""
    now = c.clock.now()
    cutoff = now - timedelta(seconds=c.settings.watchdog_grace_s)
    past_target = Case.deliver_by <= now
    unassembled = and_(Case.status.in_(_UNASSEMBLED), Case.assemble_at <= cutoff)
    reasons: dict[Reason, ColumnElement[bool]] = {
        Reason.NOT_ASSEMBLED: and_(unassembled, ~past_target),
        Reason.PAST_DELIVER_BY: past_target,
        Reason.TIMER_LOST: or_(
            and_(Case.status == CaseStatus.ASSEMBLING.value, Case.next_action_at.is_(None)),
            _delivery(DeliveryStatus.PENDING, no_timer=True),
        ),
        Reason.DELIVERY_FAILED: _delivery(DeliveryStatus.FAILED),
    }
    in_progress = Case.status.in_(_IN_PROGRESS)
    counts: dict[str, int] = {}
    with c.sessions() as s:
        columns = [func.count().filter(cond).label(r.value) for r, cond in reasons.items()]
        overdue = func.count().filter(or_(past_target, unassembled))
        row = s.execute(select(overdue, *columns).where(in_progress)).one()
        counts["overdue"] = row[0]
        for r, n in zip(reasons, row[1:], strict=True):
            counts[f"at_risk:{r.value}"] = n
        open_letters = DeadLetter.retried_at.is_(None)
        counts[f"at_risk:{Reason.DEAD_LETTER.value}"] = (
            s.scalar(select(func.count(distinct(DeadLetter.case_id))).where(open_letters)) or 0
        )
        letters = s.execute(
            select(func.count().filter(open_letters), func.count()).select_from(DeadLetter)
        ).one()
        counts["dead_letters:open"] = letters[0]
        counts["dead_letters:retried"] = letters[1] - letters[0]
    return counts


def metric_lines(c: Container) -> list[str]:
    """The deadline-guarantee gauges in Prometheus text format."""
    counts = risk_counts(c)
    lines = [
        "# HELP goodfaith_cases_overdue Cases in progress past assemble_at + grace or deliver_by.",
        "# TYPE goodfaith_cases_overdue gauge",
        f"goodfaith_cases_overdue {counts['overdue']}",
        "# HELP goodfaith_cases_at_risk Cases at risk of missing their deadline, by reason.",
        "# TYPE goodfaith_cases_at_risk gauge",
    ]
    lines += [
        f'goodfaith_cases_at_risk{{reason="{r.value}"}} {counts[f"at_risk:{r.value}"]}'
        for r in Reason
        if f"at_risk:{r.value}" in counts
    ]
    lines += [
        "# HELP goodfaith_dead_letters Messages dramatiq gave up on, by state.",
        "# TYPE goodfaith_dead_letters gauge",
        f'goodfaith_dead_letters{{state="open"}} {counts["dead_letters:open"]}',
        f'goodfaith_dead_letters{{state="retried"}} {counts["dead_letters:retried"]}',
    ]
    return lines
