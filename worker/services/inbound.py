"""Inbound: what comes back from providers (inbound faxes, polled FHIR Tasks) is stored as
received, checked, matched to its request by reference or sender, and closes the request.

Document checks run outside transactions (PDF work is slow; SQLite has one writer).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import bindparam, distinct, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, joinedload, sessionmaker

from connectors.base import (
    ConnectorError,
    EndsNotifications,
    FaxChannel,
    FaxReceivedEvent,
    InboundDocument,
    PermanentError,
    PollingRequester,
    PollResult,
    RecordsRequester,
    TransientError,
)
from connectors.fhir.subscriptions import same_task
from connectors.vendor.orders import OrderEvent
from storage.db import by_id, one_by_id, transaction
from storage.models import Attempt, Case, Document, InboundItem, RecordRequest, RequestNumber
from storage.objects import ObjectStore, content_key
from worker.commands import AssemblePacket, Command, IngestInbound, PlanOutreach, PollTask
from worker.documents import DocumentCheck
from worker.documents_check import DocumentChecker
from worker.domain.clock import Clock
from worker.domain.faxnumbers import normalized
from worker.domain.lifecycle import (
    LEASE,
    DocumentKind,
    DocumentStatus,
    RequestStatus,
    failure_reason,
    wants_supplemental,
)
from worker.domain.notices import quarantined_reply
from worker.domain.polling import next_poll_at, poll_delay
from worker.domain.similarity import PageSignature, QASettings
from worker.domain.types import AttemptOutcome, ChannelKind
from worker.services import coalescing
from worker.services.audit import audit
from worker.services.closing import close_request
from worker.services.mapping import case_status, flag_case
from worker.services.quality import assess, review_for

log = structlog.get_logger("goodfaith.services")

#: The quarantine reason of a document that passed its checks but matched no request: it waits
#: in the unmatched inbox (worker/services/inbox.py) until ops assign it.
UNMATCHED_REASON = "unmatched: no request reference or known sender"

#: A poll that failed on a transient error is tried again this much later.
POLL_RETRY = timedelta(minutes=5)


@dataclass(frozen=True)
class Inspected:
    """What the checks found in one inbound document (computed outside transactions)."""

    doc: InboundDocument
    check: DocumentCheck
    reference: str | None
    no_records: bool
    texts: tuple[str, ...] = ()  # per page (in memory only: the identity check)
    signatures: tuple[PageSignature, ...] = ()
    qa: QASettings = field(default_factory=QASettings)
    blank_pages: tuple[int, ...] = ()


def inspect(doc: InboundDocument, documents: DocumentChecker) -> Inspected:
    """Check one document and read its request reference and "no records" wording, within
    the per-document limits (in a child process: one file cannot hold the worker)."""
    found = documents.inspect(doc.data, doc.content_type)
    return Inspected(
        doc,
        found.check,
        found.reference,
        found.no_records or doc.no_records,  # a vendor's certificate says so itself
        found.texts,
        found.signatures,
        found.qa,
        found.blank_pages,
    )


def record_inbound_fax(
    event: FaxReceivedEvent, *, sessions: sessionmaker[Session], clock: Clock
) -> list[Command]:
    """Note an inbound fax; the document is fetched and checked by :func:`ingest_inbound`."""
    now = clock.now()
    with transaction(sessions) as s:
        found = s.scalar(
            select(InboundItem.id).where(
                InboundItem.source == ChannelKind.FAX, InboundItem.external_id == event.fax_id
            )
        )
        if found:
            return []
        item = InboundItem(
            source=ChannelKind.FAX.value,
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


def ingest_inbound(
    cmd: IngestInbound,
    *,
    sessions: sessionmaker[Session],
    clock: Clock,
    store: ObjectStore,
    fax: FaxChannel,
    documents: DocumentChecker,
) -> list[Command]:
    """Fetch an inbound fax's document, store it, check it and match it to its request."""
    with transaction(sessions) as s:
        item = s.get(InboundItem, cmd.inbound_id)
        if item is None or item.processed_at is not None:
            return []
        media_url, sender, fax_id = (
            item.payload["media_url"],
            item.payload.get("from"),
            item.external_id,
        )
    doc = fax.fetch_media(media_url)  # ConnectorError → actor retry; the item stays due
    # the inbound fax's own id identifies the document (media URLs change on redelivery)
    found = inspect(dataclasses.replace(doc, external_id=fax_id), documents)
    with transaction(sessions) as s:
        item = s.get(InboundItem, cmd.inbound_id, with_for_update=True)
        assert item is not None
        if item.processed_at is not None:
            return []
        now = clock.now()
        follow = accept_document(s, store, now, found, request=None, sender=sender or doc.sender)
        item.processed_at = now
        item.next_action_at = None
        return follow


