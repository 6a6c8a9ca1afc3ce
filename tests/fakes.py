"""In-memory stand-ins for the connectors, for service tests without a network."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from config.settings import AgencySettings, DatabaseSettings, Settings
from connectors.base import (
    ConnectorError,
    DeliveryReceipt,
    FaxReceivedEvent,
    FaxStatusEvent,
    InboundDocument,
    PacketSubmission,
    RecordsRequest,
    SendReceipt,
)
from simulator.documents import generate_authorization_pdf, generate_eoc_pdf
from worker.commands import Command
from worker.domain.clock import VirtualClock
from worker.domain.types import ChannelKind
from worker.wiring import Container, InlineDispatcher, build_container


class Crash(Exception):
    """The process died mid-send (not a ConnectorError: nothing translated it)."""


@dataclass
class FakeRequester:
    """Records what it sends. ``crash_after_send``: the far side gets the request, then our
    process "dies" before the answer is written (raises :class:`Crash`)."""

    kind: ChannelKind = ChannelKind.FAX
    sent: list[RecordsRequest] = field(default_factory=list)
    fail_with: ConnectorError | None = None
    on_send: Callable[[RecordsRequest], None] | None = None
    vendor: str = "fake"
    crash_after_send: bool = False
    ids: dict[str, str] = field(default_factory=dict)  # idempotency key -> external id
    lookups: list[str] = field(default_factory=list)  # keys asked about by find_sent

    def send(self, request: RecordsRequest) -> SendReceipt:
        if self.on_send:
            self.on_send(request)
        if self.fail_with is not None:
            raise self.fail_with
        self.sent.append(request)
        external_id = f"fax-{len(self.sent)}-{uuid.uuid4().hex[:6]}"
        self.ids[request.idempotency_key] = external_id
        if self.crash_after_send:
            raise Crash("worker died before the answer was written")
        return SendReceipt(external_id=external_id)

    def find_sent(self, request: RecordsRequest, since: datetime) -> SendReceipt | None:
        self.lookups.append(request.idempotency_key)
        found = self.ids.get(request.idempotency_key)
        return SendReceipt(external_id=found) if found else None


@dataclass
class FakeFax(FakeRequester):
    """``statuses``: what :meth:`status` answers per fax id (absent: still sending)."""

    media: dict[str, bytes] = field(default_factory=dict)
    statuses: dict[str, FaxStatusEvent] = field(default_factory=dict)
    status_asked: list[str] = field(default_factory=list)
    received: list[FaxReceivedEvent] = field(default_factory=list)  # listed by list_received
    listed_since: list[datetime] = field(default_factory=list)

    def list_received(self, since: datetime) -> list[FaxReceivedEvent]:
        self.listed_since.append(since)
        if self.fail_with is not None:
            raise self.fail_with
        return [e for e in self.received if e.occurred_at >= since]

    def status(self, external_id: str) -> FaxStatusEvent | None:
        self.status_asked.append(external_id)
        if self.fail_with is not None:
            raise self.fail_with
        found = self.statuses.get(external_id)
        if found is not None:
            return found
        if external_id not in self.ids.values():
            return None
        return FaxStatusEvent(
            f"status-{external_id}", "fax.sending", external_id, datetime.now(UTC), None
        )

    def parse_webhook(self, body: bytes, headers: Mapping[str, str]) -> Any:
        raise NotImplementedError

    def fetch_media(self, url: str) -> InboundDocument:
        return InboundDocument(self.media[url], "application/pdf", ChannelKind.FAX, url)


@dataclass
class FakeDeliverer:
    submissions: list[PacketSubmission] = field(default_factory=list)
    fail_with: ConnectorError | None = None

    def deliver(self, submission: PacketSubmission) -> DeliveryReceipt:
        if self.fail_with is not None:
            raise self.fail_with
        self.submissions.append(submission)
        return DeliveryReceipt(
            f"rcpt-{len(self.submissions)}", datetime.now(UTC), submission.sha256
        )


class Recorded:
    """A dispatcher that only records the commands it is given, in order (a broker nobody
    consumes: the test runs, releases or inspects them itself). Thread-safe."""

    def __init__(self) -> None:
        self.commands: list[Command] = []
        self._lock = threading.Lock()

    def enqueue(self, commands: Iterable[Command]) -> None:
        with self._lock:
            self.commands.extend(commands)


def make_container(
    tmp: Path,
    start: datetime,
    database_url: str | None = None,
    db: DatabaseSettings | None = None,
    **kwargs: Any,
) -> tuple[Container, VirtualClock, FakeFax, FakeDeliverer]:
    clock = VirtualClock(start)
    settings = Settings(
        database_url=database_url or f"sqlite:///{tmp / 'gf.db'}",
        db=db or DatabaseSettings(),
        object_store=f"file://{tmp / 'objects'}",
        eoc_library=f"file://{tmp / 'eoc'}",
        agencies={
            "agency-a": AgencySettings(name="Agency A", submit_url="https://agency.invalid/x")
        },
    )
    kwargs.setdefault("eoc_fallback", generate_eoc_pdf)
    kwargs.setdefault("authorization_fallback", generate_authorization_pdf)
    c = build_container(settings, clock=clock, dispatcher=InlineDispatcher(), **kwargs)
    fax = FakeFax()
    deliverer = FakeDeliverer()
    c.requesters = {ChannelKind.FAX: fax, ChannelKind.FHIR: FakeRequester(ChannelKind.FHIR)}
    c.fax = fax  # type: ignore[assignment]
    c.deliverer = deliverer
    return c, clock, fax, deliverer


def bearer(c: Container, role: str, name: str = "test") -> dict[str, str]:
    """The Authorization header of a new API key with ``role`` (created in ``c``'s database)."""
    from worker.services.keys import Role, create_key

    made = create_key(c.sessions, Role(role), name, datetime.now(UTC))
    return {"Authorization": f"Bearer {made.key}"}


def api_client(c: Container, role: str | None) -> Any:
    """An in-process client of the API over ``c`` sending a new ``role`` key (None: no key)."""
    from api.app import create_app
    from simulator.serving import asgi_client

    client = asgi_client(create_app(lambda: c))
    if role is not None:
        client.headers.update(bearer(c, role))
    return client


def fax_delivered(fax_id: str, at: datetime) -> FaxStatusEvent:
    from worker.domain.types import AttemptOutcome

    return FaxStatusEvent(uuid.uuid4().hex, "fax.delivered", fax_id, at, AttemptOutcome.DELIVERED)


def fax_failed(fax_id: str, at: datetime, retryable: bool = True) -> FaxStatusEvent:
    from worker.domain.types import AttemptOutcome

    return FaxStatusEvent(
        uuid.uuid4().hex,
        "fax.failed",
        fax_id,
        at,
        AttemptOutcome.FAILED,
        failure_reason="user_busy",
        retryable=retryable,
    )


def fax_received(fax_id: str, media_url: str, at: datetime, sender: str) -> FaxReceivedEvent:
    return FaxReceivedEvent(uuid.uuid4().hex, fax_id, at, sender, "+16175550000", media_url)


def run_until(c: Container, clock: VirtualClock, until: datetime) -> None:
    """Advance the virtual clock timer by timer, ticking the scheduler, up to ``until``."""
    from worker.scheduler import next_due, tick

    while True:
        tick(c)
        nxt = next_due(c)
        if nxt is None or nxt > until:
            clock.advance_to(until)
            tick(c)
            return
        clock.advance_to(nxt)


@dataclass
class RecordedPolls:
    """A real polling requester (the CDex one), recording the instant of every poll per
    request (its external id)."""

    requester: Any
    clock: VirtualClock
    at: dict[str, list[datetime]] = field(default_factory=dict)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.requester, name)

    def poll(self, external_id: str) -> Any:
        self.at.setdefault(external_id, []).append(self.clock.now())
        return self.requester.poll(external_id)

    def poll_delay(self, since_sent: timedelta) -> timedelta:
        delay: timedelta = self.requester.poll_delay(since_sent)
        return delay

    def every(self) -> list[datetime]:
        """Every poll's instant, in order."""
        return sorted(t for times in self.at.values() for t in times)
