"""Application services: one function per command, each a short unit of work.

The shape of every function: load state → decide (pure domain code: deadlines, outreach
policy, document checks) → persist → return the follow-up commands. Connectors are called
*outside* database transactions, and an attempt row is committed before its connector is
called (write the attempt, then send). Every function is safe to run twice for the same
command: redelivered messages are expected.
"""

from __future__ import annotations

import dataclasses
import json
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from config.jurisdictions import UnknownJurisdiction, get_jurisdiction
from connectors.base import (
    ConnectorError,
    FaxReceivedEvent,
    FaxStatusEvent,
    InboundDocument,
    PermanentError,
    PollingRequester,
    RecordsRequest,
    TransientError,
)
from storage.db import transaction
from storage.models import (
    Attempt,
    AuditEvent,
    Case,
    Delivery,
    Document,
    InboundItem,
    Packet,
    RecordRequest,
)
from storage.objects import ObjectStoreError, content_key, sha256_hex
from worker.commands import (
    AssemblePacket,
    Command,
    DeliverPacket,
    IngestInbound,
    OpenCase,
    PlanOutreach,
    PollTask,
    SendAttempt,
)
from worker.documents import DocumentCheck
from worker.domain.deadlines import DeadlineError, timeline
from worker.domain.outreach import next_attempt
from worker.domain.types import (
    AttemptFact,
    AttemptOutcome,
    Channel,
    ChannelKind,
    ReviewType,
)
from worker.notification import IntakeError, Notification, parse_notification
from worker.wiring import Container

log = structlog.get_logger("goodfaith.services")

#: A timer the scheduler has enqueued work for is pushed this far ahead; the handler sets the
#: real next time. If the message is lost, the work is enqueued again once the lease runs out.
LEASE = timedelta(minutes=10)
#: Transport redials of one fax attempt (busy line, no answer): minutes apart, not attempts.
MAX_TRANSMISSIONS = 3
REDIAL_DELAY = timedelta(minutes=5)
#: Delivery retries to the agency (seconds after each transient failure; the last repeats).
DELIVERY_BACKOFF = (60, 120, 300, 600, 900)

REF_ALPHABET = "23456789ABCDEFGHJKLMNPQRSTUVWXYZ"  # no 0/O, 1/I: read off faxes by people


def _audit(s: Session, at: datetime, kind: str, case_id: str | None, **detail: Any) -> None:
    s.add(AuditEvent(case_id=case_id, at=at, kind=kind, detail=detail))


def new_reference() -> str:
    return "GF-" + "".join(secrets.choice(REF_ALPHABET) for _ in range(8))


# --- intake ----------------------------------------------------------------------------------


class IntakeResult:
    def __init__(self, case_id: str, created: bool) -> None:
        self.case_id = case_id
        self.created = created


def intake(c: Container, data: Any) -> IntakeResult:
    """Open a case from a notification document. Idempotent on ``notification_id``.

    Raises IntakeError (naming every bad field) and stores nothing when the document is invalid.
    """
    n = parse_notification(data)
    errors: list[tuple[str, str]] = []
    try:
        jurisdiction = get_jurisdiction(n.jurisdiction)
    except UnknownJurisdiction as exc:
        errors.append(("jurisdiction", str(exc).strip("'\"")))
        jurisdiction = None
    if not c.open_agencies and n.agency_id not in c.agencies:
        known = ", ".join(sorted(c.agencies)) or "none configured (GOODFAITH_AGENCIES)"
        errors.append(("agency_id", f"unknown agency {n.agency_id!r}; known: {known}"))
    if errors:
        raise IntakeError(errors)
    assert jurisdiction is not None
    try:
        tl = timeline(jurisdiction, n.review_type, n.received_at)
    except DeadlineError as exc:
        raise IntakeError([("received_at", str(exc))]) from None

    with transaction(c.sessions) as s:
        existing = s.scalar(select(Case.id).where(Case.notification_id == n.notification_id))
        if existing:
            return IntakeResult(existing, created=False)
        case = _new_case(c, n, tl)
        s.add(case)
        try:
            s.flush()
        except IntegrityError:
            s.rollback()
            found = s.scalar(select(Case.id).where(Case.notification_id == n.notification_id))
            assert found is not None
            return IntakeResult(found, created=False)
        _audit(s, c.clock.now(), "case.opened", case.id, requests=len(case.requests))
        case_id = case.id
    log.info("case.opened", case_id=case_id, review_type=n.review_type.value)
    c.dispatcher.enqueue([OpenCase(case_id)])
    return IntakeResult(case_id, created=True)


