"""Dead letters as ops read them: the open ones first (newest first), one bounded page."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from storage.models import DeadLetter
from worker.readmodels.report import iso
from worker.wiring import Container

#: Most rows one page lists.
MAX_PAGE = 500


def dead_letters(
    c: Container, *, include_retried: bool = False, limit: int = 100, offset: int = 0
) -> dict[str, Any]:
    """One page of dead letters (only those not yet retried, unless ``include_retried``);
    ``total`` counts every such row. ``limit`` is capped at :data:`MAX_PAGE`."""
    limit = max(0, min(limit, MAX_PAGE))
    where = [] if include_retried else [DeadLetter.retried_at.is_(None)]
    with c.sessions() as s:
        total = s.scalar(select(func.count()).select_from(DeadLetter).where(*where)) or 0
        rows = s.scalars(
            select(DeadLetter)
            .where(*where)
            .order_by(DeadLetter.retried_at.is_not(None), DeadLetter.failed_at.desc())
            .limit(limit)
            .offset(max(0, offset))
        ).all()
        items = [
            {
                "id": d.id,
                "actor": d.actor,
                "command": d.command,
                "entity_id": d.entity_id,
                "case_id": d.case_id,
                "error": d.error,
                "retries": d.retries,
                "failed_at": iso(d.failed_at),
                "retried_at": iso(d.retried_at),
            }
            for d in rows
        ]
    return {"total": total, "limit": limit, "offset": offset, "dead_letters": items}
