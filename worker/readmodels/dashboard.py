"""What ops watch: case counts by status, and the cases that need someone, by time left.

Counts are one aggregate query; the list is one bounded page (cases not yet delivered or
flagged for attention, earliest due first) with its open-request counts aggregated in SQL.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, or_, select

from storage.models import Case, RecordRequest
from worker.domain.lifecycle import CaseStatus, RequestStatus
from worker.domain.watchdog import deadline_reason
from worker.readmodels.report import iso
from worker.wiring import Container

#: Most rows one dashboard page lists.
MAX_PAGE = 500


def status_counts(c: Container) -> dict[str, int]:
    """How many cases are in each status (one aggregate query)."""
    with c.sessions() as s:
        rows = s.execute(select(Case.status, func.count()).group_by(Case.status))
        return {status: n for status, n in rows}


def _overdue(
    status: str, assemble_at: datetime, deliver_by: datetime, now: datetime, grace: timedelta
) -> str | None:
    """The deadline the case has missed (``not_assembled``, ``past_deliver_by``) or None."""
    reason = deadline_reason(CaseStatus(status), assemble_at, deliver_by, now, grace)
    return None if reason is None else reason.value


def dashboard(c: Container, *, limit: int = 100, offset: int = 0) -> dict[str, Any]:
    """Counts by status, and one page of the cases ops must watch: every case not yet
    delivered or cancelled, and any case flagged for attention, earliest due first. Each row
    says why ops must look (``attention``) and which deadline it has missed (``overdue``).

    ``limit`` is capped at :data:`MAX_PAGE`; ``total`` counts every such case."""
    now = c.clock.now()
    grace = timedelta(seconds=c.settings.watchdog_grace_s)
    limit = max(0, min(limit, MAX_PAGE))
    closed = [s.value for s in CaseStatus if s.closed]
    watched = or_(Case.status.not_in(closed), Case.attention.is_not(None))
    open_requests = (
        select(RecordRequest.case_id, func.count().label("n"))
        .where(RecordRequest.status == RequestStatus.OPEN)
        .group_by(RecordRequest.case_id)
        .subquery()
    )
    with c.sessions() as s:
        total = s.scalar(select(func.count()).select_from(Case).where(watched)) or 0
        rows = s.execute(
            select(
                Case.id,
                Case.notification_id,
                Case.review_type,
                Case.status,
                Case.due_at,
                Case.attention,
                Case.assemble_at,
                Case.deliver_by,
                func.coalesce(open_requests.c.n, 0),
            )
            .outerjoin(open_requests, open_requests.c.case_id == Case.id)
            .where(watched)
            .order_by(Case.due_at, Case.id)
            .limit(limit)
            .offset(max(0, offset))
        ).all()
        active = [
            {
                "case_id": case_id,
                "notification_id": notification_id,
                "review_type": review_type,
                "status": status,
                "due_at": iso(due_at),
                "hours_left": round((due_at - now).total_seconds() / 3600, 2),
                "requests_open": n,
                "attention": attention,
                "overdue": _overdue(status, assemble_at, deliver_by, now, grace),
            }
            for (
                case_id,
                notification_id,
                review_type,
                status,
                due_at,
                attention,
                assemble_at,
                deliver_by,
                n,
            ) in rows
        ]
    return {
        "now": now.isoformat(),
        "counts": status_counts(c),
        "total": total,
        "limit": limit,
        "offset": offset,
        "active": active,
    }