def _new_case(c: Container, n: Notification, tl: Any) -> Case:
    now = c.clock.now()
    case = Case(
        notification_id=n.notification_id,
        jurisdiction=n.jurisdiction,
        review_type=n.review_type.value,
        agency_id=n.agency_id,
        received_at=tl.received_at,
        opened_at=max(now, tl.received_at),
        due_at=tl.due_at,
        assemble_at=tl.assemble_at,
        deliver_by=tl.deliver_by,
        status="open",
        insured_member_id=n.insured.member_id,
        insured_name=n.insured.name,
        insured_birth_date=n.insured.birth_date.isoformat(),
        plan_id=n.coverage.plan_id,
        eoc_uri=n.coverage.eoc_uri,
        authorization_uri=n.authorization_uri,
        dispute=json.loads(n.dispute.model_dump_json()),
        notification=json.loads(n.model_dump_json()),
        next_action_at=tl.assemble_at,
        created_at=now,
    )
    for pos, p in enumerate(n.providers):
        channels = [
            {"kind": ch.kind, "destination": ch.destination, "designee": False, "owner_id": p.npi}
            for ch in p.channels
        ]
        if p.designee:
            channels += [
                {
                    "kind": ch.kind,
                    "destination": ch.destination,
                    "designee": True,
                    "owner_id": p.npi,
                }
                for ch in p.designee.channels
            ]
        case.requests.append(
            RecordRequest(
                position=pos,
                provider_id=p.provider_id,
                provider_name=p.name,
                npi=p.npi,
                role=p.role,
                network=p.network,
                channels=channels,
                reference=new_reference(),
                status="open",
                next_action_at=None,
            )
        )
    return case


# --- opening ---------------------------------------------------------------------------------


def open_case(c: Container, cmd: OpenCase) -> list[Command]:
    """Store our own copies of the EOC and the authorization, then start outreach."""
    with transaction(c.sessions) as s:
        case = s.get(Case, cmd.case_id)
        if case is None or case.status != "open":
            return []
        need_eoc = case.eoc_object_uri is None
        need_auth = case.authorization_object_uri is None
        eoc_uri, auth_uri, plan_id = case.eoc_uri, case.authorization_uri, case.plan_id
        member_id, name = case.insured_member_id, case.insured_name
    attention = []
    eoc_obj = auth_obj = None
    if need_eoc:
        eoc = _fetch_eoc(c, eoc_uri, plan_id)
        if eoc is None:
            attention.append("evidence of coverage not found: add it to the EOC library")
        else:
            eoc_obj = c.store.put(
                content_key(cmd.case_id, "eoc", eoc, "pdf"), eoc, "application/pdf"
            )
    if need_auth:
        auth = None
        if auth_uri:
            try:
                auth = c.reader.read(auth_uri)
            except (ObjectStoreError, OSError):
                attention.append("authorization for release could not be read")
        elif c.authorization_fallback is not None:
            auth = c.authorization_fallback(member_id, name)
        else:
            attention.append("no authorization for release with the notification")
        if auth is not None:
            auth_obj = c.store.put(
                content_key(cmd.case_id, "authorization", auth, "pdf"), auth, "application/pdf"
            )
    now = c.clock.now()
    with transaction(c.sessions) as s:
        case = s.get(Case, cmd.case_id)
        assert case is not None
        if eoc_obj:
            case.eoc_object_uri = eoc_obj
        if auth_obj:
            case.authorization_object_uri = auth_obj
        if attention:
            case.attention = "; ".join(attention)
            _audit(s, now, "case.attention", case.id, reasons=attention)
            log.warning("case.attention", case_id=case.id, reasons=attention)
        follow: list[Command] = []
        for r in case.requests:
            if r.status == "open" and not r.attempts:
                r.next_action_at = now + LEASE
                follow.append(PlanOutreach(r.id))
    return follow


def _fetch_eoc(c: Container, eoc_uri: str | None, plan_id: str) -> bytes | None:
    if eoc_uri:
        try:
            return c.reader.read(eoc_uri)
        except (ObjectStoreError, OSError):
            pass  # fall back to the library: the notification's link may be stale
    return c.eoc_library.find(plan_id)


# --- outreach --------------------------------------------------------------------------------


def _channels(r: RecordRequest) -> list[Channel]:
    return [
        Channel(
            kind=ChannelKind(ch["kind"]),
            destination=ch["destination"],
            designee=bool(ch.get("designee")),
            owner_id=ch.get("owner_id"),
        )
        for ch in r.channels
    ]


