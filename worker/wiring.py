"""Wiring: the one place that turns settings into concrete objects.

Actors, the API and the scheduler receive a :class:`Container`; none of them imports a
concrete connector, database engine or S3 client. Nothing here runs at import.
"""

from __future__ import annotations

import hashlib
import hmac
import socket
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import timedelta
from functools import partial
from typing import Any, Protocol

import httpx
import structlog
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from config.providers import ProviderDirectory
from config.settings import AgencyTransportSettings, Settings
from connectors.base import FaxChannel, PacketDeliverer, RecordsRequester
from connectors.vendor.router import RetrievalVendors
from storage.objects import ObjectNotFound, ObjectStore, UriReader
from worker.commands import Command
from worker.documents_check import DocumentChecker
from worker.domain.clock import Clock, SystemClock
from worker.domain.lifecycle import StatusChecks
from worker.domain.types import ChannelKind


class Dispatcher(Protocol):
    def enqueue(self, commands: Iterable[Command]) -> None: ...


class InlineDispatcher:
    """Runs commands in the calling thread, one after another (tests, one-shot tools)."""

    def __init__(self) -> None:
        self.container: Container | None = None
        self.queue: list[Command] = []
        self.ran: list[Command] = []
        self._running = False

    def bind(self, container: Container) -> None:
        self.container = container

    def enqueue(self, commands: Iterable[Command]) -> None:
        from worker.services import run_command

        self.queue.extend(commands)
        if self._running:
            return
        self._running = True
        try:
            while self.queue:
                cmd = self.queue.pop(0)
                assert self.container is not None
                self.ran.append(cmd)
                self.enqueue(run_command(self.container, cmd))
        finally:
            self._running = False


class EocLibrary:
    """The carrier's evidence-of-coverage documents, ``<plan_id>.pdf`` under a folder or prefix.

    ``fallback`` (simulation only) supplies a document for a plan the library lacks.
    """

    def __init__(
        self,
        base_uri: str,
        reader: UriReader,
        fallback: Callable[[str], bytes] | None = None,
    ) -> None:
        self.base_uri = base_uri.rstrip("/")
        self.reader = reader
        self.fallback = fallback

    def find(self, plan_id: str) -> bytes | None:
        """The plan's EOC document, or None when there is none."""
        try:
            return self.reader.read(f"{self.base_uri}/{plan_id}.pdf")
        except ObjectNotFound:
            return self.fallback(plan_id) if self.fallback is not None else None


@dataclass
class Container:
    settings: Settings
    clock: Clock
    engine: Engine
    sessions: sessionmaker[Session]
    store: ObjectStore
    reader: UriReader
    eoc_library: EocLibrary
    requesters: Mapping[ChannelKind, RecordsRequester]
    fax: FaxChannel
    #: the ``vendor`` channel: every configured retrieval vendor (also in ``requesters``)
    vendors: RetrievalVendors
    #: designees by provider NPI (GOODFAITH_PROVIDER_DIRECTORY)
    directory: ProviderDirectory
    deliverer: PacketDeliverer
    agencies: Mapping[str, AgencyTransportSettings]
    dispatcher: Dispatcher
    #: checks inbound documents within GOODFAITH_DOCUMENTS__* limits (worker/documents_check.py)
    documents: DocumentChecker
    #: demo/simulate: every agency id is served by the simulator
    open_agencies: bool = False
    #: demo/simulate: supplies an authorization for release when a notification lacks one
    authorization_fallback: Callable[[str, str], bytes] | None = None
    http: httpx.Client | None = None
    closers: list[Callable[[], None]] = field(default_factory=list)

    @property
    def carrier_name(self) -> str:
        return self.settings.carrier_name

    @property
    def responsible(self) -> str:
        """Who answers for the good-faith attestation (GOODFAITH_ATTESTATION_RESPONSIBLE)."""
        return self.settings.attestation_responsible

    @property
    def return_fax(self) -> str:
        """The carrier's fax number printed on letters: providers fax records back to it."""
        return self.settings.fax.from_number

    def media_token(self, attempt_id: str) -> str:
        """HMAC that lets a channel fetch one attempt's request letter without other access."""
        key = self.settings.media_secret.encode()
        return hmac.new(key, attempt_id.encode(), hashlib.sha256).hexdigest()[:32]

    def task_notify_token(self, key: str) -> str:
        """The bearer token a provider's FHIR server sends with notifications about the Task
        of the attempt whose idempotency key is ``key`` (:func:`task_notify_token`)."""
        return task_notify_token(self.settings.media_secret, key)

    def media_url(self, attempt_id: str) -> str:
        base = self.settings.public_base_url.rstrip("/")
        return f"{base}/v1/media/{attempt_id}?token={self.media_token(attempt_id)}"

    def delivery_media_token(self, delivery_id: str) -> str:
        """HMAC that lets the fax vendor fetch one delivery's fax document (cover sheet and
        packet). Keyed apart from letters: an attempt's token never opens a delivery."""
        key = self.settings.media_secret.encode()
        message = b"delivery:" + delivery_id.encode()
        return hmac.new(key, message, hashlib.sha256).hexdigest()[:32]

    def delivery_media_url(self, delivery_id: str) -> str:
        """Where the fax vendor fetches a delivery's fax document (ids only, no PHI)."""
        base = self.settings.public_base_url.rstrip("/")
        token = self.delivery_media_token(delivery_id)
        return f"{base}/v1/media/deliveries/{delivery_id}?token={token}"

    @property
    def status_checks(self) -> StatusChecks:
        """When the fax vendor is asked about a transmission with no final webhook."""
        s = self.settings
        return StatusChecks(
            after=timedelta(seconds=s.fax_status_check_after_s),
            every=timedelta(seconds=s.fax_status_check_every_s),
            give_up=timedelta(seconds=s.fax_status_give_up_s),
        )

    def agency_name(self, agency_id: str) -> str:
        agency = self.agencies.get(agency_id)
        return agency.name if agency else agency_id

    def close(self) -> None:
        for closer in reversed(self.closers):
            closer()
        self.closers.clear()


