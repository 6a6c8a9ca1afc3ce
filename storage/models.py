"""The system of record: every case, request, attempt, document, packet and delivery is a row.

Instants are stored as UTC (``UTCDateTime``) and come back timezone-aware, on SQLite and
PostgreSQL alike. Timers are columns (``next_action_at``, ``redial_at``, ``poll_at``): the
scheduler tick enqueues whatever is due, so losing the broker loses no work.

PHI lives only here (insured name, birth date, member id, the original notification) and in
the object store: never in queue messages or logs.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    event,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship
from sqlalchemy.types import TypeDecorator


class UTCDateTime(TypeDecorator[datetime]):
    """Stores aware datetimes as naive UTC; returns them aware (UTC). Naive input is refused."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the database; use an aware instant")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


def new_id() -> str:
    return uuid.uuid4().hex


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: UTCDateTime,
        dict[str, Any]: JSON,
        list[Any]: JSON,
    }


class Campaign(Base):
    """Bulk record retrieval (retrospective utilization review samples, risk-adjustment charts):
    many record requests loaded at once, each a one-request case under this campaign, chased
    with the campaign's own outreach policy in the lowest-priority lane (``bulk``)."""

    __tablename__ = "campaigns"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(128))
    jurisdiction: Mapped[str] = mapped_column(String(16))  # letters' zone and business calendar
    #: the outreach policy: documented attempts each request gets (worker.domain.outreach)
    attempts: Mapped[int] = mapped_column(Integer)
    #: the nominal gap between attempts, as a fraction of the request's window (business time)
    spacing_fraction: Mapped[float] = mapped_column(Float)
    #: "listed": the first attempt takes the provider's first channel; "profile": the channel
    #: that has answered best for this provider (worker/readmodels/profiles.py)
    first_channel: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), default="open")  # open | cancelled
    requests: Mapped[int] = mapped_column(Integer, default=0)  # how many were loaded
    created_at: Mapped[datetime]
    created_by: Mapped[str] = mapped_column(String(128))  # the key's name, or "cli"
    cancelled_at: Mapped[datetime | None]
    #: the load that made it: "key:<Idempotency-Key>" when one was given (CLI ``--key``), else
    #: "sha256:<content_sha256>"; unique, so the same load again finds this campaign
    load_key: Mapped[str | None] = mapped_column(String(80))
    #: SHA-256 of the campaign as validated (head and rows; CSV or JSON alike)
    content_sha256: Mapped[str | None] = mapped_column(String(64))

    __table_args__ = (Index("ix_campaigns_load_key", "load_key", unique=True),)


class Case(Base):
    __tablename__ = "cases"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    notification_id: Mapped[str] = mapped_column(String(128), unique=True)
    jurisdiction: Mapped[str] = mapped_column(String(16))
    review_type: Mapped[str] = mapped_column(String(16))
    agency_id: Mapped[str] = mapped_column(String(64))
    received_at: Mapped[datetime]
    opened_at: Mapped[datetime]
    due_at: Mapped[datetime]
    assemble_at: Mapped[datetime]
    deliver_by: Mapped[datetime]
    # open → assembling → delivering → delivered | late; cancelled at any point before delivery
    status: Mapped[str] = mapped_column(String(16), default="open")
    insured_member_id: Mapped[str] = mapped_column(String(64), index=True)
    insured_name: Mapped[str] = mapped_column(String(256))
    insured_birth_date: Mapped[str] = mapped_column(String(10))
    plan_id: Mapped[str] = mapped_column(String(64))
    eoc_uri: Mapped[str | None] = mapped_column(String(1024))  # as given, or found in the library
    eoc_object_uri: Mapped[str | None] = mapped_column(String(1024))  # our stored copy
    authorization_uri: Mapped[str | None] = mapped_column(String(1024))
    authorization_object_uri: Mapped[str | None] = mapped_column(String(1024))
    dispute: Mapped[dict[str, Any]]
    notification: Mapped[dict[str, Any]]  # the intake document as received
    attention: Mapped[str | None] = mapped_column(String(256))  # why ops must look (e.g. no EOC)
    next_action_at: Mapped[datetime | None]  # assembly / delivery timer
    delivered_at: Mapped[datetime | None]
    created_at: Mapped[datetime]
    watchdog_at: Mapped[datetime | None]  # the watchdog leaves the case alone until then
    # opening (EOC, authorization, first outreach) not yet done: re-driven then (a lease)
    open_at: Mapped[datetime | None] = mapped_column(index=True)
    #: set for a campaign's request (no agency, no packet: ends ``completed``); None: a review
    campaign_id: Mapped[str | None] = mapped_column(String(32), index=True)

    requests: Mapped[list[RecordRequest]] = relationship(
        back_populates="case", order_by="RecordRequest.position"
    )
    packets: Mapped[list[Packet]] = relationship(back_populates="case", order_by="Packet.sequence")

    __table_args__ = (
        Index("ix_cases_status_next", "status", "next_action_at"),
        # the watchdog's "past deliver_by / assemble_at" (migration 0017)
        Index("ix_cases_deliver_by", "deliver_by"),
        Index("ix_cases_assemble_at", "assemble_at"),
        # the opening timer: cases not yet opened, earliest deliver_by first
        Index(
            "ix_cases_opening",
            "deliver_by",
            "open_at",
            postgresql_where=text("open_at IS NOT NULL"),
            sqlite_where=text("open_at IS NOT NULL"),
        ),
    )