def _facts(r: RecordRequest) -> list[AttemptFact]:
    facts = []
    for a in r.attempts:
        channel = next(
            (ch for ch in _channels(r) if ch.kind == a.channel and ch.destination == a.destination),
            Channel(ChannelKind(a.channel), a.destination, a.designee),
        )
        facts.append(
            AttemptFact(
                number=a.number,
                planned_at=a.planned_at,
                sent_at=a.sent_at,
                channel=channel,
                outcome=AttemptOutcome(a.outcome),
            )
        )
    return facts


def plan_outreach(c: Container, cmd: PlanOutreach) -> list[Command]:
    """Ask the outreach policy for the next attempt; write it (pending) or set the timer."""
    now = c.clock.now()
    with transaction(c.sessions) as s:
        r = s.get(RecordRequest, cmd.request_id, with_for_update=True)
        if r is None or r.status != "open" or r.case.status != "open":
            if r is not None:
                r.next_action_at = None
            return []
        pending = [a for a in r.attempts if a.outcome == AttemptOutcome.PENDING]
        if pending:  # a send message was lost or is under way: (re)send it, same key
            r.next_action_at = now + LEASE
            return [SendAttempt(pending[0].id)]
        case = r.case
        planned = next_attempt(
            opened_at=case.opened_at,
            cutoff=case.assemble_at,
            review_type=ReviewType(case.review_type),
            channels=_channels(r),
            attempts=_facts(r),
            now=now,
            jurisdiction=get_jurisdiction(case.jurisdiction),
        )
        if planned is None:
            r.next_action_at = None
            return []
        if planned.at > now:
            r.next_action_at = planned.at
            return []
        attempt = Attempt(
            request_id=r.id,
            case_id=case.id,
            number=planned.number,
            reason=planned.reason.value,
            planned_at=planned.at,
            channel=planned.channel.kind.value,
            destination=planned.channel.destination,
            designee=planned.channel.designee,
            requested=_requested_text(case),
            idempotency_key=f"att-{r.id}-{planned.number}",
            outcome=AttemptOutcome.PENDING.value,
        )
        s.add(attempt)
        s.flush()
        r.next_action_at = now + LEASE
        _audit(
            s,
            now,
            "attempt.planned",
            case.id,
            request_id=r.id,
            attempt_id=attempt.id,
            number=planned.number,
            channel=attempt.channel,
            reason=attempt.reason,
        )
        return [SendAttempt(attempt.id)]


def _requested_text(case: Case) -> str:
    d = case.dispute
    dates = ", ".join(d.get("dates_of_service") or []) or "all relevant dates"
    codes = ", ".join(d.get("codes") or [])
    what = f"{d.get('service', 'the disputed service')}" + (f" ({codes})" if codes else "")
    return f"Medical records and treatment notes for {what}, dates of service {dates}"


def _build_letter(c: Container, attempt_id: str) -> str | None:
    """Write the attempt's request letter to the store (outside any transaction: PDF work is
    slow and SQLite has one writer). Returns its URI, or None when there is nothing to send."""
    from worker.letters import LetterInfo, build_request_letter

    with transaction(c.sessions) as s:
        a = s.get(Attempt, attempt_id)
        if a is None or a.letter_uri is not None or a.outcome != AttemptOutcome.PENDING:
            return None
        r, case = a.request, a.request.case
        info = LetterInfo(
            reference=r.reference,
            carrier_name=c.settings.carrier_name,
            return_fax=c.settings.fax.from_number,
            provider_name=r.provider_name,
            insured_name=case.insured_name,
            member_id=case.insured_member_id,
            birth_date=case.insured_birth_date,
            service=case.dispute.get("service", ""),
            codes=case.dispute.get("codes") or [],
            dates_of_service=case.dispute.get("dates_of_service") or [],
            respond_by=case.assemble_at,
            attempt_number=a.number,
        )
        auth_uri, case_id = case.authorization_object_uri, case.id
    auth = c.store.get(auth_uri) if auth_uri else None
    letter = build_request_letter(info, auth)
    return c.store.put(content_key(case_id, "letters", letter, "pdf"), letter, "application/pdf")