#: What a poll needs of its attempt and request, read as columns (no objects loaded: nearly
#: every poll finds nothing new, and loading and flushing an attempt and its request cost more
#: CPU than the poll's HTTP round trip). Built once: see storage/db.py ``by_id``.
_POLL_READ = (
    select(
        Attempt.external_id,
        Attempt.channel,
        Attempt.outcome,
        Attempt.sent_at,
        Attempt.notified_until,
        Attempt.subscription,
        Attempt.request_id,
        RecordRequest.status,
    )
    .join(RecordRequest, RecordRequest.id == Attempt.request_id)
    .where(Attempt.id == bindparam("id"))
)
_POLL_STOP = (
    update(Attempt)
    .where(Attempt.id == bindparam("attempt"))
    .values(poll_at=None, subscription=None)
    .execution_options(synchronize_session=False)  # no attempt is loaded in the session
)
#: A poll that found nothing new sets only the next poll, and only if nothing changed the
#: attempt or closed its request since it was read (else the whole result is taken, below).
_POLL_AGAIN = (
    update(Attempt)
    .where(
        Attempt.id == bindparam("attempt"),
        Attempt.outcome == bindparam("was"),
        Attempt.poll_at.is_not(None),
        select(RecordRequest.id)
        .where(
            RecordRequest.id == Attempt.request_id,
            RecordRequest.status == RequestStatus.OPEN.value,
        )
        .exists(),
    )
    .values(poll_at=bindparam("next_poll"))
    .execution_options(synchronize_session=False)
)
_CHASE_OF = select(RecordRequest.chase_id).where(RecordRequest.id == bindparam("request"))
_POLL_LOCKED = by_id(Attempt, joinedload(Attempt.request, innerjoin=True), lock_of=Attempt)
#: Task statuses after which nothing more comes: the attempt is polled no more.
_FINAL_STATUSES = frozenset({"completed", "rejected", "failed"})


def poll_task(
    cmd: PollTask,
    *,
    sessions: sessionmaker[Session],
    clock: Clock,
    store: ObjectStore,
    requesters: Mapping[ChannelKind, RecordsRequester],
    documents: DocumentChecker,
) -> list[Command]:
    """Poll a pull-style request (FHIR Task) and take in what it returned. Once nothing more
    is awaited from it, its far side's Subscription is ended (:func:`_end_notifications`);
    a closed request's attempt with a live one gets a last turn of its poll timer for that
    (worker/services/closing.py), and is not polled."""
    with transaction(sessions) as s:
        row = s.execute(_POLL_READ, {"id": cmd.attempt_id}).first()
        if row is None or row.external_id is None:
            return []
        stopped = row.status != RequestStatus.OPEN or row.outcome == AttemptOutcome.FAILED
        if stopped:
            s.execute(_POLL_STOP, {"attempt": cmd.attempt_id})
    requester = requesters[ChannelKind(row.channel)]
    assert isinstance(requester, PollingRequester)
    if stopped:
        _end_notifications(requester, row.subscription, cmd.attempt_id)
        return []
    now = clock.now()
    try:
        result = requester.poll(row.external_id)
    except TransientError:
        with transaction(sessions) as s:
            a = s.get(Attempt, cmd.attempt_id)
            assert a is not None
            a.poll_at = now + POLL_RETRY
        return []
    except PermanentError as exc:
        with transaction(sessions) as s:
            a = s.get(Attempt, cmd.attempt_id)
            assert a is not None
            a.poll_at = None
            a.outcome = AttemptOutcome.FAILED.value
            a.completed_at = now
            a.failure_reason = failure_reason(f"permanent: {exc}")
            ended, a.subscription = a.subscription, None
            follow: list[Command] = [PlanOutreach(a.request_id)]
        _end_notifications(requester, ended, cmd.attempt_id)
        return follow
    if _nothing_new(result, row.outcome):
        with transaction(sessions) as s:
            since = now - (row.sent_at or now)
            cadence = poll_delay(requester.poll_delay(since), since, row.notified_until, now)
            # read again: a request joining this one's chase meanwhile gave it a chase
            chase_id = s.execute(_CHASE_OF, {"request": row.request_id}).scalar()
            at = next_poll_at(now, cadence, _acts_at_of(s, chase_id, row.request_id))
            params = {"attempt": cmd.attempt_id, "was": row.outcome, "next_poll": at}
            if s.execute(_POLL_AGAIN, params).rowcount == 1:  # type: ignore[attr-defined]
                return []
    inspected = [inspect(doc, documents) for doc in result.documents]
    with transaction(sessions) as s:
        a = one_by_id(s, _POLL_LOCKED, cmd.attempt_id)
        assert a is not None
        follow = _take_poll_result(s, store, now, a, result, inspected, requester)
        ended = None
        if a.subscription is not None and (a.poll_at is None or a.notified_until is None):
            ended, a.subscription = a.subscription, None  # answered, or never reaches us
    _end_notifications(requester, ended, cmd.attempt_id)
    return follow


