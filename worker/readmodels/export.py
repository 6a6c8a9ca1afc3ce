"""The compliance attempt log: one row per documented attempt, oldest case first.

Rows are streamed from the database in pages (``PAGE`` rows at a time), so exporting a year
of attempts holds one page in memory, not the whole log.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from storage.models import Attempt, Case, RecordRequest
from worker.readmodels.report import iso
from worker.wiring import Container

PAGE = 1_000  # rows fetched from the database at a time

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


def find_case(sessions: sessionmaker[Session], ref: str) -> str | None:
    """The id of the case ``ref`` names: its case id, or the notification id people see."""
    with sessions() as s:
        found = s.scalar(select(Case.id).where(Case.id == ref))
        if found is None:
            found = s.scalar(select(Case.id).where(Case.notification_id == ref))
        return found


def iter_attempts(c: Container, case_id: str | None = None) -> Iterator[dict[str, Any]]:
    """The attempt log (of one case, or all), streamed in database pages."""
    q = (
        select(Attempt, RecordRequest, Case)
        .join(RecordRequest, Attempt.request_id == RecordRequest.id)
        .join(Case, Attempt.case_id == Case.id)
        .order_by(Case.received_at, Case.notification_id, RecordRequest.position, Attempt.number)
        .execution_options(yield_per=PAGE)
    )
    if case_id:
        q = q.where(Case.id == case_id)
    with c.sessions() as s:
        for a, r, case in s.execute(q):
            yield {
                "case_id": case.id,
                "notification_id": case.notification_id,
                "provider_id": r.provider_id,
                "provider_name": r.provider_name,
                "request_reference": r.reference,
                "attempt_number": a.number,
                "reason": a.reason,
                "planned_at": iso(a.planned_at),
                "sent_at": iso(a.sent_at),
                "completed_at": iso(a.completed_at),
                "channel": a.channel,
                "destination": a.destination,
                "designee": a.designee,
                "requested": a.requested,
                "outcome": a.outcome,
                "failure_reason": a.failure_reason,
                "transmissions": a.transmissions,
                "external_id": a.external_id,
            }


def render_chunks(
    rows: Iterable[dict[str, Any]], fmt: str, audit_head: tuple[int, str] | None = None
) -> Iterator[str]:
    """The export as text chunks, ``csv`` (a header line, then a line a row) or ``json``
    (``{"audit_chain_head": {"seq", "hash"}, "attempts": [...]}``, the head when given),
    written as rows arrive. A CSV carries the head outside the rows (the API's
    ``Goodfaith-Audit-Chain-Head`` header, the CLI's stderr), so every line stays a row."""
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=EXPORT_FIELDS, lineterminator="\n")
        w.writeheader()
        for row in rows:
            w.writerow(row)
            if buf.tell() > 64_000:
                yield buf.getvalue()
                buf.seek(0)
                buf.truncate()
        yield buf.getvalue()
        return
    if fmt == "json":
        if audit_head is not None:
            head = json.dumps({"seq": audit_head[0], "hash": audit_head[1]})
            yield f'{{"audit_chain_head": {head}, '
            yield '"attempts": ['
        else:
            yield '{"attempts": ['
        for i, row in enumerate(rows):
            yield ("," if i else "") + "\n  " + json.dumps(row)
        yield "\n]}\n"
        return
    raise ValueError(f"unknown format {fmt!r}: use csv or json")


def render_export(
    rows: Iterable[dict[str, Any]], fmt: str, audit_head: tuple[int, str] | None = None
) -> str:
    """The whole export as one string (see :func:`render_chunks`)."""
    if fmt not in ("csv", "json"):
        raise ValueError(f"unknown format {fmt!r}: use csv or json")
    return "".join(render_chunks(rows, fmt, audit_head))