def send_attempt(c: Container, cmd: SendAttempt) -> list[Command]:
    """Send one attempt (or redial it). The row is committed as ``sending`` before the call."""
    letter_uri = _build_letter(c, cmd.attempt_id)
    now = c.clock.now()
    with transaction(c.sessions) as s:
        a = s.get(Attempt, cmd.attempt_id, with_for_update=True)
        if a is None:
            return []
        r = a.request
        redial = a.redial_at is not None and a.outcome == AttemptOutcome.SENT
        if not (a.outcome == AttemptOutcome.PENDING or redial):
            a.redial_at = None  # a stale redial timer (already delivered or failed)
            return []
        if r.status != "open" or r.case.status != "open":
            a.redial_at = None
            if a.outcome == AttemptOutcome.PENDING:
                a.outcome = "cancelled"
                a.completed_at = now
            return []
        case = r.case
        a.letter_uri = a.letter_uri or letter_uri
        if a.letter_uri is None:  # should not happen: a redial always has its letter
            raise RuntimeError(f"attempt {a.id} has no request letter")
        a.redial_at = None
        a.transmissions += 1
        key = (
            a.idempotency_key if a.transmissions == 1 else f"{a.idempotency_key}-t{a.transmissions}"
        )
        request = RecordsRequest(
            idempotency_key=key,
            reference=r.reference,
            channel=Channel(ChannelKind(a.channel), a.destination, a.designee, r.npi),
            document_url=c.media_url(a.id),
            member_id=case.insured_member_id,
            requester=c.settings.carrier_name,
            purpose=f"External review ({case.jurisdiction}): {a.requested}",
        )
        request_id, case_id = r.id, case.id
    requester = c.requesters[ChannelKind(request.channel.kind)]
    error: ConnectorError | None = None
    try:
        receipt = requester.send(request)
    except ConnectorError as exc:
        error = exc
    now = c.clock.now()
    with transaction(c.sessions) as s:
        a = s.get(Attempt, cmd.attempt_id, with_for_update=True)
        assert a is not None
        if error is None:
            a.sent_at = a.sent_at or now
            a.external_id = receipt.external_id
            if a.outcome == AttemptOutcome.PENDING:
                a.outcome = receipt.outcome.value
            if isinstance(requester, PollingRequester):
                from connectors.fhir.cdex import next_poll_delay

                a.poll_at = now + next_poll_delay(timedelta(0))
            _audit(
                s,
                now,
                "attempt.sent",
                case_id,
                attempt_id=a.id,
                number=a.number,
                channel=a.channel,
                external_id=a.external_id,
                transmission=a.transmissions,
            )
            log.info(
                "attempt.sent", case_id=case_id, attempt_id=a.id, number=a.number, channel=a.channel
            )
        else:
            kind = "transient" if isinstance(error, TransientError) else "permanent"
            a.sent_at = a.sent_at or now
            a.outcome = AttemptOutcome.FAILED.value
            a.completed_at = now
            a.failure_reason = f"{kind}: {error}"[:256]
            _audit(
                s,
                now,
                "attempt.failed",
                case_id,
                attempt_id=a.id,
                number=a.number,
                channel=a.channel,
                error=type(error).__name__,
            )
            log.warning(
                "attempt.failed", case_id=case_id, attempt_id=a.id, error=type(error).__name__
            )
    return [PlanOutreach(request_id)]


def record_fax_status(c: Container, event: FaxStatusEvent) -> list[Command]:
    """A status webhook for an outbound fax. Duplicates and out-of-order events are harmless."""
    if event.outcome is None:
        return []
    now = c.clock.now()
    with transaction(c.sessions) as s:
        a = s.scalar(select(Attempt).where(Attempt.external_id == event.fax_id).with_for_update())
        if a is None or a.outcome in (AttemptOutcome.DELIVERED, AttemptOutcome.FAILED, "cancelled"):
            return []
        if event.outcome == AttemptOutcome.DELIVERED:
            a.outcome = AttemptOutcome.DELIVERED.value
            a.completed_at = event.occurred_at
            a.failure_reason = None
            _audit(s, now, "attempt.delivered", a.case_id, attempt_id=a.id, number=a.number)
            return []
        a.failure_reason = (event.failure_reason or "failed")[:256]
        if event.retryable and a.transmissions < MAX_TRANSMISSIONS:
            a.redial_at = now + REDIAL_DELAY  # a transport retry inside this attempt
            _audit(
                s,
                now,
                "attempt.redial",
                a.case_id,
                attempt_id=a.id,
                transmission=a.transmissions,
                reason=a.failure_reason,
            )
            return []
        a.outcome = AttemptOutcome.FAILED.value
        a.completed_at = event.occurred_at
        _audit(
            s,
            now,
            "attempt.failed",
            a.case_id,
            attempt_id=a.id,
            number=a.number,
            reason=a.failure_reason,
        )
        return [PlanOutreach(a.request_id)]


