"""Cancel: a withdrawal or an insurer reversal stops all outreach for a case. Packets already
delivered stay exactly as they are."""

from __future__ import annotations

from sqlalchemy.orm import Session, sessionmaker

from storage.db import transaction
from storage.models import Case
from worker.domain.clock import Clock
from worker.domain.lifecycle import CaseStatus, RequestStatus, can_cancel
from worker.services.audit import audit
from worker.services.closing import stop_request
from worker.services.mapping import case_status


def cancel_case(
    case_id: str, reason: str, *, sessions: sessionmaker[Session], clock: Clock
) -> bool:
    """Stop the case and its open requests; False when the case is unknown or already closed
    (delivered, late or cancelled)."""
    now = clock.now()
    with transaction(sessions) as s:
        case = s.get(Case, case_id, with_for_update=True)
        if case is None or not can_cancel(case_status(case)):
            return False
        case.status = CaseStatus.CANCELLED.value
        case.next_action_at = None
        for r in case.requests:
            if r.status == RequestStatus.OPEN:
                stop_request(r, RequestStatus.CANCELLED, now)
        audit(s, now, "case.cancelled", case.id, reason=reason)
    return True