class RecordRequest(Base):
    """Records the carrier does not hold, asked of one provider (or its designee)."""

    __tablename__ = "record_requests"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    case_id: Mapped[str] = mapped_column(ForeignKey("cases.id"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    provider_id: Mapped[str] = mapped_column(String(64), index=True)
    provider_name: Mapped[str] = mapped_column(String(256))
    npi: Mapped[str | None] = mapped_column(String(10))
    role: Mapped[str] = mapped_column(String(32))
    network: Mapped[str] = mapped_column(String(8))
    # [{kind, destination, designee, owner_id}]; designee channels add designee_id and
    # designee_name (the retrieval vendor), printed on the attestation
    channels: Mapped[list[Any]]
    #: the provider's own local ["HH:MM", "HH:MM"] opening hours; None: the jurisdiction's
    business_hours: Mapped[list[Any] | None]
    #: distinct business openings the outreach window allowed (worker.domain.outreach)
    business_windows: Mapped[int | None] = mapped_column(Integer)
    reference: Mapped[str] = mapped_column(String(16), unique=True)  # GF-XXXXXXXX
    # open → fulfilled | no_records | unresponsive | cancelled
    status: Mapped[str] = mapped_column(String(16), default="open")
    next_action_at: Mapped[datetime | None]
    closed_at: Mapped[datetime | None]
    #: the chase this request belongs to (the id of its first request): every open request
    #: for the same member and provider shares one outreach (worker/services/coalescing.py)
    chase_id: Mapped[str | None] = mapped_column(String(32), index=True)

    case: Mapped[Case] = relationship(back_populates="requests")
    attempts: Mapped[list[Attempt]] = relationship(
        back_populates="request", order_by="Attempt.number"
    )
    #: its channels' fax numbers, normalised (written with the request; channels never change)
    numbers: Mapped[list[RequestNumber]] = relationship(cascade="all, delete-orphan")

    __table_args__ = (
        UniqueConstraint("case_id", "provider_id"),
        Index("ix_requests_status_next", "status", "next_action_at"),
    )


class RequestNumber(Base):
    """A fax number one of a request's channels names, in E.164 (worker/domain/faxnumbers.py).
    An inbound fax quoting no reference is matched by its sender's number here: the primary
    key leads with the number, so the look-up reads the few requests of that number, not every
    open request (services/inbound.py)."""

    __tablename__ = "request_numbers"

    number: Mapped[str] = mapped_column(String(20), primary_key=True)
    request_id: Mapped[str] = mapped_column(ForeignKey("record_requests.id"), primary_key=True)


class Attempt(Base):
    """One documented good-faith attempt. Written (with its idempotency key) before sending."""

    __tablename__ = "attempts"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    request_id: Mapped[str] = mapped_column(ForeignKey("record_requests.id"), index=True)
    case_id: Mapped[str] = mapped_column(ForeignKey("cases.id"), index=True)
    number: Mapped[int] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(String(16))  # initial | follow_up | escalation
    planned_at: Mapped[datetime]
    sent_at: Mapped[datetime | None]
    completed_at: Mapped[datetime | None]
    channel: Mapped[str] = mapped_column(String(8))
    destination: Mapped[str] = mapped_column(String(256))
    designee: Mapped[bool] = mapped_column(Boolean, default=False)
    requested: Mapped[str] = mapped_column(Text)  # what was asked for, in words
    idempotency_key: Mapped[str] = mapped_column(String(64), unique=True)
    outcome: Mapped[str] = mapped_column(String(16), default="pending")
    transmissions: Mapped[int] = mapped_column(Integer, default=0)  # incl. transport redials
    external_id: Mapped[str | None] = mapped_column(String(512), index=True)
    vendor: Mapped[str | None] = mapped_column(String(32))  # the requester's registry name
    failure_reason: Mapped[str | None] = mapped_column(String(256))
    letter_uri: Mapped[str | None] = mapped_column(String(1024))
    redial_at: Mapped[datetime | None] = mapped_column(index=True)  # transport retry, same attempt
    poll_at: Mapped[datetime | None] = mapped_column(index=True)  # pull channels: next poll
    check_at: Mapped[datetime | None]  # fax: ask the vendor's status (ix_attempts_check_sent)
    sending_until: Mapped[datetime | None]  # a transmission is under way until then (SEND_LEASE)
    #: the case was cancelled: withdraw this attempt's request at the far side (FHIR Task →
    #: cancelled) when due; cleared once done or impossible
    cancel_at: Mapped[datetime | None] = mapped_column(index=True)
    #: a coalesced chase: the attempt that went out (on another request of the chase) and that
    #: this row documents for its own request; such a row is never sent itself, and follows
    #: that attempt's outcome (``_mirror_served_attempts`` below)
    served_by: Mapped[str | None] = mapped_column(String(32), index=True)
    #: the far side notifies us of this request's changes until then (a CDex Subscription,
    #: connectors/fhir/subscriptions.py): polls are a safety net (worker/domain/polling.py)
    notified_until: Mapped[datetime | None]
    #: the last notification of a change to this request (None: none yet; migration 0020)
    told_at: Mapped[datetime | None]
    #: the far side's Subscription to this request's changes while it is live (its URL): ended
    #: once nothing more is awaited from the request (worker/services/inbound.py, migration 0021)
    subscription: Mapped[str | None] = mapped_column(String(1024))

    request: Mapped[RecordRequest] = relationship(back_populates="attempts")

    __table_args__ = (
        UniqueConstraint("request_id", "number"),
        # the check timer: faxes still sent, earliest check first (migration 0018)
        Index(
            "ix_attempts_check_sent",
            "check_at",
            postgresql_where=text("outcome = 'sent'"),
            sqlite_where=text("outcome = 'sent'"),
        ),
    )


class InboundItem(Base):
    """Something that arrived from outside (a webhook's inbound fax) and awaits ingestion.
    Keyed by source and the channel's own id: a redelivered webhook is recognised."""

    __tablename__ = "inbound_items"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    source: Mapped[str] = mapped_column(String(16))
    external_id: Mapped[str] = mapped_column(String(512))
    received_at: Mapped[datetime]
    payload: Mapped[dict[str, Any]]  # channel metadata (media URL, numbers); no document bytes
    processed_at: Mapped[datetime | None]
    next_action_at: Mapped[datetime | None] = mapped_column(index=True)

    __table_args__ = (UniqueConstraint("source", "external_id"),)


class Document(Base):
    __tablename__ = "documents"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    case_id: Mapped[str | None] = mapped_column(ForeignKey("cases.id"), index=True)
    request_id: Mapped[str | None] = mapped_column(ForeignKey("record_requests.id"), index=True)
    source: Mapped[str] = mapped_column(String(16))
    external_id: Mapped[str] = mapped_column(String(512))
    sender: Mapped[str | None] = mapped_column(String(256))
    sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(Integer)
    uri: Mapped[str] = mapped_column(String(1024))  # raw bytes as received
    usable_uri: Mapped[str | None] = mapped_column(String(1024))  # repaired / decrypted copy
    pages: Mapped[int] = mapped_column(Integer, default=0)
    status: Mapped[str] = mapped_column(String(16))  # accepted | quarantined
    reason: Mapped[str | None] = mapped_column(String(256))
    kind: Mapped[str] = mapped_column(String(16), default="records")  # records | no_records
    received_at: Mapped[datetime]
    packet_id: Mapped[str | None] = mapped_column(ForeignKey("packets.id"))
    #: QA flags (repaired, duplicate, cloned, wrong_patient); None: none (older rows too)
    flags: Mapped[list[Any] | None] = mapped_column(JSON)
    #: per-page MinHash signatures and dates of service, and what the checks found (no text)
    qa: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    #: pending (flagged, held for a person) | released | rejected; None: no review needed
    review_status: Mapped[str | None] = mapped_column(String(16), index=True)
    reviewed_at: Mapped[datetime | None]
    reviewed_by: Mapped[str | None] = mapped_column(String(128))
    review_note: Mapped[str | None] = mapped_column(String(256))

    __table_args__ = (UniqueConstraint("source", "external_id"),)


class Packet(Base):
    """A delivered (or to-be-delivered) packet. Immutable once written."""

    __tablename__ = "packets"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    case_id: Mapped[str] = mapped_column(ForeignKey("cases.id"), index=True)
    sequence: Mapped[int] = mapped_column(Integer)  # 1 = initial, 2.. = supplemental
    supplemental: Mapped[bool] = mapped_column(Boolean, default=False)
    uri: Mapped[str] = mapped_column(String(1024))
    manifest_uri: Mapped[str] = mapped_column(String(1024))
    sha256: Mapped[str] = mapped_column(String(64))
    pages: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime]

    case: Mapped[Case] = relationship(back_populates="packets")
    deliveries: Mapped[list[Delivery]] = relationship(back_populates="packet")

    __table_args__ = (UniqueConstraint("case_id", "sequence"),)


class Delivery(Base):
    __tablename__ = "deliveries"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    packet_id: Mapped[str] = mapped_column(ForeignKey("packets.id"), index=True)
    case_id: Mapped[str] = mapped_column(ForeignKey("cases.id"), index=True)
    agency_id: Mapped[str] = mapped_column(String(64))
    idempotency_key: Mapped[str] = mapped_column(String(64), unique=True)
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending|delivered|failed
    tries: Mapped[int] = mapped_column(Integer, default=0)
    next_action_at: Mapped[datetime | None] = mapped_column(index=True)
    attempted_at: Mapped[datetime | None]
    delivered_at: Mapped[datetime | None]
    receipt_id: Mapped[str | None] = mapped_column(String(256))
    error: Mapped[str | None] = mapped_column(String(512))
    # --- fax transports only (confirmed later by the vendor; lifecycle.fax_delivery_action) ---
    #: what is faxed (cover sheet + packet), written once before the first transmission
    document_uri: Mapped[str | None] = mapped_column(String(1024))
    transmissions: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    #: the fax vendor's id of the current transmission; cleared when that transmission failed
    external_id: Mapped[str | None] = mapped_column(String(512), index=True)
    vendor: Mapped[str | None] = mapped_column(String(32))  # the fax vendor's registry name
    #: a transmission is being handed to the vendor until then (SEND_LEASE); still set after
    #: it ended means a crash mid-send: the vendor is asked before anything is sent again
    sending_until: Mapped[datetime | None]
    sent_at: Mapped[datetime | None]  # when the current transmission was handed over

    packet: Mapped[Packet] = relationship(back_populates="deliveries")


class DeadLetter(Base):
    """A message dramatiq gave up on (retries exhausted). Ids and the error's type only: no
    message body, no PHI. ``retried_at`` is set when ops re-enqueue its command."""

    __tablename__ = "dead_letters"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    message_id: Mapped[str] = mapped_column(String(64), unique=True)  # dramatiq's message id
    actor: Mapped[str] = mapped_column(String(64))
    command: Mapped[str] = mapped_column(String(64))  # the command type (worker/commands.py)
    entity_id: Mapped[str] = mapped_column(String(64))
    case_id: Mapped[str | None] = mapped_column(String(32), index=True)
    error: Mapped[str] = mapped_column(String(128))  # exception type name, never its message
    retries: Mapped[int] = mapped_column(Integer, default=0)
    failed_at: Mapped[datetime]
    retried_at: Mapped[datetime | None] = mapped_column(index=True)


class ApiKey(Base):
    """A caller of the HTTP API. Only the SHA-256 of the key is stored (keys are 256-bit random
    tokens, so a fast hash is enough); ``prefix`` is its first characters, for people to tell
    keys apart. Revoked keys stay, for the audit trail."""

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    role: Mapped[str] = mapped_column(String(16))  # intake | ops | compliance | admin
    name: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]


