"""The ops review queue: flagged documents (repaired, blank pages, cloned, possible wrong
patient) wait for a person, who releases or rejects each one; every decision is audited.

::

    intake flags a document (worker/services/quality.py) ──► review_status "pending"
    pending, before the assembly cutoff ──► the first packet waits (worker/services/packet.py)
    at the cutoff, still pending ──► sent, marked "unreviewed" in the index (the deadline first)
    release ──► "released": sent like any document (the index shows its flags, "released");
                the case assembles now when nothing else waits, or a supplemental packet
                follows when the first one is out
    reject  ──► "rejected": quarantined with the reviewer's note, never sent

Reviewer names and notes are ops text, never document content; audit details hold ids, flags
and the decision.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

import structlog
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from storage.db import transaction
from storage.models import Case, Document, RecordRequest
from worker.commands import AssemblePacket, Command
from worker.domain.clock import Clock
from worker.domain.lifecycle import REASON_CHARS, DocumentStatus, ready_to_assemble
from worker.services.audit import audit
from worker.services.mapping import case_status, request_status
from worker.services.quality import PENDING, REJECTED, RELEASED, flags_of

__all__ = ["Decision", "ReviewItem", "decide", "pending_reviews"]

log = structlog.get_logger("goodfaith.services")


class Decision(StrEnum):
    RELEASE = "release"
    REJECT = "reject"


class ReviewOutcome(StrEnum):
    DONE = "done"
    UNKNOWN = "unknown"  # no such document
    NOT_PENDING = "not_pending"  # nothing to decide: never flagged, or decided already


@dataclass(frozen=True)
class ReviewItem:
    """One document waiting for a person (no document text)."""

    document_id: str
    case_id: str | None
    provider_id: str | None
    received_at: datetime
    pages: int
    flags: list[str]
    qa: dict[str, Any]
    due_at: datetime | None
    assemble_at: datetime | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "document_id": self.document_id,
            "case_id": self.case_id,
            "provider_id": self.provider_id,
            "received_at": self.received_at.isoformat(),
            "pages": self.pages,
            "flags": self.flags,
            "findings": self.qa,
            "case_due_at": self.due_at.isoformat() if self.due_at else None,
            "sent_unreviewed_at": self.assemble_at.isoformat() if self.assemble_at else None,
        }


def pending_reviews(*, sessions: sessionmaker[Session]) -> list[ReviewItem]:
    """Every document waiting for review, the case due soonest first."""
    with transaction(sessions) as s:
        rows = s.execute(
            select(Document, Case, RecordRequest)
            .outerjoin(Case, Case.id == Document.case_id)
            .outerjoin(RecordRequest, RecordRequest.id == Document.request_id)
            .where(Document.review_status == PENDING)
            .order_by(Case.due_at, Document.received_at)
        ).all()
        return [
            ReviewItem(
                d.id,
                d.case_id,
                r.provider_id if r is not None else None,
                d.received_at,
                d.pages,
                flags_of(d),
                _findings(d.qa),
                case.due_at if case is not None else None,
                case.assemble_at if case is not None else None,
            )
            for d, case, r in rows
        ]


def _findings(qa: dict[str, Any] | None) -> dict[str, Any]:
    """What the checks found, without the per-page signatures (bulk, of no use to a person)."""
    return {k: v for k, v in (qa or {}).items() if k not in ("pages", "settings")}


def decide(
    document_id: str,
    decision: Decision,
    reviewer: str,
    note: str,
    *,
    sessions: sessionmaker[Session],
    clock: Clock,
) -> tuple[ReviewOutcome, list[Command]]:
    """Release or reject a pending document (audited ``document.released`` /
    ``document.rejected``); returns what to enqueue (the packet it may now go into)."""
    now = clock.now()
    with transaction(sessions) as s:
        d = s.get(Document, document_id, with_for_update=True)
        if d is None:
            return ReviewOutcome.UNKNOWN, []
        if d.review_status != PENDING:
            return ReviewOutcome.NOT_PENDING, []
        d.reviewed_at, d.reviewed_by = now, reviewer[:128]
        d.review_note = note[:256] or None
        detail = {"document_id": d.id, "flags": flags_of(d), "reviewer": reviewer[:128]}
        if decision is Decision.REJECT:
            d.review_status = REJECTED
            d.status = DocumentStatus.QUARANTINED.value
            d.reason = f"rejected in review: {note or 'no note'}"[:REASON_CHARS]
            audit(s, now, "document.rejected", d.case_id, **detail)
            log.info("document.rejected", case_id=d.case_id, document_id=d.id)
        else:
            d.review_status = RELEASED
            audit(s, now, "document.released", d.case_id, **detail)
            log.info("document.released", case_id=d.case_id, document_id=d.id)
        return ReviewOutcome.DONE, _next_packet(s, d.case_id, now)


def _next_packet(s: Session, case_id: str | None, now: datetime) -> list[Command]:
    """Assemble now when the decision was the last thing the case waited for: the first
    packet once every request is closed and nothing else is pending, or a supplemental one
    for released records after the first packet went out."""
    case = s.get(Case, case_id, with_for_update=True) if case_id else None
    if case is None:
        return []
    s.flush()
    waiting = s.scalar(
        select(Document.id).where(
            Document.case_id == case.id,
            Document.review_status == PENDING,
            Document.status == DocumentStatus.ACCEPTED,
        )
    )
    cs = case_status(case)
    unsent = s.scalar(
        select(Document.id).where(
            Document.case_id == case.id,
            Document.status == DocumentStatus.ACCEPTED,
            Document.packet_id.is_(None),
            Document.review_status == RELEASED,
        )
    )
    first = waiting is None and ready_to_assemble(cs, (request_status(r) for r in case.requests))
    if first or (cs.delivered and unsent is not None):
        case.next_action_at = now
        return [AssemblePacket(case.id)]
    return []
