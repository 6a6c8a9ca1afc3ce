"""Delivery: hand a packet to its agency. Transient failures retry on a database timer and
never give up (late beats never); a permanent failure flags the case for ops."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime

import structlog
from sqlalchemy.orm import Session, sessionmaker

from connectors.base import (
    ConnectorError,
    DeliveryReceipt,
    PacketDeliverer,
    PacketSubmission,
    TransientError,
)
from storage.db import transaction
from storage.models import Case, Delivery
from storage.objects import ObjectStore
from worker.commands import Command, DeliverPacket
from worker.domain.clock import Clock
from worker.domain.lifecycle import (
    DeliveryStatus,
    delivery_backoff,
    delivery_target_missed,
    status_on_delivery,
)
from worker.services.audit import audit

log = structlog.get_logger("goodfaith.services")


def deliver_packet(
    cmd: DeliverPacket,
    *,
    sessions: sessionmaker[Session],
    clock: Clock,
    store: ObjectStore,
    deliverer: PacketDeliverer,
) -> list[Command]:
    """Hand a packet to the agency. Transient failures are retried on a database timer."""
    with transaction(sessions) as s:
        d = s.get(Delivery, cmd.delivery_id)
        if d is None or d.status != DeliveryStatus.PENDING:
            return []
        p = d.packet
        case = s.get(Case, d.case_id)
        assert case is not None
        submission = PacketSubmission(
            idempotency_key=d.idempotency_key,
            agency_id=d.agency_id,
            case_ref=case.id,
            notification_id=case.notification_id,
            packet_pdf=store.get(p.uri),
            manifest=json.loads(store.get(p.manifest_uri)),
            sha256=p.sha256,
            supplemental=p.supplemental,
        )
    try:
        receipt = deliverer.deliver(submission)
    except ConnectorError as exc:
        _record_failure(cmd.delivery_id, exc, sessions, clock)
    else:
        _record_delivered(cmd.delivery_id, receipt, sessions, clock)
    return []


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
        d.status = DeliveryStatus.DELIVERED.value
        d.delivered_at = now
        d.receipt_id = receipt.receipt_id
        d.next_action_at = None
        if case.delivered_at is None:
            case.delivered_at = now
            case.status = status_on_delivery(now, case.due_at).value
        on_time = now <= case.due_at
        audit(
            s,
            now,
            "packet.delivered",
            case.id,
            delivery_id=d.id,
            receipt_id=receipt.receipt_id,
            on_time=on_time,
        )
        log.info("packet.delivered", case_id=case.id, delivery_id=d.id, on_time=on_time)


def _record_failure(
    delivery_id: str, error: ConnectorError, sessions: sessionmaker[Session], clock: Clock
) -> None:
    with _tried(delivery_id, sessions, clock) as (s, d, case, now):
        d.error = str(error)[:512]
        if isinstance(error, TransientError):  # keep trying: late beats never
            d.next_action_at = now + delivery_backoff(d.tries)
            audit(s, now, "delivery.retry", case.id, delivery_id=d.id, tries=d.tries)
            if delivery_target_missed(now, case.deliver_by, case.delivered_at is not None):
                # the internal target has passed: a person should look before the legal deadline
                case.attention = "delivery target missed: the agency is not accepting the packet"
                log.warning("delivery.target_missed", case_id=case.id, delivery_id=d.id)
            return
        d.status = DeliveryStatus.FAILED.value
        d.next_action_at = None
        case.attention = f"delivery to the agency failed: {type(error).__name__}"
        audit(s, now, "delivery.failed", case.id, delivery_id=d.id, error=type(error).__name__)
        log.error("delivery.failed", case_id=case.id, delivery_id=d.id, error=type(error).__name__)