def task_notify_token(secret: str, key: str) -> str:
    """HMAC (keyed by ``GOODFAITH_MEDIA_SECRET``) a provider's FHIR server sends as its bearer
    token with notifications about the Task of the attempt whose idempotency key is ``key``.
    Keyed apart from media tokens: neither opens the other."""
    message = b"task-notify:" + key.encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def make_http_client(
    timeout_s: float = 30.0, *, mounts: Mapping[str, httpx.BaseTransport] | None = None
) -> httpx.Client:
    """The HTTP client connectors share. TCP_NODELAY: httpx writes a request's head and body
    separately, and without it Nagle's algorithm meets delayed ACKs and stalls each small
    request ~40 ms (measured on loopback: 37 ms per webhook before, ~2 ms after). ``mounts``:
    transports of their own for some base URLs (httpx's mounts; a time-compressed run calls
    its far side in-process, simulator/serving.py)."""
    transport = httpx.HTTPTransport(
        retries=0, socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]
    )
    return httpx.Client(
        transport=transport,
        mounts=dict(mounts or {}),
        timeout=httpx.Timeout(timeout_s, connect=10.0),
    )


def no_sleep(_seconds: float) -> None:
    """Transport-retry sleep for time-compressed runs: the virtual clock does not wait."""


def build_container(
    settings: Settings,
    *,
    clock: Clock | None = None,
    dispatcher: Dispatcher | None = None,
    http: httpx.Client | None = None,
    s3_client: Any = None,
    eoc_fallback: Callable[[str], bytes] | None = None,
    authorization_fallback: Callable[[str, str], bytes] | None = None,
    open_agencies: bool = False,
    extra_agencies: Mapping[str, AgencyTransportSettings] | None = None,
    retry_sleep: Callable[[float], None] = time.sleep,
    migrate_schema: bool = True,
    background_audit: bool = False,
) -> Container:
    """Build everything a worker, the API or the scheduler needs from ``settings``.

    ``background_audit``: chain audit events in one background thread of this process
    (long-running processes with many threads) rather than after each commit
    (storage/auditchain.py)."""
    from config.providers import load_provider_directory
    from connectors.fhir.subscriptions import TaskNotifications
    from connectors.registry import (
        BuildContext,
        build_deliverer,
        build_fax,
        build_fhir,
        build_vendors,
        task_notify_url,
    )
    from connectors.retry import transport_retrying
    from storage.db import make_engine, make_sessionmaker, migrate
    from storage.objects import make_s3_client, open_store

    closers: list[Callable[[], None]] = []
    if clock is None and settings.clock_file:
        from worker.sharedclock import FileClock

        clock = FileClock(settings.clock_file)
        structlog.get_logger("goodfaith.wiring").warning(
            "clock.virtual", clock_file=settings.clock_file
        )
    if http is None:
        http = make_http_client()
        closers.append(http.close)
    needs_s3 = settings.object_store.startswith("s3://") or settings.eoc_library.startswith("s3://")
    if s3_client is None and needs_s3:
        s3_client = make_s3_client(
            settings.s3_endpoint_url,
            settings.s3_region,
            max_pool_connections=settings.s3_pool_connections(),
            retry_mode=settings.s3_retry_mode,
            max_attempts=settings.s3_max_attempts,
        )
    engine = make_engine(settings.database_url, settings.db, durable=settings.durable_writes)
    closers.append(engine.dispose)
    capacity = settings.db.pool_size + settings.db.max_overflow
    if engine.dialect.name == "postgresql" and capacity <= settings.worker_threads:
        structlog.get_logger("goodfaith.wiring").warning(
            "db.pool_below_threads",
            pool=capacity,
            worker_threads=settings.worker_threads,
            hint="raise GOODFAITH_DB__POOL_SIZE or GOODFAITH_DB__MAX_OVERFLOW: threads wait "
            "GOODFAITH_DB__POOL_TIMEOUT_S for a connection, then fail",
        )
    if migrate_schema:
        migrate(engine)
    if background_audit:
        from storage.auditchain import chain_in_background, stop_background

        chain_in_background(engine)
        closers.append(lambda: stop_background(engine))  # closers run last first: before dispose
    reader = UriReader(s3_client)
    store = open_store(
        settings.object_store,
        s3_client=s3_client,
        sse=settings.s3_sse,
        fsync=settings.durable_writes,
    )

    def retrying() -> Any:
        return transport_retrying(sleep=retry_sleep)

    # Connectors come only from the registry (connectors/registry.py), keyed by settings.
    clock = clock or SystemClock()
    ctx = BuildContext(
        http=http,
        retrying=retrying,
        public_base_url=settings.public_base_url,
        clock=clock,
        task_notifications=TaskNotifications(
            endpoint=partial(task_notify_url, settings.public_base_url),
            token=partial(task_notify_token, settings.media_secret),
        ),
    )
    fax = build_fax(settings.fax, ctx)
    fhir = build_fhir(settings.fhir, ctx)
    vendors = build_vendors(settings.retrieval_vendors, ctx)
    agencies: dict[str, AgencyTransportSettings] = dict(settings.agencies)
    agencies.update(extra_agencies or {})
    deliverer = build_deliverer(agencies, replace(ctx, fax=fax, carrier_name=settings.carrier_name))
    container = Container(
        settings=settings,
        clock=clock,
        engine=engine,
        sessions=make_sessionmaker(engine),
        store=store,
        reader=reader,
        eoc_library=EocLibrary(settings.eoc_library, reader, eoc_fallback),
        requesters={ChannelKind.FAX: fax, ChannelKind.FHIR: fhir, ChannelKind.VENDOR: vendors},
        fax=fax,
        vendors=vendors,
        directory=load_provider_directory(settings.provider_directory),
        deliverer=deliverer,
        agencies=agencies,
        dispatcher=dispatcher or InlineDispatcher(),
        documents=DocumentChecker(settings.documents),
        open_agencies=open_agencies,
        authorization_fallback=authorization_fallback,
        http=http,
        closers=closers,
    )
    closers.append(container.documents.close)  # its idle checking processes
    bind = getattr(container.dispatcher, "bind", None)
    if bind is not None:  # the dispatcher runs commands here, or looks their lanes up here
        bind(container)
    return container


_lock = threading.Lock()
_current: Container | None = None
_factory: Callable[[], Container] | None = None


def set_container(container: Container | None) -> None:
    """Install the container the actors of this process use."""
    global _current
    with _lock:
        _current = container


def set_factory(factory: Callable[[], Container]) -> None:
    """How :func:`current` builds the container on first use (the worker entrypoint sets it)."""
    global _factory
    with _lock:
        _factory = factory


def current() -> Container:
    """The container of this process, built on first use."""
    global _current
    with _lock:
        if _current is None:
            if _factory is None:
                raise RuntimeError("no container: call wiring.set_container or set_factory first")
            _current = _factory()
        return _current


def close_current() -> None:
    """Close the container of this process, if one was built (a worker process shutting
    down: its background audit chainer chains what is pending, its pools are closed)."""
    global _current
    with _lock:
        container, _current = _current, None
    if container is not None:
        container.close()