def record_inbound_fax(c: Container, event: FaxReceivedEvent) -> list[Command]:
    """Note an inbound fax; the document is fetched and checked by :func:`ingest_inbound`."""
    now = c.clock.now()
    with transaction(c.sessions) as s:
        found = s.scalar(
            select(InboundItem.id).where(
                InboundItem.source == "fax", InboundItem.external_id == event.fax_id
            )
        )
        if found:
            return []
        item = InboundItem(
            source="fax",
            external_id=event.fax_id,
            received_at=now,
            payload={
                "media_url": event.media_url,
                "from": event.from_number,
                "to": event.to_number,
                "page_count": event.page_count,
                "partial": event.partial,
            },
            next_action_at=now + LEASE,
        )
        try:
            with s.begin_nested():
                s.add(item)
        except IntegrityError:  # the same fax reported twice at once
            return []
        return [IngestInbound(item.id)]


def ingest_inbound(c: Container, cmd: IngestInbound) -> list[Command]:
    """Fetch an inbound fax's document, store it, check it and match it to its request."""
    with transaction(c.sessions) as s:
        item = s.get(InboundItem, cmd.inbound_id)
        if item is None or item.processed_at is not None:
            return []
        media_url, sender, fax_id = (
            item.payload["media_url"],
            item.payload.get("from"),
            item.external_id,
        )
    doc = c.fax.fetch_media(media_url)  # ConnectorError → actor retry; the item stays due
    # the inbound fax's own id identifies the document (media URLs change on redelivery)
    doc = dataclasses.replace(doc, external_id=fax_id)
    found = inspect(doc)
    with transaction(c.sessions) as s:
        item = s.get(InboundItem, cmd.inbound_id, with_for_update=True)
        assert item is not None
        if item.processed_at is not None:
            return []
        follow = _accept_document(c, s, found, request=None, sender=sender or doc.sender)
        item.processed_at = c.clock.now()
        item.next_action_at = None
        return follow


def poll_task(c: Container, cmd: PollTask) -> list[Command]:
    """Poll a pull-style request (FHIR Task) and take in what it returned."""
    from connectors.fhir.cdex import next_poll_delay

    with transaction(c.sessions) as s:
        a = s.get(Attempt, cmd.attempt_id)
        if a is None or a.external_id is None:
            return []
        if a.request.status != "open" or a.outcome == AttemptOutcome.FAILED:
            a.poll_at = None
            return []
        external_id, channel = a.external_id, ChannelKind(a.channel)
    requester = c.requesters[channel]
    assert isinstance(requester, PollingRequester)
    now = c.clock.now()
    try:
        result = requester.poll(external_id)
    except TransientError:
        with transaction(c.sessions) as s:
            a = s.get(Attempt, cmd.attempt_id)
            assert a is not None
            a.poll_at = now + timedelta(minutes=5)
        return []
    except PermanentError as exc:
        with transaction(c.sessions) as s:
            a = s.get(Attempt, cmd.attempt_id)
            assert a is not None
            a.poll_at = None
            a.outcome = AttemptOutcome.FAILED.value
            a.completed_at = now
            a.failure_reason = f"permanent: {exc}"[:256]
            return [PlanOutreach(a.request_id)]
    inspected = [inspect(doc) for doc in result.documents]
    follow: list[Command] = []
    with transaction(c.sessions) as s:
        a = s.get(Attempt, cmd.attempt_id, with_for_update=True)
        assert a is not None
        r = a.request
        if result.outcome is not None and a.outcome in (
            AttemptOutcome.PENDING,
            AttemptOutcome.SENT,
        ):
            a.outcome = result.outcome.value
            if result.outcome in (AttemptOutcome.DELIVERED, AttemptOutcome.FAILED):
                a.completed_at = now
            if result.outcome == AttemptOutcome.FAILED:
                a.failure_reason = (result.reason or result.status)[:256]
                follow.append(PlanOutreach(r.id))
        for found in inspected:
            follow += _accept_document(c, s, found, request=r, sender=a.destination)
        if result.no_records and r.status == "open":
            follow += _close_request(c, s, r, "no_records")
        done = (
            r.status != "open"
            or a.outcome == AttemptOutcome.FAILED
            or result.status in ("completed", "rejected", "failed")
        )
        a.poll_at = None if done else now + next_poll_delay(now - (a.sent_at or now))
    return follow