def _end_notifications(
    requester: RecordsRequester, subscription: str | None, attempt_id: str
) -> None:
    """End an attempt's Subscription once nothing more is awaited from it (its column already
    cleared, in the transaction that decided so). Best effort: one that cannot be ended now
    ends by itself at its end date, so it is logged, never retried."""
    if subscription is None or not isinstance(requester, EndsNotifications):
        return
    try:
        ended = requester.end_notifications(subscription)
    except ConnectorError as exc:
        log.warning("cdex.subscription_not_ended", attempt_id=attempt_id, error=type(exc).__name__)
        return
    log.info("cdex.subscription_ended", attempt_id=attempt_id, found=ended)


def _nothing_new(result: PollResult, outcome: str) -> bool:
    """The poll changes nothing but the next poll's time: no document, no "no records", no
    final status, and the attempt's outcome as it was read."""
    return (
        not result.documents
        and not result.no_records
        and result.status not in _FINAL_STATUSES
        and (result.outcome is None or result.outcome.value == outcome)
    )


def record_vendor_event(
    event: OrderEvent, *, sessions: sessionmaker[Session], clock: Clock
) -> list[Command]:
    """A verified retrieval-vendor callback: read its order now (the callback only says that
    something changed; the order says what). Duplicates and out-of-order callbacks only cause
    another read; a callback for an order we do not follow (finished, or not recorded yet: its
    first poll is set when the send is written) is ignored."""
    with transaction(sessions) as s:
        a = s.scalar(
            select(Attempt)
            .where(Attempt.external_id == event.external_id)
            .where(Attempt.channel == ChannelKind.VENDOR.value)
            .with_for_update()
        )
        if a is None or a.poll_at is None:
            log.info("vendor.callback_ignored", event_type=event.event_type)
            return []
        a.poll_at = clock.now() + LEASE  # leased: the command reads it; the timer if it is lost
        return [PollTask(a.id)]


def record_task_notification(
    key: str, focus: tuple[str, ...], *, sessions: sessionmaker[Session], clock: Clock
) -> list[Command]:
    """A verified notification that the Task sent by the attempt whose idempotency key is
    ``key`` changed (connectors/fhir/subscriptions.py): read it now, as for a vendor callback
    (the notification names the Task; the Task says what changed). One about another Task
    (``focus`` names none of ours), or for an attempt we do not poll (finished, withdrawn, or
    its send not written yet: its first poll is set then), is ignored."""
    with transaction(sessions) as s:
        a = s.scalar(_BY_KEY, {"key": key})
        if a is None or a.poll_at is None or a.external_id is None:
            log.info("cdex.notification_ignored", reason="not polled")
            return []
        if focus and not any(same_task(reference, a.external_id) for reference in focus):
            log.info("cdex.notification_ignored", reason="another Task", attempt_id=a.id)
            return []
        a.told_at = clock.now()
        a.poll_at = a.told_at + LEASE  # leased: the command reads it; the timer if it is lost
        return [PollTask(a.id)]


_BY_KEY = (
    select(Attempt)
    .where(Attempt.idempotency_key == bindparam("key"), Attempt.channel == ChannelKind.FHIR.value)
    .with_for_update()
)