class AuditEvent(Base):
    """Append-only trail. Rows are never updated or deleted (enforced below), and each carries
    the hash of the one before (``storage/auditchain.py``): ``seq`` is its place in the chain,
    ``hash`` the SHA-256 over its content and ``prev_hash``."""

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    case_id: Mapped[str | None] = mapped_column(String(32), index=True)
    at: Mapped[datetime]
    kind: Mapped[str] = mapped_column(String(64))
    detail: Mapped[dict[str, Any]]  # ids and outcomes only, no PHI
    seq: Mapped[int | None] = mapped_column(Integer, index=True, unique=True)
    prev_hash: Mapped[str | None] = mapped_column(String(64))
    hash: Mapped[str | None] = mapped_column(String(64))


class AuditChain(Base):
    """The head of the audit chain: one row (id 1), the last event's ``seq`` and ``hash``.
    The chainer locks it (``FOR UPDATE``), so there is one chain and one chainer at a time."""

    __tablename__ = "audit_chain"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, default=0)
    hash: Mapped[str] = mapped_column(String(64))


class AuditPending(Base):
    """An audit event committed but not yet in the chain: written by the transaction that
    records it, without any lock, and moved into ``audit_events`` (with its ``seq`` and
    hashes) by the one chainer holding the head row (``storage/auditchain.py``)."""

    __tablename__ = "audit_pending"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    case_id: Mapped[str | None] = mapped_column(String(32))
    at: Mapped[datetime]
    kind: Mapped[str] = mapped_column(String(64))
    detail: Mapped[dict[str, Any]]