@dataclass(frozen=True)
class Inspected:
    """What the checks found in one inbound document (computed outside transactions)."""

    doc: InboundDocument
    check: DocumentCheck
    reference: str | None
    no_records: bool


def inspect(doc: InboundDocument) -> Inspected:
    from worker.documents import check_document, extract_reference, is_no_records_reply

    check = check_document(doc.data, doc.content_type)
    if not check.accepted:
        return Inspected(doc, check, None, False)
    return Inspected(doc, check, extract_reference(check.data), is_no_records_reply(check.data))


def _accept_document(
    c: Container,
    s: Session,
    found: Inspected,
    *,
    request: RecordRequest | None,
    sender: str | None,
) -> list[Command]:
    """Store the raw bytes, match them to a request and close it when they answer it."""
    doc, check = found.doc, found.check
    exists = s.scalar(
        select(Document.id).where(
            Document.source == doc.source.value, Document.external_id == doc.external_id
        )
    )
    if exists:
        return []
    now = c.clock.now()
    if request is None and check.accepted and found.reference:
        request = s.scalar(select(RecordRequest).where(RecordRequest.reference == found.reference))
    if request is None and sender:
        candidates = [
            r
            for r in s.scalars(select(RecordRequest).where(RecordRequest.status == "open"))
            if any(ch["destination"] == sender for ch in r.channels)
        ]
        if len(candidates) == 1:
            request = candidates[0]
    case_id = request.case_id if request else None
    owner = case_id or "unmatched"
    raw_uri = c.store.put(
        content_key(owner, "inbound", doc.data, "pdf"), doc.data, doc.content_type
    )
    usable_uri = None
    if check.accepted and check.data != doc.data:
        usable_uri = c.store.put(
            content_key(owner, "usable", check.data, "pdf"), check.data, "application/pdf"
        )
    no_records = check.accepted and found.no_records
    status = "accepted" if check.accepted else "quarantined"
    reason = check.reason
    if check.accepted and request is None:
        status, reason = "quarantined", "unmatched: no request reference or known sender"
    d = Document(
        case_id=case_id,
        request_id=request.id if request else None,
        source=doc.source.value,
        external_id=doc.external_id,
        sender=sender,
        sha256=check.sha256,
        size=len(doc.data),
        uri=raw_uri,
        usable_uri=usable_uri,
        pages=check.pages,
        status=status,
        reason=reason,
        kind="no_records" if no_records else "records",
        received_at=now,
    )
    s.add(d)
    s.flush()
    _audit(
        s,
        now,
        "document.received",
        case_id,
        document_id=d.id,
        status=status,
        pages=check.pages,
        reason=reason,
        sha256=check.sha256,
    )
    log.info(
        "document.received", case_id=case_id, document_id=d.id, status=status, pages=check.pages
    )
    if request is None or status != "accepted":
        return []
    case = request.case
    if request.status == "open":
        return _close_request(c, s, request, "no_records" if no_records else "fulfilled")
    if case.status in ("delivered", "late") and not no_records:
        case.next_action_at = now  # late records: a supplemental packet
        return [AssemblePacket(case.id)]
    return []


def _stop_request(r: RecordRequest, status: str, now: datetime) -> None:
    """Close a request and every timer of its attempts: no further outreach, redial or poll."""
    r.status = status
    r.closed_at = now
    r.next_action_at = None
    for a in r.attempts:
        a.redial_at = None
        a.poll_at = None


def _close_request(c: Container, s: Session, r: RecordRequest, status: str) -> list[Command]:
    now = c.clock.now()
    _stop_request(r, status, now)
    _audit(s, now, f"request.{status}", r.case_id, request_id=r.id)
    case = r.case
    if case.status == "open" and all(x.status != "open" for x in case.requests):
        case.next_action_at = now
        return [AssemblePacket(case.id)]
    if case.status in ("delivered", "late") and status == "fulfilled":
        case.next_action_at = now
        return [AssemblePacket(case.id)]
    return []


# --- packet and delivery ---------------------------------------------------------------------


