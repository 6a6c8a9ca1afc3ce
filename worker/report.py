"""Read models: the run report (the contract ``demo --json`` and ``simulate --json`` write),
the ops dashboard rows and the compliance attempt-log export."""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import selectinload

from storage.db import transaction
from storage.models import Attempt, Case, Document, RecordRequest
from worker.wiring import Container


def _iso(t: datetime | None) -> str | None:
    return t.isoformat() if t else None


def build_report(c: Container, case_id: str | None = None) -> dict[str, Any]:
    """Every case with its requests, attempts, documents and first packet."""
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
        cases = list(s.scalars(q))
        docs: dict[str, list[Document]] = {}
        for d in s.scalars(select(Document).where(Document.request_id.is_not(None))):
            docs.setdefault(d.request_id or "", []).append(d)
        out = []
        total_attempts = on_time = late = 0
        for case in cases:
            packet = case.packets[0] if case.packets else None
            on = case.delivered_at is not None and case.delivered_at <= case.due_at
            status = case.status
            if status in ("assembling", "delivering", "open"):
                status = "open"
            on_time += int(on)
            late += int(
                status == "late" or (case.delivered_at is None and c.clock.now() > case.due_at)
            )
            requests = []
            for r in case.requests:
                total_attempts += len(r.attempts)
                requests.append(
                    {
                        "provider_id": r.provider_id,
                        "status": r.status,
                        "reference": r.reference,
                        "attempts": [attempt_row(a) for a in r.attempts],
                        "documents": [
                            {
                                "sha256": d.sha256,
                                "pages": d.pages,
                                "status": d.status,
                                "reason": d.reason,
                                "kind": d.kind,
                            }
                            for d in sorted(docs.get(r.id, []), key=lambda d: d.received_at)
                        ],
                    }
                )
            out.append(
                {
                    "case_id": case.id,
                    "notification_id": case.notification_id,
                    "jurisdiction": case.jurisdiction,
                    "review_type": case.review_type,
                    "received_at": _iso(case.received_at),
                    "due_at": _iso(case.due_at),
                    "assemble_at": _iso(case.assemble_at),
                    "delivered_at": _iso(case.delivered_at),
                    "on_time": on,
                    "status": status,
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
                        {"uri": p.uri, "pages": p.pages, "sha256": p.sha256}
                        for p in case.packets[1:]
                    ],
                    "requests": requests,
                }
            )
    return {
        "cases": out,
        "summary": {
            "cases": len(out),
            "on_time": on_time,
            "late": late,
            "attempts": total_attempts,
        },
    }


def _local(c: Container, uri: str) -> str | None:
    path = c.store.local_path(uri)
    return str(path) if path else None


def attempt_row(a: Attempt) -> dict[str, Any]:
    return {
        "number": a.number,
        "at": _iso(a.sent_at or a.planned_at),
        "planned_at": _iso(a.planned_at),
        "sent_at": _iso(a.sent_at),
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


EXPORT_FIELDS = [
    "case_id",
    "notification_id",
    "provider_id",
    "provider_name",
    "request_reference",
    "attempt_number",
    "reason",
    "planned_at",
    "sent_at",
    "completed_at",
    "channel",
    "destination",
    "designee",
    "requested",
    "outcome",
    "failure_reason",
    "transmissions",
    "external_id",
]


def export_attempts(c: Container, case_id: str | None = None) -> list[dict[str, Any]]:
    """The attempt log for compliance: one row per documented attempt, oldest first."""
    with transaction(c.sessions) as s:
        q = (
            select(Attempt, RecordRequest, Case)
            .join(RecordRequest, Attempt.request_id == RecordRequest.id)
            .join(Case, Attempt.case_id == Case.id)
            .order_by(
                Case.received_at, Case.notification_id, RecordRequest.position, Attempt.number
            )
        )
        if case_id:
            q = q.where(Case.id == case_id)
        rows = []
        for a, r, case in s.execute(q):
            rows.append(
                {
                    "case_id": case.id,
                    "notification_id": case.notification_id,
                    "provider_id": r.provider_id,
                    "provider_name": r.provider_name,
                    "request_reference": r.reference,
                    "attempt_number": a.number,
                    "reason": a.reason,
                    "planned_at": _iso(a.planned_at),
                    "sent_at": _iso(a.sent_at),
                    "completed_at": _iso(a.completed_at),
                    "channel": a.channel,
                    "destination": a.destination,
                    "designee": a.designee,
                    "requested": a.requested,
                    "outcome": a.outcome,
                    "failure_reason": a.failure_reason,
                    "transmissions": a.transmissions,
                    "external_id": a.external_id,
                }
            )
    return rows


def render_export(rows: list[dict[str, Any]], fmt: str) -> str:
    if fmt == "json":
        return json.dumps({"attempts": rows}, indent=2)
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=EXPORT_FIELDS, lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
        return buf.getvalue()
    raise ValueError(f"unknown format {fmt!r}: use csv or json")


def dashboard(c: Container) -> dict[str, Any]:
    """What ops watch: open cases by time left, counts by status, cases needing attention."""
    now = c.clock.now()
    with transaction(c.sessions) as s:
        cases = list(s.scalars(select(Case).options(selectinload(Case.requests))))
        counts: dict[str, int] = {}
        for case in cases:
            counts[case.status] = counts.get(case.status, 0) + 1
        active = [
            {
                "case_id": case.id,
                "notification_id": case.notification_id,
                "review_type": case.review_type,
                "status": case.status,
                "due_at": _iso(case.due_at),
                "hours_left": round((case.due_at - now).total_seconds() / 3600, 2),
                "requests_open": sum(r.status == "open" for r in case.requests),
                "attention": case.attention,
            }
            for case in sorted(cases, key=lambda x: x.due_at)
            if case.status not in ("delivered", "late", "cancelled") or case.attention
        ]
    return {"now": now.isoformat(), "counts": counts, "active": active}
