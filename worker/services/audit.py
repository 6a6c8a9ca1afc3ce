"""The audit trail: one append-only row per thing that happened to a case, hash-chained."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from storage.auditchain import append


def audit(s: Session, at: datetime, kind: str, case_id: str | None, **detail: Any) -> None:
    """Record ``kind`` (e.g. ``attempt.sent``) for ``case_id`` at ``at``; ``detail`` holds ids,
    counts and reasons, never PHI. The event joins the hash chain after ``s`` commits
    (storage/auditchain.py)."""
    append(s, case_id, at, kind, detail)