def _take_poll_result(
    s: Session,
    store: ObjectStore,
    now: datetime,
    a: Attempt,
    result: PollResult,
    inspected: list[Inspected],
    requester: PollingRequester,
) -> list[Command]:
    follow: list[Command] = []
    r = a.request
    touched = result.outcome not in (None, AttemptOutcome.SENT)  # the connector's reading
    if a.notified_until is not None and a.told_at is None and touched:
        # the Task changed and its server never told us: its notifications do not reach us
        a.notified_until = None
        audit(s, now, "attempt.notifications_lost", a.case_id, attempt_id=a.id)
        log.warning("cdex.notifications_lost", attempt_id=a.id)
    if result.outcome is not None and a.outcome in (AttemptOutcome.PENDING, AttemptOutcome.SENT):
        a.outcome = result.outcome.value
        if result.outcome in (AttemptOutcome.DELIVERED, AttemptOutcome.FAILED):
            a.completed_at = now
        if result.outcome == AttemptOutcome.FAILED:
            a.failure_reason = failure_reason(result.reason or result.status)
            follow.append(PlanOutreach(r.id))
    for found in inspected:
        follow += accept_document(s, store, now, found, request=r, sender=a.destination)
    if result.no_records and r.status == RequestStatus.OPEN:
        follow += close_request(s, r, RequestStatus.NO_RECORDS, now)
        for other in coalescing.others(s, r):  # the provider holds none for this member
            if other.status == RequestStatus.OPEN:
                follow += close_request(s, other, RequestStatus.NO_RECORDS, now)
    done = (
        r.status != RequestStatus.OPEN
        or a.outcome == AttemptOutcome.FAILED
        or result.status in _FINAL_STATUSES
    )
    if done:
        a.poll_at = None
    else:
        since = now - (a.sent_at or now)
        cadence = poll_delay(requester.poll_delay(since), since, a.notified_until, now)
        a.poll_at = next_poll_at(now, cadence, _acts_at(s, r))
    return follow


def _acts_on(key: Any) -> Any:
    return (
        select(RecordRequest.next_action_at, Case.assemble_at)
        .join(Case, Case.id == RecordRequest.case_id)
        .where(key == bindparam("key"), RecordRequest.status == RequestStatus.OPEN.value)
    )


_ACTS_ON_CHASE = _acts_on(RecordRequest.chase_id)  # built once: see storage/db.py ``by_id``
_ACTS_ON_REQUEST = _acts_on(RecordRequest.id)


def _acts_at(s: Session, r: RecordRequest) -> list[datetime | None]:
    """The instants that act on an answer to ``r``: the next planning (attempt) and the
    packet assembly of every open request the answer serves (``r``'s chase, where there is
    one: a review that joined a campaign's chase is assembled long before the campaign's next
    attempt). One query."""
    return _acts_at_of(s, r.chase_id, r.id)


def _acts_at_of(s: Session, chase_id: str | None, request_id: str) -> list[datetime | None]:
    """:func:`_acts_at` of the request ``request_id`` in the chase ``chase_id`` (None: none)."""
    if chase_id is not None:
        rows = s.execute(_ACTS_ON_CHASE, {"key": chase_id})
    else:
        rows = s.execute(_ACTS_ON_REQUEST, {"key": request_id})
    return [at for row in rows for at in row]


def _match(
    s: Session, found: Inspected, request: RecordRequest | None, sender: str | None
) -> RecordRequest | None:
    """The request a document answers: given, by the reference printed on it, or by the one
    open request whose channel is the sender's number."""
    if request is None and found.check.accepted and found.reference:
        request = s.scalar(select(RecordRequest).where(RecordRequest.reference == found.reference))
    if request is None and sender:
        request = _by_sender(s, sender)
    return request


def _by_sender(s: Session, sender: str) -> RecordRequest | None:
    """The one open request whose channels name ``sender``'s number, or one of the open
    requests of the one chase they all belong to (the reply serves the chase whole); None
    when no open request or several unrelated ones use the number (the inbox then waits for
    a person). One aggregate over the number's rows of ``request_numbers`` (its primary key
    leads with the number): its cost follows the requests of that number, never every open
    request (100,000 in a campaign)."""
    number = normalized(sender)
    if number is None:
        return None
    n, chases, chased, first = s.execute(
        select(
            func.count(),
            func.count(distinct(RecordRequest.chase_id)),
            func.count(RecordRequest.chase_id),
            func.min(RecordRequest.id),
        )
        .select_from(RequestNumber)
        .join(RecordRequest, RecordRequest.id == RequestNumber.request_id)
        .where(
            RequestNumber.number == number,
            RecordRequest.status == RequestStatus.OPEN.value,
        )
    ).one()
    if n == 1 or (n > 1 and chases == 1 and chased == n):
        return s.get(RecordRequest, first)
    return None