def assemble_packet(c: Container, cmd: AssemblePacket) -> list[Command]:
    """Assemble the packet (or a supplemental one for late records) and queue its delivery."""
    from worker.packet import AttemptLine, CoverInfo, PacketPart, ProviderAttestation, build_packet

    now = c.clock.now()
    with transaction(c.sessions) as s:
        case = s.get(Case, cmd.case_id, with_for_update=True)
        if case is None:
            return []
        supplemental = case.status in ("delivered", "late")
        if not supplemental and case.status not in ("open", "assembling"):
            return []  # cancelled, or already delivering
        if case.eoc_object_uri is None:
            case.attention = case.attention or "evidence of coverage missing: packet held"
            case.next_action_at = None
            _audit(s, now, "packet.held", case.id, reason="eoc_missing")
            return []
        docs = list(
            s.scalars(
                select(Document)
                .where(
                    Document.case_id == case.id,
                    Document.status == "accepted",
                    Document.kind == "records",
                    Document.packet_id.is_(None),
                )
                .order_by(Document.received_at)
            )
        )
        if supplemental and not docs:
            case.next_action_at = None
            return []
        if not supplemental:
            for r in case.requests:
                if r.status == "open":
                    _stop_request(r, "unresponsive", now)
                    _audit(
                        s,
                        now,
                        "request.unresponsive",
                        case.id,
                        request_id=r.id,
                        attempts=len(r.attempts),
                    )
            case.status = "assembling"
        case.next_action_at = now + LEASE
        sequence = len(case.packets) + 1
        by_request = {r.id: r for r in case.requests}
        cover = CoverInfo(
            case_id=case.id,
            notification_id=case.notification_id,
            agency_name=c.agency_name(case.agency_id),
            jurisdiction=case.jurisdiction,
            review_type=case.review_type,
            insured_name=case.insured_name,
            member_id=case.insured_member_id,
            due_at=case.due_at,
            generated_at=now,
            carrier_name=c.settings.carrier_name,
            supplemental=supplemental,
            sequence=sequence,
        )
        # (kind, title, object URI, source sha256, provider id): bytes are read after commit
        specs: list[tuple[str, str, str, str, str | None]] = (
            []
            if supplemental
            else [
                (
                    "eoc",
                    f"Evidence of coverage — plan {case.plan_id}",
                    case.eoc_object_uri,
                    "",
                    None,
                )
            ]
        )
        for d in sorted(
            docs, key=lambda d: by_request[d.request_id].position if d.request_id else 0
        ):
            owner = by_request.get(d.request_id or "")
            specs.append(
                (
                    "records",
                    f"Records from {owner.provider_name if owner else 'provider'}",
                    d.usable_uri or d.uri,
                    d.sha256,
                    owner.provider_id if owner else None,
                )
            )
        attestation = [
            ProviderAttestation(
                provider_name=r.provider_name,
                provider_id=r.provider_id,
                status=r.status,
                attempts=[
                    AttemptLine(
                        number=a.number,
                        at=a.sent_at or a.planned_at,
                        channel=a.channel,
                        destination=a.destination,
                        outcome=a.outcome,
                        reason=a.reason,
                    )
                    for a in r.attempts
                ],
            )
            for r in case.requests
        ]
        doc_ids = [d.id for d in docs]
        case_id, agency_id, was_status = case.id, case.agency_id, case.status
    parts = []
    for kind, title, uri, source_sha, provider_id in specs:
        data = c.store.get(uri)
        parts.append(PacketPart(kind, title, data, source_sha or sha256_hex(data), provider_id))
    built = build_packet(cover, parts, attestation)
    key_base = f"cases/{case_id}/packets/{sequence:03d}-{built.sha256}"
    uri = c.store.put(f"{key_base}.pdf", built.pdf, "application/pdf")
    manifest_bytes = json.dumps(built.manifest, indent=2, sort_keys=True, default=str).encode()
    manifest_uri = c.store.put(f"{key_base}.manifest.json", manifest_bytes, "application/json")
    with transaction(c.sessions) as s:
        case = s.get(Case, case_id, with_for_update=True)
        assert case is not None
        packet = Packet(
            case_id=case_id,
            sequence=sequence,
            supplemental=supplemental,
            uri=uri,
            manifest_uri=manifest_uri,
            sha256=built.sha256,
            pages=built.pages,
            created_at=now,
        )
        try:
            with s.begin_nested():
                s.add(packet)
        except IntegrityError:  # assembled twice concurrently: the first one stands
            return []
        for d in s.scalars(select(Document).where(Document.id.in_(doc_ids))):
            d.packet_id = packet.id
        delivery = Delivery(
            packet_id=packet.id,
            case_id=case_id,
            agency_id=agency_id,
            idempotency_key=f"dlv-{packet.id}",
            status="pending",
            next_action_at=now + LEASE,
        )
        s.add(delivery)
        s.flush()
        if not supplemental:
            case.status = "delivering"
        case.next_action_at = None
        _audit(
            s,
            now,
            "packet.assembled",
            case_id,
            packet_id=packet.id,
            sequence=sequence,
            pages=built.pages,
            sha256=built.sha256,
            documents=len(doc_ids),
        )
        log.info(
            "packet.assembled",
            case_id=case_id,
            packet_id=packet.id,
            pages=built.pages,
            supplemental=supplemental,
            was=was_status,
        )
        return [DeliverPacket(delivery.id)]


