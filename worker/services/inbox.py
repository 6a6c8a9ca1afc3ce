"""The unmatched inbox: inbound documents that matched no request (no reference on them, an
unknown sender, or a sender with several open requests) wait here until ops assign one to a
request. Assigned, a document counts for its request exactly as a matched one does: it closes
the request (fulfilled, or no records) or, after delivery, sets off a supplemental packet.

A document that passed its checks and was unmatched becomes ``accepted`` when assigned; one
that failed its checks stays ``quarantined`` (with its reason) but is filed with the request,
where ops see it. Every assignment is audited (``document.assigned``: who, which request).
"""

from __future__ import annotations

import enum

import structlog
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from storage.db import transaction
from storage.models import Document, RecordRequest
from worker.commands import Command
from worker.domain.clock import Clock
from worker.domain.lifecycle import DocumentKind, DocumentStatus
from worker.services.audit import audit
from worker.services.inbound import UNMATCHED_REASON, answer_request

log = structlog.get_logger("goodfaith.services")


class AssignOutcome(enum.Enum):
    ASSIGNED = "assigned"
    UNKNOWN_DOCUMENT = "unknown_document"
    UNKNOWN_REQUEST = "unknown_request"
    ALREADY_ASSIGNED = "already_assigned"


def find_request(s: Session, request: str) -> RecordRequest | None:
    """A request by its id or by its reference (``GF-XXXXXXXX``, as printed on letters)."""
    found = s.get(RecordRequest, request)
    if found is None:
        found = s.scalar(select(RecordRequest).where(RecordRequest.reference == request.upper()))
    return found


def assign_document(
    document_id: str,
    request: str,
    assigned_by: str,
    *,
    sessions: sessionmaker[Session],
    clock: Clock,
) -> tuple[AssignOutcome, list[Command]]:
    """File unmatched document ``document_id`` with ``request`` (id or reference), audited as
    done by ``assigned_by``; returns the outcome and the commands to enqueue."""
    now = clock.now()
    with transaction(sessions) as s:
        d = s.get(Document, document_id, with_for_update=True)
        if d is None:
            return AssignOutcome.UNKNOWN_DOCUMENT, []
        if d.request_id is not None:
            return AssignOutcome.ALREADY_ASSIGNED, []
        r = find_request(s, request)
        if r is None:
            return AssignOutcome.UNKNOWN_REQUEST, []
        d.request_id, d.case_id = r.id, r.case_id
        counts = d.status == DocumentStatus.QUARANTINED and d.reason == UNMATCHED_REASON
        if counts:
            d.status, d.reason = DocumentStatus.ACCEPTED.value, None
        detail = {"document_id": d.id, "request_id": r.id, "by": assigned_by[:128]}
        audit(s, now, "document.assigned", r.case_id, status=d.status, **detail)
        log.info("document.assigned", case_id=r.case_id, **detail)
        if not counts:
            return AssignOutcome.ASSIGNED, []
        no_records = d.kind == DocumentKind.NO_RECORDS
        return AssignOutcome.ASSIGNED, answer_request(s, r, now, no_records=no_records)