def accept_document(
    s: Session,
    store: ObjectStore,
    now: datetime,
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
    request = _match(s, found, request, sender)
    case_id = request.case_id if request else None
    owner = case_id or "unmatched"
    ext = check.converted or "pdf"  # a fax TIFF is stored as the TIFF it was
    raw_uri = store.put(content_key(owner, "inbound", doc.data, ext), doc.data, doc.content_type)
    usable_uri = None
    if check.accepted and check.data != doc.data:
        usable_uri = store.put(
            content_key(owner, "usable", check.data, "pdf"), check.data, "application/pdf"
        )
    no_records = check.accepted and found.no_records
    status = DocumentStatus.ACCEPTED if check.accepted else DocumentStatus.QUARANTINED
    reason = check.reason
    if check.accepted and request is None:
        status, reason = DocumentStatus.QUARANTINED, UNMATCHED_REASON
    quality = None
    if status is DocumentStatus.ACCEPTED:
        quality = assess(
            s,
            request.case if request else None,
            check,
            found.texts,
            found.signatures,
            found.qa,
            no_records=no_records,
            blank_pages=found.blank_pages,
        )
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
        status=status.value,
        reason=reason,
        kind=(DocumentKind.NO_RECORDS if no_records else DocumentKind.RECORDS).value,
        received_at=now,
        flags=quality.flags if quality else [],
        qa=quality.qa if quality else None,
        review_status=review_for(quality.flags) if quality else None,
    )
    s.add(d)
    s.flush()
    audit(
        s,
        now,
        "document.received",
        case_id,
        document_id=d.id,
        status=status.value,
        pages=check.pages,
        reason=reason,
        sha256=check.sha256,
        flags=d.flags,
    )
    log.info(
        "document.received",
        case_id=case_id,
        document_id=d.id,
        status=status,
        pages=check.pages,
        flags=d.flags,
    )
    if request is not None and status is DocumentStatus.QUARANTINED:
        # The provider did answer: its unusable reply must not pass as silence.
        text = quarantined_reply(request.provider_id)
        case = request.case
        flag_case(case, text)
        audit(s, now, "case.attention", case.id, reasons=[text], document_id=d.id)
        log.warning("reply.quarantined", case_id=case.id, document_id=d.id, reason=reason)
    if request is None or status is not DocumentStatus.ACCEPTED:
        return []
    follow = []
    for other in coalescing.others(s, request):  # one outreach served them: so does its answer
        follow += _serve(s, now, d, found, other, no_records=no_records)
    return answer_request(s, request, now, no_records=no_records) + follow


def _serve(
    s: Session,
    now: datetime,
    d: Document,
    found: Inspected,
    request: RecordRequest,
    *,
    no_records: bool,
) -> list[Command]:
    """Attach document ``d`` (the answer to a chase) to ``request``, another request of the
    chase: a row of its own on ``request``'s case (same stored bytes, its own QA against that
    case's documents), audited there, and answering it."""
    quality = assess(
        s,
        request.case,
        found.check,
        found.texts,
        found.signatures,
        found.qa,
        no_records=no_records,
        blank_pages=found.blank_pages,
    )
    copy = Document(
        case_id=request.case_id,
        request_id=request.id,
        source=d.source,
        external_id=f"{d.external_id}#{request.id}"[:512],
        sender=d.sender,
        sha256=d.sha256,
        size=d.size,
        uri=d.uri,
        usable_uri=d.usable_uri,
        pages=d.pages,
        status=d.status,
        reason=d.reason,
        kind=d.kind,
        received_at=now,
        flags=quality.flags,
        qa=quality.qa,
        review_status=review_for(quality.flags),
    )
    s.add(copy)
    s.flush()
    audit(
        s,
        now,
        "document.received",
        request.case_id,
        document_id=copy.id,
        status=copy.status,
        pages=copy.pages,
        sha256=copy.sha256,
        flags=copy.flags,
        served_by=d.id,
    )
    return answer_request(s, request, now, no_records=no_records)


def answer_request(
    s: Session, request: RecordRequest, now: datetime, *, no_records: bool
) -> list[Command]:
    """An accepted document answers ``request``: it closes the request when open (fulfilled, or
    no records), else late records set off a supplemental packet where the case wants one."""
    if request.status == RequestStatus.OPEN:
        answer = RequestStatus.NO_RECORDS if no_records else RequestStatus.FULFILLED
        return close_request(s, request, answer, now)
    case = request.case
    if wants_supplemental(case_status(case), records=not no_records):
        case.next_action_at = now  # late records: a supplemental packet
        return [AssemblePacket(case.id)]
    return []