def deliver_packet(c: Container, cmd: DeliverPacket) -> list[Command]:
    """Hand a packet to the agency. Transient failures are retried on a database timer."""
    from connectors.base import PacketSubmission

    with transaction(c.sessions) as s:
        d = s.get(Delivery, cmd.delivery_id)
        if d is None or d.status != "pending":
            return []
        p = d.packet
        case = s.get(Case, d.case_id)
        assert case is not None
        submission = PacketSubmission(
            idempotency_key=d.idempotency_key,
            agency_id=d.agency_id,
            case_ref=case.id,
            notification_id=case.notification_id,
            packet_pdf=c.store.get(p.uri),
            manifest=json.loads(c.store.get(p.manifest_uri)),
            sha256=p.sha256,
            supplemental=p.supplemental,
        )
    error: ConnectorError | None = None
    try:
        receipt = c.deliverer.deliver(submission)
    except ConnectorError as exc:
        error = exc
    now = c.clock.now()
    with transaction(c.sessions) as s:
        d = s.get(Delivery, cmd.delivery_id, with_for_update=True)
        assert d is not None
        case = s.get(Case, d.case_id, with_for_update=True)
        assert case is not None
        d.tries += 1
        d.attempted_at = now
        if error is None:
            d.status = "delivered"
            d.delivered_at = now
            d.receipt_id = receipt.receipt_id
            d.next_action_at = None
            if case.delivered_at is None:
                case.delivered_at = now
                case.status = "delivered" if now <= case.due_at else "late"
            _audit(
                s,
                now,
                "packet.delivered",
                case.id,
                delivery_id=d.id,
                receipt_id=receipt.receipt_id,
                on_time=now <= case.due_at,
            )
            log.info(
                "packet.delivered", case_id=case.id, delivery_id=d.id, on_time=now <= case.due_at
            )
        elif isinstance(error, TransientError):  # keep trying: late beats never
            d.error = str(error)[:512]
            backoff = DELIVERY_BACKOFF[min(d.tries, len(DELIVERY_BACKOFF)) - 1]
            d.next_action_at = now + timedelta(seconds=backoff)
            _audit(s, now, "delivery.retry", case.id, delivery_id=d.id, tries=d.tries)
            if now >= case.deliver_by and case.delivered_at is None:
                # the internal target has passed: a person should look before the legal deadline
                case.attention = "delivery target missed: the agency is not accepting the packet"
                log.warning("delivery.target_missed", case_id=case.id, delivery_id=d.id)
        else:
            d.status = "failed"
            d.error = str(error)[:512]
            d.next_action_at = None
            case.attention = f"delivery to the agency failed: {type(error).__name__}"
            _audit(s, now, "delivery.failed", case.id, delivery_id=d.id, error=type(error).__name__)
            log.error(
                "delivery.failed", case_id=case.id, delivery_id=d.id, error=type(error).__name__
            )
    return []


def cancel_case(c: Container, case_id: str, reason: str) -> bool:
    """Withdrawal or insurer reversal: stop all outreach. Delivered packets stay as they are."""
    now = c.clock.now()
    with transaction(c.sessions) as s:
        case = s.get(Case, case_id, with_for_update=True)
        if case is None:
            return False
        if case.status in ("delivered", "late", "cancelled"):
            return False
        case.status = "cancelled"
        case.next_action_at = None
        for r in case.requests:
            if r.status == "open":
                _stop_request(r, "cancelled", now)
        _audit(s, now, "case.cancelled", case.id, reason=reason)
    return True


# --- dispatch --------------------------------------------------------------------------------

HANDLERS: dict[type, Any] = {
    OpenCase: open_case,
    PlanOutreach: plan_outreach,
    SendAttempt: send_attempt,
    PollTask: poll_task,
    IngestInbound: ingest_inbound,
    AssemblePacket: assemble_packet,
    DeliverPacket: deliver_packet,
}


def run_command(c: Container, cmd: Command) -> Sequence[Command]:
    """Run one command's service function; returns its follow-up commands."""
    result: Sequence[Command] = HANDLERS[type(cmd)](c, cmd)
    return result


__all__ = ["IntakeError", "IntakeResult", "cancel_case", "intake", "run_command"]