class AppendOnlyError(RuntimeError):
    pass


_COMMITTED = "goodfaith.committed"


@event.listens_for(Session, "after_commit")
def _note_commit(session: Session) -> None:
    """Note that the transaction committed; its events are chained once it has ended. A
    savepoint's release fires this event too, with the transaction still open: the events
    wait for its commit (chaining then would not see them, and on SQLite would wait for the
    lock the transaction holds)."""
    if not session.in_nested_transaction():
        session.info[_COMMITTED] = True


@event.listens_for(Session, "after_transaction_end")
def _chain_audit_events(session: Session, transaction: Any) -> None:
    """Chain the events a committed transaction recorded, once it has given its connection
    back to the pool: chaining takes a connection of its own, and a SQLite engine has only
    one (storage/db.py)."""
    if transaction.parent is not None or not session.info.pop(_COMMITTED, False):
        return
    from storage.auditchain import committed

    committed(session)


@event.listens_for(Session, "before_flush")
def _audit_is_append_only(session: Session, flush_context: Any, instances: Any) -> None:
    for obj in list(session.dirty) + list(session.deleted):
        if isinstance(obj, AuditEvent):
            raise AppendOnlyError("audit_events is append-only: add a new event instead")


#: What a row documenting a chase's attempt (``Attempt.served_by``) copies from the attempt
#: that went out. Not its external id: webhooks and status checks find the sending attempt.
MIRRORED = (
    "sent_at",
    "completed_at",
    "outcome",
    "transmissions",
    "vendor",
    "failure_reason",
    "letter_uri",
)


