"""What ops watch: case counts by status, and the cases that need someone, by time left.

Counts are one aggregate query; the list is one bounded page (cases not yet delivered or
flagged for attention, earliest due first) with its open-request counts aggregated in SQL.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import ColumnElement, func, or_, select, true

from storage.models import Attempt, AuditEvent, Case, Document, Packet, RecordRequest
from worker.domain.lifecycle import CaseStatus, RequestStatus
from worker.domain.types import AttemptOutcome
from worker.domain.watchdog import deadline_reason
from worker.readmodels.report import iso
from worker.wiring import Container

#: Most rows one dashboard page lists.
MAX_PAGE = 500


#: Which cases a list shows: external reviews (the default: what ops watch against legal
#: deadlines), campaign requests (bulk record retrieval), or both.
CaseKind = Literal["review", "campaign", "all"]
CASE_KINDS: tuple[CaseKind, ...] = ("review", "campaign", "all")


def of_kind(kind: CaseKind) -> ColumnElement[bool]:
    """The cases of ``kind``: a campaign's cases carry its id, a review's none."""
    if kind == "review":
        return Case.campaign_id.is_(None)
    if kind == "campaign":
        return Case.campaign_id.is_not(None)
    if kind == "all":
        return true()
    raise ValueError(f"unknown case kind {kind!r}: one of {', '.join(CASE_KINDS)}")


def status_counts(c: Container, kind: CaseKind = "all") -> dict[str, int]:
    """How many cases of ``kind`` are in each status (one aggregate query)."""
    with c.sessions() as s:
        rows = s.execute(
            select(Case.status, func.count()).where(of_kind(kind)).group_by(Case.status)
        )
        return {status: n for status, n in rows}


def _overdue(
    status: str, assemble_at: datetime, deliver_by: datetime, now: datetime, grace: timedelta
) -> str | None:
    """The deadline the case has missed (``not_assembled``, ``past_deliver_by``) or None."""
    reason = deadline_reason(CaseStatus(status), assemble_at, deliver_by, now, grace)
    return None if reason is None else reason.value


#: A case with records still missing is at risk once less than this share of its window
#: (received → due) is left.
LITTLE_LEFT = 0.25


def at_risk(
    *,
    requests_open: int,
    due_at: datetime,
    received_at: datetime,
    now: datetime,
    overdue: str | None,
    failed_attempts: int,
    quarantined: int,
    attention: str | None,
) -> list[str]:
    """Why a case is at risk, most urgent first: ``overdue`` (a step past its deadline),
    ``records_missing`` (requests open with less than :data:`LITTLE_LEFT` of the window
    left), ``failed_attempts``, ``flagged_documents`` (quarantined), ``attention`` (flagged
    for ops). Empty when it is not."""
    marks = []
    if overdue:
        marks.append("overdue")
    window = (due_at - received_at).total_seconds()
    if requests_open and window > 0 and (due_at - now).total_seconds() < LITTLE_LEFT * window:
        marks.append("records_missing")
    if failed_attempts:
        marks.append("failed_attempts")
    if quarantined:
        marks.append("flagged_documents")
    if attention:
        marks.append("attention")
    return marks


def dashboard(
    c: Container,
    *,
    limit: int = 100,
    offset: int = 0,
    status: str | None = None,
    review_type: str | None = None,
    agency_id: str | None = None,
    kind: CaseKind = "review",
) -> dict[str, Any]:
    """Counts by status, and one page of the cases ops must watch: every case not yet
    delivered or cancelled, and any case flagged for attention, earliest due first (by time
    left). Each row says why ops must look (``attention``), which deadline it has missed
    (``overdue``) and its at-risk marks (:func:`at_risk`). ``status``, ``review_type`` and
    ``agency_id`` narrow the list.

    ``kind``: external reviews only by default (``review``): a campaign's thousands of
    requests would otherwise bury the reviews with legal deadlines; ``campaign`` lists the
    campaigns' cases, ``all`` both. The counts follow ``kind`` too.

    ``limit`` is capped at :data:`MAX_PAGE`; ``total`` counts every such case."""
    now = c.clock.now()
    grace = timedelta(seconds=c.settings.watchdog_grace_s)
    limit = max(0, min(limit, MAX_PAGE))
    closed = [s.value for s in CaseStatus if s.closed]
    watched = or_(Case.status.not_in(closed), Case.attention.is_not(None)) & of_kind(kind)
    if status:
        watched = watched & (Case.status == status)
    if review_type:
        watched = watched & (Case.review_type == review_type)
    if agency_id:
        watched = watched & (Case.agency_id == agency_id)
    open_requests = (
        select(RecordRequest.case_id, func.count().label("n"))
        .where(RecordRequest.status == RequestStatus.OPEN)
        .group_by(RecordRequest.case_id)
        .subquery()
    )
    failed = (
        select(Attempt.case_id, func.count().label("n"))
        .where(Attempt.outcome == AttemptOutcome.FAILED.value)
        .group_by(Attempt.case_id)
        .subquery()
    )
    quarantined = (
        select(Document.case_id, func.count().label("n"))
        .where(Document.status == "quarantined")
        .group_by(Document.case_id)
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
                Case.received_at,
                Case.agency_id,
                Case.campaign_id,
                func.coalesce(failed.c.n, 0),
                func.coalesce(quarantined.c.n, 0),
            )
            .outerjoin(open_requests, open_requests.c.case_id == Case.id)
            .outerjoin(failed, failed.c.case_id == Case.id)
            .outerjoin(quarantined, quarantined.c.case_id == Case.id)
            .where(watched)
            .order_by(Case.due_at, Case.id)
            .limit(limit)
            .offset(max(0, offset))
        ).all()
        active = []
        for row in rows:
            (case_id, nid, review, st, due_at, attention, assemble_at, deliver_by, n) = row[:9]
            received_at, agency, campaign_id, n_failed, n_quarantined = row[9:]
            overdue = _overdue(st, assemble_at, deliver_by, now, grace)
            active.append(
                {
                    "case_id": case_id,
                    "notification_id": nid,
                    "kind": "review" if campaign_id is None else "campaign",
                    "campaign_id": campaign_id,
                    "review_type": review,
                    "agency_id": agency,
                    "status": st,
                    "received_at": iso(received_at),
                    "due_at": iso(due_at),
                    "hours_left": round((due_at - now).total_seconds() / 3600, 2),
                    "requests_open": n,
                    "failed_attempts": n_failed,
                    "quarantined_documents": n_quarantined,
                    "attention": attention,
                    "overdue": overdue,
                    "at_risk": at_risk(
                        requests_open=n,
                        due_at=due_at,
                        received_at=received_at,
                        now=now,
                        overdue=overdue,
                        failed_attempts=n_failed,
                        quarantined=n_quarantined,
                        attention=attention,
                    ),
                }
            )
    return {
        "now": now.isoformat(),
        "counts": status_counts(c, kind),
        "kind": kind,
        "total": total,
        "limit": limit,
        "offset": offset,
        "active": active,
    }


def timeline(c: Container, case_id: str) -> dict[str, Any] | None:
    """One case's audit trail in order (``at``, ``kind``, ``detail``: ids and reasons, no
    PHI) and the index of each of its packets (from the manifest: parts with their page
    ranges, excluded parts); None when there is no such case."""
    with c.sessions() as s:
        if s.get(Case, case_id) is None:
            return None
        events = [
            {"seq": e.seq, "at": iso(e.at), "kind": e.kind, "detail": e.detail}
            for e in s.scalars(
                select(AuditEvent)
                .where(AuditEvent.case_id == case_id)
                .order_by(AuditEvent.seq, AuditEvent.id)
            )
        ]
        packets = list(
            s.execute(
                select(Packet.sequence, Packet.pages, Packet.sha256, Packet.manifest_uri)
                .where(Packet.case_id == case_id)
                .order_by(Packet.sequence)
            )
        )
    index = []
    for sequence, pages, sha256, manifest_uri in packets:
        try:
            manifest = json.loads(c.store.get(manifest_uri))
        except Exception:  # a manifest that cannot be read is named, not fatal to the page
            manifest = {"parts": [], "excluded": [], "error": "manifest could not be read"}
        index.append(
            {
                "sequence": sequence,
                "pages": pages,
                "sha256": sha256,
                "parts": [
                    {
                        k: p.get(k)
                        for k in ("kind", "title", "provider_id", "first_page", "last_page")
                    }
                    for p in manifest.get("parts", [])
                ],
                "excluded": manifest.get("excluded", []),
                "error": manifest.get("error"),
            }
        )
    return {"case_id": case_id, "events": events, "packets": index}
