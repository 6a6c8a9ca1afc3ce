"""Delivery: hand a packet to its agency. Transient failures retry on a database timer and
never give up (late beats never); a permanent failure flags the case for ops.

Two kinds of transport (``connectors/base.py``): a ``PacketDeliverer`` (HTTPS, SFTP) answers
with the agency's receipt at once; a ``FaxPacketTransport`` (agencies that take only fax) hands
the packet to the fax vendor, and the packet is delivered when the vendor confirms it — by its
status webhook (:func:`record_fax_status`, shared with request letters at
``POST /v1/webhooks/{vendor}``) or, when that is lost, by asking the vendor on the delivery's
own timer. One fax delivery, on the ``delivery`` timer (``Delivery.next_action_at``)::

    SEND   document (cover sheet + packet) stored once; transmission counted and leased
           (``sending_until``) before the vendor is called; the vendor fetches the document
           from ``GET /v1/media/deliveries/{id}?token=``; its fax id is written, and the timer
           becomes the first status check (``lifecycle.StatusChecks``)
    CHECK  the vendor is asked; delivered → delivered; failed → RETRY or FAILED
           (``lifecycle.fax_delivery_step``); no final status by the give-up time → RETRY
    LOOK   a transmission left mid-send by a crash: the vendor is asked for its key first,
           adopted when found, else sent again with the same key
    RETRY  a new transmission after ``lifecycle.delivery_backoff(tries)``; past ``deliver_by``
           the case is flagged for ops

An agency with a ``fallback_fax_number`` whose own transport fails permanently
(:func:`falls_back_to_fax`) has its packet faxed there instead, the case flagged; from then on
(its fax document stored) the delivery stays with the fax.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime

import structlog
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from connectors.base import (
    ConnectorError,
    DeliveryReceipt,
    FaxPacketTransport,
    FaxStatusEvent,
    HashMismatch,
    PacketDeliverer,
    PacketFax,
    PacketSubmission,
    PermanentError,
    RoutesAgencies,
    SendReceipt,
    TransientError,
)
from storage.db import transaction
from storage.models import Case, Delivery
from storage.objects import ObjectStore, content_key
from worker.commands import Command, DeliverPacket
from worker.domain.clock import Clock
from worker.domain.lifecycle import (
    LOOKUP_SKEW,
    SEND_LEASE,
    CaseStatus,
    DeliveryStatus,
    FaxDeliveryAction,
    FaxDeliveryStep,
    StatusChecks,
    delivery_backoff,
    delivery_target_missed,
    failure_reason,
    fax_delivery_action,
    fax_delivery_step,
    status_on_delivery,
    transmission_key,
)
from worker.domain.types import AttemptOutcome
from worker.services.audit import audit
from worker.services.mapping import flag_case

log = structlog.get_logger("goodfaith.services")


def deliver_packet(
    cmd: DeliverPacket,
    *,
    sessions: sessionmaker[Session],
    clock: Clock,
    store: ObjectStore,
    deliverer: PacketDeliverer,
    delivery_media_url: Callable[[str], str],
    status_checks: StatusChecks,
) -> list[Command]:
    """Hand a packet to the agency. Transient failures are retried on a database timer. An
    agency reached by fax is driven by :func:`_fax` (its receipt comes later)."""
    with transaction(sessions) as s:
        d = s.get(Delivery, cmd.delivery_id)
        if d is None or d.status != DeliveryStatus.PENDING:
            return []
        agency_id, by_fax = d.agency_id, d.document_uri is not None
    transport = _transport(deliverer, agency_id)
    fallback = deliverer.fallback_for(agency_id) if isinstance(deliverer, RoutesAgencies) else None
    if by_fax and fallback is not None:  # this delivery has fallen back to fax already
        transport = fallback
    if isinstance(transport, FaxPacketTransport):
        _fax(cmd.delivery_id, transport, sessions, clock, store, delivery_media_url, status_checks)
        return []
    submission = _submission(cmd.delivery_id, sessions, store)
    if submission is None:
        return []
    try:
        receipt = transport.deliver(submission)
    except ConnectorError as exc:
        if fallback is not None and falls_back_to_fax(exc):
            _fall_back(cmd.delivery_id, exc, sessions, clock)
            _fax(
                cmd.delivery_id, fallback, sessions, clock, store, delivery_media_url, status_checks
            )
            return []
        _record_failure(cmd.delivery_id, exc, sessions, clock)
    else:
        _record_delivered(cmd.delivery_id, receipt, sessions, clock)
    return []


def falls_back_to_fax(error: ConnectorError) -> bool:
    """Whether a failure of the agency's own transport sends the packet to its fallback fax:
    a permanent one (refused, credentials, endpoint gone), but not a hash mismatch (the
    packet itself is in doubt: a person must look) and not a transient one (retried)."""
    return isinstance(error, PermanentError) and not isinstance(error, HashMismatch)


def _fall_back(
    delivery_id: str, error: ConnectorError, sessions: sessionmaker[Session], clock: Clock
) -> None:
    """The agency's transport failed permanently: the packet goes by its fallback fax. The
    case is flagged, so the transport gets fixed."""
    with _tried(delivery_id, sessions, clock) as (s, d, case, now):
        d.error = str(error)[:512]
        if d.status != DeliveryStatus.PENDING:  # withdrawn meanwhile: no fallback fax either
            return
        reason = type(error).__name__
        flag_case(case, f"agency transport failed ({reason}): packet sent by fallback fax")
        audit(s, now, "delivery.fallback", case.id, delivery_id=d.id, error=reason, to="fax")
        log.warning("delivery.fallback", case_id=case.id, delivery_id=d.id, error=reason)


def _transport(deliverer: PacketDeliverer, agency_id: str) -> PacketDeliverer | FaxPacketTransport:
    """The transport that reaches ``agency_id`` (the router's own choice), or ``deliverer``
    itself when it routes nothing (a single transport; tests)."""
    if isinstance(deliverer, RoutesAgencies):
        found = deliverer.transport_for(agency_id)
        if found is not None:
            return found
    return deliverer  # an unknown agency: the router raises AgencyNotConfigured


def _submission(
    delivery_id: str, sessions: sessionmaker[Session], store: ObjectStore
) -> PacketSubmission | None:
    """What the transport is given for a pending delivery (None: no longer pending)."""
    with transaction(sessions) as s:
        d = s.get(Delivery, delivery_id)
        if d is None or d.status != DeliveryStatus.PENDING:
            return None
        p = d.packet
        case = s.get(Case, d.case_id)
        assert case is not None
        return PacketSubmission(
            idempotency_key=d.idempotency_key,
            agency_id=d.agency_id,
            case_ref=case.id,
            notification_id=case.notification_id,
            packet_pdf=store.get(p.uri),
            manifest=json.loads(store.get(p.manifest_uri)),
            sha256=p.sha256,
            supplemental=p.supplemental,
        )


@contextmanager
def _tried(
    delivery_id: str, sessions: sessionmaker[Session], clock: Clock
) -> Iterator[tuple[Session, Delivery, Case, datetime]]:
    """The delivery and its case, locked, with this try counted (one transaction)."""
    now = clock.now()
    with transaction(sessions) as s:
        d = s.get(Delivery, delivery_id, with_for_update=True)
        assert d is not None
        case = s.get(Case, d.case_id, with_for_update=True)
        assert case is not None
        d.tries += 1
        d.attempted_at = now
        yield s, d, case, now


def _record_delivered(
    delivery_id: str, receipt: DeliveryReceipt, sessions: sessionmaker[Session], clock: Clock
) -> None:
    with _tried(delivery_id, sessions, clock) as (s, d, case, now):
        _delivered(s, d, case, now, receipt_id=receipt.receipt_id)


def _delivered(
    s: Session, d: Delivery, case: Case, now: datetime, *, receipt_id: str, via: str | None = None
) -> None:
    """The agency has the packet (an immediate receipt, or the fax vendor's confirmation).
    After the case was withdrawn (a transmission already under way), the delivery records it
    and the case stays cancelled, flagged: the agency must be told."""
    d.status = DeliveryStatus.DELIVERED.value
    d.delivered_at = now
    d.receipt_id = receipt_id
    d.next_action_at = None
    d.error = None
    if case.status == CaseStatus.CANCELLED:
        flag_case(case, DELIVERED_AFTER_CANCEL)
        audit(s, now, "packet.delivered_after_cancel", case.id, delivery_id=d.id,
              receipt_id=receipt_id, **({"via": via} if via else {}))  # fmt: skip
        log.warning("packet.delivered_after_cancel", case_id=case.id, delivery_id=d.id)
        return
    if case.delivered_at is None:
        case.delivered_at = now
        case.status = status_on_delivery(now, case.due_at).value
    on_time = now <= case.due_at
    detail = {"via": via} if via else {}
    audit(
        s,
        now,
        "packet.delivered",
        case.id,
        delivery_id=d.id,
        receipt_id=receipt_id,
        on_time=on_time,
        **detail,
    )
    log.info("packet.delivered", case_id=case.id, delivery_id=d.id, on_time=on_time)


def _record_failure(
    delivery_id: str, error: ConnectorError, sessions: sessionmaker[Session], clock: Clock
) -> None:
    with _tried(delivery_id, sessions, clock) as (s, d, case, now):
        d.error = str(error)[:512]
        if d.status != DeliveryStatus.PENDING:  # withdrawn meanwhile: nothing more is tried
            return
        if isinstance(error, TransientError):  # keep trying: late beats never
            d.next_action_at = now + delivery_backoff(d.tries)
            audit(s, now, "delivery.retry", case.id, delivery_id=d.id, tries=d.tries)
            _flag_if_target_missed(case, d, now)
            return
        _failed(s, d, case, now, error=type(error).__name__)


def _flag_if_target_missed(case: Case, d: Delivery, now: datetime) -> None:
    # the internal target has passed: a person should look before the legal deadline (flagged
    # and logged once, however many retries follow)
    missed = delivery_target_missed(now, case.deliver_by, case.delivered_at is not None)
    if missed and flag_case(case, TARGET_MISSED):
        log.warning("delivery.target_missed", case_id=case.id, delivery_id=d.id)


def _failed(
    s: Session, d: Delivery, case: Case, now: datetime, *, error: str, via: str | None = None
) -> None:
    """A permanent failure: the delivery stops and the case is flagged (deliver by hand)."""
    d.status = DeliveryStatus.FAILED.value
    d.next_action_at = None
    flag_case(case, f"delivery to the agency failed: {error}")
    detail = {"via": via} if via else {}
    audit(s, now, "delivery.failed", case.id, delivery_id=d.id, error=error, **detail)
    log.error("delivery.failed", case_id=case.id, delivery_id=d.id, error=error)


# --- fax: the vendor confirms delivery later ---------------------------------------------------


@dataclass(frozen=True)
class _FaxWork:
    """What one delivery command does with a fax delivery, read under the row lock."""

    action: FaxDeliveryAction
    key: str | None = None  # SEND / LOOK: the transmission's key
    document_url: str | None = None  # SEND / LOOK: where the vendor fetches the document
    look_since: datetime | None = None  # LOOK: the vendor's faxes since then
    external_id: str | None = None  # CHECK: the transmission to ask about
    sent_at: datetime | None = None  # CHECK: when it was handed over


def _fax(
    delivery_id: str,
    transport: FaxPacketTransport,
    sessions: sessionmaker[Session],
    clock: Clock,
    store: ObjectStore,
    media_url: Callable[[str], str],
    checks: StatusChecks,
) -> None:
    """One delivery command for an agency reached by fax (see the module docstring). The
    packet is read from the store only when something is sent (not for a status check)."""
    if not _fax_document(delivery_id, transport, sessions, clock, store):
        return
    work = _start_fax(delivery_id, transport, sessions, clock, media_url)
    if work.action is FaxDeliveryAction.DROP:
        log.info("delivery.send_in_flight", delivery_id=delivery_id)
        return
    if work.action is FaxDeliveryAction.CHECK:
        assert work.external_id is not None and work.sent_at is not None
        _check_fax(delivery_id, transport, work.external_id, work.sent_at, sessions, clock, checks)
        return
    assert work.key is not None and work.document_url is not None
    submission = _submission(delivery_id, sessions, store)
    if submission is None:
        return  # no longer pending (delivered or failed meanwhile)
    fax = PacketFax(submission=submission, key=work.key, document_url=work.document_url)
    if work.action is FaxDeliveryAction.LOOK:
        assert work.look_since is not None
        try:
            found = transport.find_sent(fax, work.look_since)
        except TransientError as exc:  # no answer: ask again later; nothing is sent meanwhile
            _look_later(delivery_id, exc, sessions, clock)
            return
        except PermanentError as exc:
            # Cannot know whether it went out. A second copy of the packet is better than none
            # (the cover sheet's hash shows the agency it is the same): send again, same key.
            log.warning(
                "delivery.resend_unverified", delivery_id=delivery_id, error=type(exc).__name__
            )
            found = None
        if found is not None:
            _fax_sent(delivery_id, found, sessions, clock, checks, adopted=True)
            return
    try:
        receipt = transport.transmit(fax)
    except ConnectorError as exc:
        _fax_send_failed(delivery_id, exc, sessions, clock)
    else:
        _fax_sent(delivery_id, receipt, sessions, clock, checks)


def _fax_document(
    delivery_id: str,
    transport: FaxPacketTransport,
    sessions: sessionmaker[Session],
    clock: Clock,
    store: ObjectStore,
) -> bool:
    """The fax document (cover sheet + packet) is stored once, before the first transmission
    (outside any transaction: PDF work is slow). False when the delivery cannot go on."""
    with transaction(sessions) as s:
        d = s.get(Delivery, delivery_id)
        if d is None or d.status != DeliveryStatus.PENDING:
            return False
        if d.document_uri is not None:
            return True
    submission = _submission(delivery_id, sessions, store)
    if submission is None:
        return False
    try:
        document = transport.fax_document(submission, clock.now())
    except ConnectorError as exc:  # the stored packet is not what was recorded: never send it
        _record_failure(delivery_id, exc, sessions, clock)
        return False
    uri = store.put(
        content_key(submission.case_ref, "deliveries", document, "pdf"), document, "application/pdf"
    )
    with transaction(sessions) as s:
        d = s.get(Delivery, delivery_id, with_for_update=True)
        assert d is not None
        d.document_uri = d.document_uri or uri
    return True


def _start_fax(
    delivery_id: str,
    transport: FaxPacketTransport,
    sessions: sessionmaker[Session],
    clock: Clock,
    media_url: Callable[[str], str],
) -> _FaxWork:
    """Decide (``lifecycle.fax_delivery_action``) and, for a new transmission, count it and
    take the send lease, committed before the vendor is called."""
    now = clock.now()
    with transaction(sessions) as s:
        d = s.get(Delivery, delivery_id, with_for_update=True)
        assert d is not None
        if d.status != DeliveryStatus.PENDING:
            return _FaxWork(FaxDeliveryAction.DROP)
        action = fax_delivery_action(d.sending_until, d.external_id is not None, now)
        if action is FaxDeliveryAction.DROP:
            return _FaxWork(action)
        if action is FaxDeliveryAction.CHECK:
            d.next_action_at = now + LEASE_FOR_CHECK
            return _FaxWork(action, external_id=d.external_id, sent_at=d.sent_at or now)
        look_since = None
        if action is FaxDeliveryAction.LOOK:  # same transmission, same key: not counted again
            look_since = (d.sending_until or now) - SEND_LEASE - LOOKUP_SKEW
        else:
            d.transmissions += 1
            d.vendor = transport.vendor
            audit(s, now, "delivery.fax_started", d.case_id, delivery_id=d.id,
                  transmission=d.transmissions)  # fmt: skip
        d.sending_until = now + SEND_LEASE
        d.next_action_at = now + SEND_LEASE  # re-driven (LOOK) if this process dies mid-send
        return _FaxWork(
            action,
            key=transmission_key(d.idempotency_key, d.transmissions),
            document_url=media_url(d.id),
            look_since=look_since,
        )


#: A status check holds the delivery's timer this long while it asks the vendor.
LEASE_FOR_CHECK = SEND_LEASE


def _fax_sent(
    delivery_id: str,
    receipt: SendReceipt,
    sessions: sessionmaker[Session],
    clock: Clock,
    checks: StatusChecks,
    *,
    adopted: bool = False,
) -> None:
    """The vendor has the transmission: wait for its confirmation; the timer becomes the first
    status check (at once when adopted after a crash: its webhooks found no delivery)."""
    now = clock.now()
    with transaction(sessions) as s:
        d = s.get(Delivery, delivery_id, with_for_update=True)
        assert d is not None
        d.external_id = receipt.external_id
        d.sending_until = None
        d.sent_at = now
        d.attempted_at = now
        if d.status == DeliveryStatus.PENDING:
            d.next_action_at = now if adopted else checks.first(now)
        audit(
            s,
            now,
            "delivery.fax_adopted" if adopted else "delivery.fax_sent",
            d.case_id,
            delivery_id=d.id,
            external_id=receipt.external_id,
            transmission=d.transmissions,
        )
        log.info("delivery.fax_sent", case_id=d.case_id, delivery_id=d.id, adopted=adopted)


def _fax_send_failed(
    delivery_id: str, error: ConnectorError, sessions: sessionmaker[Session], clock: Clock
) -> None:
    """The vendor did not take the transmission: failed for good on a permanent error (an
    invalid number, our credentials); retried on the backoff on a transient one — with the
    same key, after looking for it at the vendor (a timeout may hide a fax it did create), so
    its lease is left ended rather than cleared."""
    with transaction(sessions) as s:
        d = s.get(Delivery, delivery_id, with_for_update=True)
        assert d is not None
        now = clock.now()
        d.sending_until = (
            min(d.sending_until or now, now) if isinstance(error, TransientError) else None
        )
        d.external_id = None
    _record_failure(delivery_id, error, sessions, clock)


def _look_later(
    delivery_id: str, error: ConnectorError, sessions: sessionmaker[Session], clock: Clock
) -> None:
    """The vendor could not be asked about a transmission left mid-send: ask again after the
    backoff (the lease stays set, so the next command looks again rather than sending)."""
    now = clock.now()
    with transaction(sessions) as s:
        d = s.get(Delivery, delivery_id, with_for_update=True)
        assert d is not None
        d.tries += 1
        d.sending_until = min(d.sending_until or now, now)  # ended: the next command LOOKs
        d.next_action_at = now + delivery_backoff(d.tries)
        d.error = str(error)[:512]
        log.warning("delivery.lookup_failed", delivery_id=d.id, error=type(error).__name__)


def _check_fax(
    delivery_id: str,
    transport: FaxPacketTransport,
    external_id: str,
    sent_at: datetime,
    sessions: sessionmaker[Session],
    clock: Clock,
    checks: StatusChecks,
) -> None:
    """The delivery's timer while a transmission awaits confirmation: ask the vendor (its
    webhook may be lost). No final status by ``checks.give_up`` → a new transmission."""
    event: FaxStatusEvent | None = None
    try:
        event = transport.status(external_id)
    except ConnectorError as exc:  # no answer this time: ask again, or give up on time
        log.warning(
            "delivery.status_check_failed", delivery_id=delivery_id, error=type(exc).__name__
        )
    now = clock.now()
    with transaction(sessions) as s:
        d = s.get(Delivery, delivery_id, with_for_update=True)
        assert d is not None
        if d.status != DeliveryStatus.PENDING or d.external_id != external_id:
            return  # a webhook or another check overtook this one
        if event is not None and event.outcome is not None:
            _apply_fax_status(s, d, event, now, via="status check")
            return
        following = checks.next(sent_at, now)
        if following is not None:
            d.next_action_at = following
            return
        reason = f"no final fax status from {d.vendor or 'the vendor'} within {checks.give_up}"
        log.warning("delivery.fax_status_unknown", case_id=d.case_id, delivery_id=d.id)
        _fax_retry(s, d, now, reason, via="status check")


def record_fax_status(
    event: FaxStatusEvent, *, sessions: sessionmaker[Session], clock: Clock
) -> list[Command] | None:
    """A fax status webhook, if it is about a packet fax: applied, and ``[]`` returned; None
    when no delivery has this fax id (the webhook is about a request letter). Duplicates,
    progress events and events for an earlier transmission change nothing."""
    with transaction(sessions) as s:
        d = s.scalar(select(Delivery).where(Delivery.external_id == event.fax_id).with_for_update())
        if d is None:
            return None
        under_way = d.status == DeliveryStatus.PENDING or (  # or confirmed after a withdrawal
            d.status == DeliveryStatus.CANCELLED and event.outcome is AttemptOutcome.DELIVERED
        )
        if event.outcome is not None and under_way:
            _apply_fax_status(s, d, event, clock.now(), via="webhook")
        return []


def _apply_fax_status(
    s: Session, d: Delivery, event: FaxStatusEvent, now: datetime, *, via: str
) -> None:
    """A final fax status for the delivery's current transmission (caller's transaction)."""
    step = fax_delivery_step(
        event.outcome is AttemptOutcome.DELIVERED, event.retryable, d.transmissions
    )
    if step is FaxDeliveryStep.DELIVERED:
        case = s.get(Case, d.case_id, with_for_update=True)
        assert case is not None
        _delivered(s, d, case, now, receipt_id=event.fax_id, via=via)
        return
    reason = failure_reason(event.failure_reason or "failed")
    if step is FaxDeliveryStep.RETRY:
        _fax_retry(s, d, now, reason, via=via)
        return
    case = s.get(Case, d.case_id, with_for_update=True)
    assert case is not None
    d.tries += 1
    d.error = f"fax failed: {reason}"[:512]
    d.external_id = None
    _failed(s, d, case, now, error="FaxFailed", via=via)


def _fax_retry(s: Session, d: Delivery, now: datetime, reason: str, *, via: str) -> None:
    """The transmission failed (busy line...): a new one after the delivery backoff; past the
    delivery target the case is flagged (late beats never)."""
    case = s.get(Case, d.case_id, with_for_update=True)
    assert case is not None
    d.tries += 1
    d.external_id = None
    d.error = f"fax: {reason}"[:512]
    d.next_action_at = now + delivery_backoff(d.tries)
    audit(
        s, now, "delivery.retry", case.id, delivery_id=d.id, tries=d.tries, reason=reason, via=via
    )
    _flag_if_target_missed(case, d, now)


#: Case.attention while the agency refuses the packet past the delivery target. Delivery's
#: reasons join those already there (an EOC still missing, a dead letter): none replaces another
TARGET_MISSED = "delivery target missed: the agency is not accepting the packet"
#: Case.attention when a withdrawn case's packet may have reached, or did reach, the agency
FAX_UNDER_WAY = "the packet's fax was under way when the case was withdrawn: tell the agency"
DELIVERED_AFTER_CANCEL = "the packet reached the agency after the case was withdrawn: tell it"


def cancel_delivery(s: Session, d: Delivery, case: Case, now: datetime) -> None:
    """The case was withdrawn before the agency had its packet: nothing more is sent (the
    delivery's timer stops, and its fax document is no longer handed to the vendor, so a fax
    still queued there fails at the fetch). A transmission already handed over is flagged;
    its confirmation, if it comes, is recorded (``packet.delivered_after_cancel``)."""
    in_flight = d.external_id is not None or (d.sending_until is not None and d.sending_until > now)
    d.status = DeliveryStatus.CANCELLED.value
    d.next_action_at = None
    audit(s, now, "delivery.cancelled", case.id, delivery_id=d.id, in_flight=in_flight)
    if in_flight:
        flag_case(case, FAX_UNDER_WAY)
