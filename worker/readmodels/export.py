"""The compliance attempt log: one row per documented attempt, oldest case first.

Rows are streamed from the database in pages (``PAGE`` rows at a time), so exporting a year
of attempts holds one page in memory, not the whole log. Filters (:class:`ExportFilter`):
case, provider, agency, jurisdiction, and a range of the cases' receipt; destinations can be
masked. Each row says whether its request met the good-faith standard by the cutoff
(``standard_met``, :func:`standard_met`).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, aliased, sessionmaker

from storage.models import Attempt, Case, RecordRequest
from worker.domain.lifecycle import RequestStatus
from worker.domain.types import AttemptOutcome
from worker.readmodels.report import iso
from worker.wiring import Container

PAGE = 1_000  # rows fetched from the database at a time

#: How many documented attempts the good-faith standard asks for (958 CMR 3.409: "no fewer
#: than three reasonable, documented attempts").
STANDARD_ATTEMPTS = 3

EXPORT_FIELDS = [
    "case_id",
    "notification_id",
    "jurisdiction",
    "agency_id",
    "provider_id",
    "provider_name",
    "request_reference",
    "request_status",
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
    "attempts_by_cutoff",
    "standard_met",
    "campaign_id",
    "sent_under",
]


@dataclass(frozen=True)
class ExportFilter:
    """Which attempts an export holds. ``case_id`` is a case id (resolve a notification id
    with :func:`find_case` first); ``received_from`` / ``received_to`` bound the case's
    receipt, ``[from, to)``; ``mask_destination`` keeps only the last 4 digits of a fax
    number and the host of a FHIR URL."""

    case_id: str | None = None
    provider_id: str | None = None
    agency_id: str | None = None
    jurisdiction: str | None = None
    received_from: datetime | None = None
    received_to: datetime | None = None
    mask_destination: bool = False
    campaign_id: str | None = None  # a campaign's requests only

    def apply(self, q: Any) -> Any:
        if self.case_id:
            q = q.where(Case.id == self.case_id)
        if self.campaign_id:
            q = q.where(Case.campaign_id == self.campaign_id)
        if self.provider_id:
            q = q.where(RecordRequest.provider_id == self.provider_id)
        if self.agency_id:
            q = q.where(Case.agency_id == self.agency_id)
        if self.jurisdiction:
            q = q.where(Case.jurisdiction == self.jurisdiction.upper())
        if self.received_from:
            q = q.where(Case.received_at >= self.received_from)
        if self.received_to:
            q = q.where(Case.received_at < self.received_to)
        return q


def parse_bound(text: str, what: str) -> datetime:
    """A range bound: ``YYYY-MM-DD`` (midnight UTC) or an ISO-8601 instant with its offset;
    ValueError naming ``what`` otherwise."""
    try:
        if len(text) == 10:
            return datetime.fromisoformat(text).replace(tzinfo=UTC)
        instant = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{what}: not a date (YYYY-MM-DD) or ISO-8601 instant: {text!r}") from None
    if instant.tzinfo is None:
        raise ValueError(f"{what}: give the offset, e.g. {text}Z or {text}-04:00")
    try:  # an instant at the calendar's edge (9999-12-31T23:59:59-23:59) has no UTC form
        return instant.astimezone(UTC)
    except OverflowError:
        raise ValueError(f"{what}: out of the calendar's range: {text!r}") from None


def mask(destination: str) -> str:
    """A fax number with all but its last 4 digits starred; a URL cut to scheme and host."""
    if "://" in destination:
        scheme, rest = destination.split("://", 1)
        return f"{scheme}://{rest.split('/', 1)[0]}/…"
    keep = 4
    return "*" * max(0, len(destination) - keep) + destination[-keep:]


def standard_met(request_status: str, by_cutoff: int, cutoff: datetime, now: datetime) -> str:
    """Whether the good-faith standard was met for one request: ``yes`` when the provider
    answered (records or a written "no records") or :data:`STANDARD_ATTEMPTS` attempts went
    out by the case's assembly cutoff; ``pending`` while the request is open before the
    cutoff; ``no`` otherwise (cancelled requests: ``n/a``)."""
    if request_status in (RequestStatus.FULFILLED, RequestStatus.NO_RECORDS):
        return "yes"
    if request_status == RequestStatus.CANCELLED:
        return "n/a"
    if by_cutoff >= STANDARD_ATTEMPTS:
        return "yes"
    if request_status == RequestStatus.OPEN and now < cutoff:
        return "pending"
    return "no"


def find_case(sessions: sessionmaker[Session], ref: str) -> str | None:
    """The id of the case ``ref`` names: its case id, or the notification id people see."""
    with sessions() as s:
        found = s.scalar(select(Case.id).where(Case.id == ref))
        if found is None:
            found = s.scalar(select(Case.id).where(Case.notification_id == ref))
        return found


def count_attempts(c: Container, flt: ExportFilter | None = None) -> int:
    """How many rows :func:`iter_attempts` yields for ``flt`` (one count query)."""
    q = (
        select(func.count())
        .select_from(Attempt)
        .join(RecordRequest, Attempt.request_id == RecordRequest.id)
        .join(Case, Attempt.case_id == Case.id)
    )
    with c.sessions() as s:
        return int(s.scalar((flt or ExportFilter()).apply(q)) or 0)


def iter_attempts(
    c: Container, case_id: str | None = None, flt: ExportFilter | None = None
) -> Iterator[dict[str, Any]]:
    """The attempt log (of one case, or those ``flt`` selects), streamed in database pages.
    Each row carries its request's ``attempts_by_cutoff`` (attempts sent by the case's
    assembly cutoff) and ``standard_met`` (see :func:`standard_met`), counted in SQL."""
    flt = flt or ExportFilter()
    if case_id:
        flt = replace(flt, case_id=case_id)
    sent_by_cutoff = (
        select(Attempt.request_id, func.count().label("n"))
        .join(Case, Attempt.case_id == Case.id)
        .where(
            Attempt.sent_at.is_not(None),
            Attempt.sent_at <= Case.assemble_at,
            Attempt.outcome != AttemptOutcome.CANCELLED.value,
        )
        .group_by(Attempt.request_id)
        .subquery()
    )
    # a coalesced attempt documented for this request: the one that went out, and its request
    sender, under = aliased(Attempt), aliased(RecordRequest)
    q = (
        select(
            Attempt,
            RecordRequest,
            Case,
            func.coalesce(sent_by_cutoff.c.n, 0),
            sender.external_id,
            under.reference,
        )
        .join(RecordRequest, Attempt.request_id == RecordRequest.id)
        .join(Case, Attempt.case_id == Case.id)
        .outerjoin(sent_by_cutoff, sent_by_cutoff.c.request_id == RecordRequest.id)
        .outerjoin(sender, (sender.id == Attempt.served_by) & (sender.id != Attempt.id))
        .outerjoin(under, under.id == sender.request_id)
        .order_by(Case.received_at, Case.notification_id, RecordRequest.position, Attempt.number)
        .execution_options(yield_per=PAGE)
    )
    now = c.clock.now()
    with c.sessions() as s:
        for a, r, case, by_cutoff, sender_external_id, sent_under in s.execute(flt.apply(q)):
            yield {
                "case_id": case.id,
                "notification_id": case.notification_id,
                "jurisdiction": case.jurisdiction,
                "agency_id": case.agency_id,
                "provider_id": r.provider_id,
                "provider_name": r.provider_name,
                "request_reference": r.reference,
                "request_status": r.status,
                "attempt_number": a.number,
                "reason": a.reason,
                "planned_at": iso(a.planned_at),
                "sent_at": iso(a.sent_at),
                "completed_at": iso(a.completed_at),
                "channel": a.channel,
                "destination": mask(a.destination) if flt.mask_destination else a.destination,
                "designee": a.designee,
                "requested": a.requested,
                "outcome": a.outcome,
                "failure_reason": a.failure_reason,
                "transmissions": a.transmissions,
                "external_id": a.external_id or sender_external_id,
                "attempts_by_cutoff": int(by_cutoff),
                "standard_met": standard_met(r.status, int(by_cutoff), case.assemble_at, now),
                "campaign_id": case.campaign_id,
                # one outreach served this request and others: it went out under this reference
                "sent_under": sent_under,
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