@event.listens_for(Session, "before_flush")
def _mirror_served_attempts(session: Session, flush_context: Any, instances: Any) -> None:
    """A chase's sending attempt (``served_by`` its own id) changed: the rows documenting it
    for the chase's other requests follow, in the same transaction, whichever code path
    changed it (send, redial, webhook, status check, poll). Other attempts cost nothing here."""
    changed = [
        obj
        for obj in session.dirty
        if isinstance(obj, Attempt) and obj.served_by is not None and obj.served_by == obj.id
    ]
    if not changed:
        return
    from sqlalchemy import select

    with session.no_autoflush:
        for sending in changed:
            mirrors = session.scalars(
                select(Attempt).where(Attempt.served_by == sending.id, Attempt.id != sending.id)
            )
            for mirror in mirrors:
                for name in MIRRORED:
                    setattr(mirror, name, getattr(sending, name))


class Sweep(Base):
    """A periodic look at a vendor for what its webhooks should have told us. One row per sweep
    (``inbound_fax``: faxes received whose ``fax.received`` webhook was lost); ``next_at`` is its
    timer (NULL while nothing is awaited), ``swept_at`` when the last sweep ran."""

    __tablename__ = "sweeps"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    next_at: Mapped[datetime | None] = mapped_column(index=True)
    swept_at: Mapped[datetime | None]
