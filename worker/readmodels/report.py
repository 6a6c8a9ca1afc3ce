"""The run report: cases with their requests, attempts, documents and packets.

It is the contract ``goodfaith demo --json`` and ``simulate --json`` write and the body of
``GET /v1/cases/{id}``. Loads only the cases asked for and their own documents.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import selectinload

from storage.db import transaction
from storage.models import Attempt, Case, Document, RecordRequest
from worker.domain.lifecycle import CaseStatus, DocumentStatus
from worker.domain.notices import quarantined_reply, received_late, short_window
from worker.domain.outreach import DEFAULT_SETTINGS
from worker.domain.types import ReviewType
from worker.services.attestation import request_standard, request_windows
from worker.services.mapping import designee_name
from worker.wiring import Container


def iso(t: datetime | None) -> str | None:
    return t.isoformat() if t else None


def build_report(
    c: Container, case_id: str | None = None, notification_ids: Collection[str] | None = None
) -> dict[str, Any]:
    """Every case (or the one ``case_id`` names, or those of ``notification_ids``: one run's)
    with its requests, attempts, documents and packets, and a summary of on-time and late
    cases and attempts made."""
    now = c.clock.now()
    with transaction(c.sessions) as s:
        q = (
            select(Case)
            .options(
                selectinload(Case.requests).selectinload(RecordRequest.attempts),
                selectinload(Case.packets),
            )
            .order_by(Case.received_at, Case.notification_id)
        )
        if case_id:
            q = q.where(Case.id == case_id)
        if notification_ids is not None:
            q = q.where(Case.notification_id.in_(list(notification_ids)))
        cases = list(s.scalars(q))
        docs_q = select(Document).where(Document.request_id.is_not(None))
        if case_id:
            docs_q = docs_q.where(Document.case_id == case_id)
        elif notification_ids is not None:
            docs_q = docs_q.where(Document.case_id.in_([x.id for x in cases]))
        docs: dict[str, list[Document]] = {}
        for d in s.scalars(docs_q.order_by(Document.received_at)):
            docs.setdefault(d.request_id or "", []).append(d)
        out = [_case(c, case, docs) for case in cases]
    on_time = sum(1 for x in out if x["on_time"])
    late = sum(
        1
        for x, case in zip(out, cases, strict=True)
        if x["status"] == CaseStatus.LATE or (case.delivered_at is None and now > case.due_at)
    )
    attempts = sum(len(r["attempts"]) for x in out for r in x["requests"])
    flagged = sum(1 for x in out if x["warnings"])
    return {
        "cases": out,
        "summary": {
            "cases": len(out),
            "on_time": on_time,
            "late": late,
            "attempts": attempts,
            "cases_with_warnings": flagged,
        },
    }


def warnings(case: Case, docs: dict[str, list[Document]]) -> list[str]:
    """What would otherwise pass silently in ``case`` (worker/domain/notices.py), one line each:
    received too late for its window, a standard request with too few business windows, a
    reply that was quarantined."""
    out = []
    late = received_late(case.opened_at, case.assemble_at, case.due_at)
    if late:
        out.append(late)
    for r in case.requests:
        if late is None and case.review_type == ReviewType.STANDARD:
            short = short_window(r.provider_id, request_windows(r), DEFAULT_SETTINGS.min_attempts)
            if short:
                out.append(short)
        if any(d.status == DocumentStatus.QUARANTINED for d in docs.get(r.id, [])):
            out.append(quarantined_reply(r.provider_id))
    return out


def _request(r: RecordRequest, docs: dict[str, list[Document]]) -> dict[str, Any]:
    made, met = request_standard(r)
    return {
        "provider_id": r.provider_id,
        "status": r.status,
        "reference": r.reference,
        "designee": designee_name(r),
        "business_windows": request_windows(r),
        "attempts_before_cutoff": made,
        "standard_met": met,
        "attempts": [attempt_row(a) for a in r.attempts],
        "documents": [
            {
                "sha256": d.sha256,
                "pages": d.pages,
                "status": d.status,
                "reason": d.reason,
                "kind": d.kind,
                "flags": list(d.flags or []),
            }
            for d in docs.get(r.id, [])
        ],
    }


def _case(c: Container, case: Case, docs: dict[str, list[Document]]) -> dict[str, Any]:
    packet = case.packets[0] if case.packets else None
    status = CaseStatus(case.status)
    return {
        "case_id": case.id,
        "notification_id": case.notification_id,
        "jurisdiction": case.jurisdiction,
        "review_type": case.review_type,
        "received_at": iso(case.received_at),
        "due_at": iso(case.due_at),
        "assemble_at": iso(case.assemble_at),
        "delivered_at": iso(case.delivered_at),
        "on_time": case.delivered_at is not None and case.delivered_at <= case.due_at,
        "status": CaseStatus.OPEN.value if status.in_progress else status.value,
        "attention": case.attention,
        "packet": None
        if packet is None
        else {
            "uri": packet.uri,
            "local_path": _local(c, packet.uri),
            "manifest_uri": packet.manifest_uri,
            "pages": packet.pages,
            "sha256": packet.sha256,
        },
        "supplemental_packets": [
            {"uri": p.uri, "pages": p.pages, "sha256": p.sha256} for p in case.packets[1:]
        ],
        "requests": [_request(r, docs) for r in case.requests],
        "warnings": warnings(case, docs),
    }


def _local(c: Container, uri: str) -> str | None:
    path = c.store.local_path(uri)
    return str(path) if path else None


def attempt_row(a: Attempt) -> dict[str, Any]:
    """One attempt as the report shows it."""
    return {
        "number": a.number,
        "at": iso(a.sent_at or a.planned_at),
        "planned_at": iso(a.planned_at),
        "sent_at": iso(a.sent_at),
        "channel": a.channel,
        "destination": a.destination,
        "designee": a.designee,
        "reason": a.reason,
        "outcome": a.outcome,
        "transmissions": a.transmissions,
        "failure_reason": a.failure_reason,
        "external_id": a.external_id,
        "requested": a.requested,
    }
