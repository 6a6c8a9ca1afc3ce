"""Closing a request: shared by inbound (records or "no records"), packet (unresponsive at
the cutoff) and cancel. A closed request keeps no timer of its own or of its attempts."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session, object_session

from storage.models import RecordRequest
from worker.commands import AssemblePacket, Command
from worker.domain.lifecycle import RequestStatus, ready_to_assemble, wants_supplemental
from worker.services.audit import audit
from worker.services.mapping import case_status, request_status


def stop_request(r: RecordRequest, status: RequestStatus, now: datetime) -> None:
    """Close ``r`` as ``status`` and clear every timer of its attempts: no further outreach,
    redial or poll. An attempt whose far side still notifies us of its changes (a CDex
    Subscription) keeps its poll timer for one last turn, now: the poll finds the request
    closed, polls nothing and ends the Subscription (worker/services/inbound.py)."""
    r.status = status.value
    r.closed_at = now
    r.next_action_at = None
    for a in r.attempts:
        a.redial_at = None
        a.poll_at = now if a.subscription is not None else None
    if r.chase_id is not None:  # the chase goes on for its other requests
        from worker.services.coalescing import wake_chase

        session = object_session(r)
        if session is not None:
            wake_chase(session, r, now)


def close_request(
    s: Session, r: RecordRequest, status: RequestStatus, now: datetime
) -> list[Command]:
    """Close ``r`` with an answer, audited; assemble the case when this was the last open
    request, or a supplemental packet when records came after the first packet."""
    stop_request(r, status, now)
    audit(s, now, f"request.{status.value}", r.case_id, request_id=r.id)
    case = r.case
    cs = case_status(case)
    if ready_to_assemble(cs, (request_status(x) for x in case.requests)) or wants_supplemental(
        cs, records=status is RequestStatus.FULFILLED
    ):
        case.next_action_at = now
        return [AssemblePacket(case.id)]
    return []
