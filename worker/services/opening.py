"""Opening: store our own copies of the EOC and the insured's authorization, start outreach."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING

import structlog
from sqlalchemy import select
from sqlalchemy.orm import Session, joinedload, selectinload, sessionmaker

from storage.db import by_id, one_by_id, transaction
from storage.models import Case, RecordRequest
from storage.objects import ObjectStore, ObjectStoreError, UriReader, content_key
from worker.commands import Command, OpenCase, PlanOutreach
from worker.domain.clock import Clock
from worker.domain.lifecycle import LEASE, CaseStatus, RequestStatus
from worker.services.audit import audit
from worker.services.mapping import flag_case

if TYPE_CHECKING:
    from worker.wiring import EocLibrary

log = structlog.get_logger("goodfaith.services")


def open_case(
    cmd: OpenCase,
    *,
    sessions: sessionmaker[Session],
    clock: Clock,
    store: ObjectStore,
    reader: UriReader,
    eoc_library: EocLibrary,
    authorization_fallback: Callable[[str, str], bytes] | None,
) -> list[Command]:
    """Store our copies of the EOC and the authorization, then plan each provider's outreach.

    A missing EOC or authorization flags the case for ops (``attention``); outreach starts
    anyway, and the packet is held until the EOC is there."""
    with transaction(sessions) as s:
        case = one_by_id(s, _CASE_READ, cmd.case_id)
        if case is None:
            return []
        if case.status != CaseStatus.OPEN:
            case.open_at = None
            return []
        need_eoc, need_auth = _to_fetch(case, authorization_fallback is not None)
        if not (need_eoc or need_auth):  # nothing to fetch (a campaign's case): one transaction
            return _start_outreach(s, case, clock.now(), [])
        eoc_uri, auth_uri, plan_id = case.eoc_uri, case.authorization_uri, case.plan_id
        member_id, name = case.insured_member_id, case.insured_name
    attention = []
    eoc_obj = auth_obj = None
    if need_eoc:
        eoc = fetch_eoc(reader, eoc_library, eoc_uri, plan_id)
        if eoc is None:
            attention.append(EOC_NOT_FOUND)
        else:
            eoc_obj = store.put(content_key(cmd.case_id, "eoc", eoc, "pdf"), eoc, "application/pdf")
    if need_auth:
        auth = None
        if auth_uri:
            try:
                auth = reader.read(auth_uri)
            except (ObjectStoreError, OSError):
                attention.append("authorization for release could not be read")
        elif authorization_fallback is not None:
            auth = authorization_fallback(member_id, name)
        else:
            attention.append("no authorization for release with the notification")
        if auth is not None:
            auth_obj = store.put(
                content_key(cmd.case_id, "authorization", auth, "pdf"), auth, "application/pdf"
            )
    with transaction(sessions) as s:
        case = one_by_id(s, _CASE_READ, cmd.case_id)
        assert case is not None
        if eoc_obj:
            case.eoc_object_uri = eoc_obj
        if auth_obj:
            case.authorization_object_uri = auth_obj
        return _start_outreach(s, case, clock.now(), attention)


def _to_fetch(case: Case, has_authorization_fallback: bool) -> tuple[bool, bool]:
    """Whether opening ``case`` fetches (its EOC, its authorization). A campaign's case has no
    packet, hence no EOC, and needs an authorization only when it names one (or a simulation
    makes one up): HIPAA payment and operations."""
    campaign = case.campaign_id is not None
    need_eoc = case.eoc_object_uri is None and not campaign
    need_auth = case.authorization_object_uri is None and not (
        campaign and case.authorization_uri is None and not has_authorization_fallback
    )
    return need_eoc, need_auth


def open_in_bulk(
    s: Session,
    cases: list[Case],
    now: datetime,
    *,
    authorization_fallback: Callable[[str, str], bytes] | None,
) -> dict[str, list[Command]]:
    """Open, in the scheduler's own transaction, the due ``cases`` (locked by its ``opening``
    timer) that have nothing to fetch — a campaign's cases, 500 a tick — instead of one
    ``OpenCase`` message and transaction each: the same :func:`_start_outreach`, their open
    requests read in one query. Returns each opened case's commands; the others are left to
    ``OpenCase``."""
    ready = {
        case.id: case
        for case in cases
        if case.status == CaseStatus.OPEN
        and not any(_to_fetch(case, authorization_fallback is not None))
    }
    if not ready:
        return {}
    requests: dict[str, list[RecordRequest]] = {case_id: [] for case_id in ready}
    for r in s.scalars(
        select(RecordRequest)
        .where(RecordRequest.case_id.in_(list(ready)))
        .options(selectinload(RecordRequest.attempts))
        .order_by(RecordRequest.case_id, RecordRequest.position)
    ):
        requests[r.case_id].append(r)
    return {
        case_id: _start_requests(case, requests[case_id], now) for case_id, case in ready.items()
    }


#: a case with its requests and their attempts in one query (a few requests, each with few or
#: no attempts when the case opens: one joined read, not one query per relationship)
_WITH_REQUESTS = (joinedload(Case.requests).joinedload(RecordRequest.attempts),)
_CASE_READ = by_id(Case, *_WITH_REQUESTS)  # built once (storage/db.py ``by_id``)


def _start_outreach(s: Session, case: Case, now: datetime, attention: list[str]) -> list[Command]:
    """The case is open: flag what is missing, then plan each open request not yet attempted
    (in the caller's transaction)."""
    if attention:
        for reason in attention:  # after intake's (e.g. received past its due time)
            flag_case(case, reason)
        audit(s, now, "case.attention", case.id, reasons=attention)
        log.warning("case.attention", case_id=case.id, reasons=attention)
    return _start_requests(case, case.requests, now)


def _start_requests(case: Case, requests: list[RecordRequest], now: datetime) -> list[Command]:
    """``case`` is opened: plan each of its open ``requests`` not yet attempted."""
    case.open_at = None
    follow: list[Command] = []
    for r in requests:
        if r.status == RequestStatus.OPEN and not r.attempts:
            r.next_action_at = now + LEASE
            follow.append(PlanOutreach(r.id))
    return follow


#: Case.attention while a case's EOC is missing; every reason about the EOC begins with
#: :data:`EOC_REASON` (cleared when the EOC is found at assembly: services/packet.py)
EOC_REASON = "evidence of coverage"
EOC_NOT_FOUND = f"{EOC_REASON} not found: add it to the EOC library"


def fetch_eoc(
    reader: UriReader, library: EocLibrary, eoc_uri: str | None, plan_id: str
) -> bytes | None:
    """The case's EOC: from the notification's link, else the carrier's library (None: in
    neither)."""
    if eoc_uri:
        try:
            return reader.read(eoc_uri)
        except (ObjectStoreError, OSError):
            pass  # fall back to the library: the notification's link may be stale
    return library.find(plan_id)
