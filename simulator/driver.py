"""Time-compressed simulation: the real pipeline on a virtual clock.

The same intake, actors (dramatiq on Redis), outreach policy, connectors, packet assembly and
delivery run against the simulator (the far side of every channel, on localhost). Only the
clock is virtual: when nothing is in flight, the driver moves it to the next thing due —
a notification's receipt, a simulator event (webhook, inbound fax) or a database timer —
so days of case time pass in seconds. ``goodfaith demo`` is a simulation of the built-in
scenario (simulator/demo.py); the scenario format is in simulator/scenario.py.

One run, in order: :func:`_start` (Redis, our API, the simulator, the broker and workers, each
with its stop recorded), then, until the scenario is done or its ``until`` is reached,
:func:`_step` (set off what is due), :func:`_wait_idle`, :func:`_next_instant` and
:func:`_advance` (move the clock); then :func:`_collect` (the report).
"""

from __future__ import annotations

import contextlib
import math
import secrets
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal, Protocol

import dramatiq
import httpx
from dramatiq.middleware import Retries
from pydantic import SecretStr
from sqlalchemy import func, select

from api.app import create_app
from config.settings import FaxVendorSettings, RateLimitSettings, Settings
from connectors.fax.sinch import SinchSettings
from connectors.fax.telnyx import TelnyxSettings
from connectors.registry import webhook_url
from connectors.vendor.orders import RetrievalVendorSettings
from simulator.app import FAR_SIDES, Simulator
from simulator.base import FarSide
from simulator.documents import generate_authorization_pdf, generate_eoc_pdf
from simulator.inprocess import PoolDispatcher
from simulator.scenario import Scenario, far_side_book, route_fhir_to
from simulator.serving import InProcessASGITransport, free_port, run_in_thread
from simulator.sinch import INCOMING_PASSWORD, INCOMING_USERNAME
from simulator.telnyx import public_key_of
from storage.db import transaction
from storage.models import Attempt, Case, Document
from worker import services
from worker.actors import DeadLetters, InFlight, LogContext, lane_queues, register_actors
from worker.brokers import BrokerKind, delete_queues, make_broker
from worker.domain.clock import VirtualClock
from worker.domain.lanes import LANES
from worker.domain.lifecycle import CaseStatus
from worker.readmodels.report import build_report
from worker.redis_server import ensure_redis
from worker.scheduler import next_due, tick
from worker.wiring import Container, Dispatcher, build_container, make_http_client, no_sleep

__all__ = ["Progress", "SimulationResult", "run_simulation"]

_IDLE_TIMEOUT_S = 300  # wall seconds one step may keep messages in flight before we give up


@dataclass
class Progress:
    """A snapshot for a progress view: counts so far; ``wall_s`` in wall-clock seconds."""

    now: datetime
    cases: int
    delivered: int
    on_time: int
    attempts: int
    documents: int
    steps: int
    wall_s: float
    statuses: dict[str, int] = field(default_factory=dict)


@dataclass
class SimulationResult:
    """The report (see worker/readmodels/report.py), the run folder, wall seconds, driver steps and how
    many packets the simulated agencies received (uploads and faxes)."""

    report: dict[str, Any]
    workdir: Path
    wall_s: float
    steps: int
    submissions: int


#: How a run's commands are executed: dramatiq workers on a broker (the production path), or
#: a pool of threads in this process with no broker (simulator/inprocess.py: nothing polls)
Executor = Literal["dramatiq", "inprocess"]


class _Idle(Protocol):
    def wait_idle(self, timeout: float | None = None) -> bool: ...


@dataclass
class _Run:
    """One running simulation: what the steps read and advance."""

    scenario: Scenario
    clock: VirtualClock
    container: Container
    simulator: Simulator
    inflight: _Idle
    arrivals: list[tuple[datetime, dict[str, Any]]]  # notifications not yet taken in, by time
    wall0: float  # time.monotonic() at the start
    steps: int = 0
    intake_errors: list[str] = field(default_factory=list)
    #: this run's notification ids: the database may hold earlier runs' cases (the demo
    #: writes to the configured database), and progress, "done" and the report are this run's
    notification_ids: frozenset[str] = frozenset()

    def mine(self, q: Any) -> Any:
        """``q`` (a select over Case) narrowed to this run's cases."""
        return q.where(Case.notification_id.in_(list(self.notification_ids)))


def _on_grid(instant: datetime, origin: datetime, step_s: float) -> datetime:
    """``instant`` rounded up to ``origin + k × step_s`` (k whole; ``step_s`` in seconds)."""
    if step_s <= 0:
        return instant
    elapsed = (instant - origin).total_seconds()
    return origin + timedelta(seconds=math.ceil(elapsed / step_s - 1e-9) * step_s)


def _arrivals(
    notifications: list[dict[str, Any]], start: datetime
) -> list[tuple[datetime, dict[str, Any]]]:
    """Notifications in order of receipt; one without a readable ``received_at`` arrives at
    ``start`` (intake then refuses it, naming the field)."""
    pending = sorted(
        notifications,
        key=lambda n: str(n.get("received_at", "")) if isinstance(n, dict) else "",
    )
    times = []
    for n in pending:
        try:
            times.append(datetime.fromisoformat(str(n["received_at"])))
        except (KeyError, ValueError, TypeError):
            times.append(start)
    order = sorted(range(len(pending)), key=lambda k: times[k])
    return [(times[k], pending[k]) for k in order]


def _telnyx(sim_url: str) -> FaxVendorSettings:
    """The default fax vendor of a run: Telnyx, its API at the simulator (``sim_url``)."""
    return TelnyxSettings(
        api_base=sim_url,
        api_key="sim-key",
        connection_id="sim-connection",
        from_number="+16175550000",
    )


def _verifying(fax: FaxVendorSettings, seed: bytes) -> FaxVendorSettings:
    """``fax`` given the simulator's webhook public key (of the private key ``seed``) when it
    is Telnyx and has none, so a run verifies every webhook as production does."""
    if isinstance(fax, TelnyxSettings) and not fax.webhook_public_key:
        return fax.model_copy(update={"webhook_public_key": public_key_of(seed)})
    return fax


def _sinch(sim_url: str) -> FaxVendorSettings:
    """Sinch Fax API v3 at the simulator; callback credentials as the simulated service sends
    them (simulator/sinch.py)."""
    return SinchSettings(
        api_base=sim_url,
        project_id="sim-project",
        key_id="sim-key",
        key_secret="sim-secret",
        from_number="+16175550000",
        webhook_username=INCOMING_USERNAME,
        webhook_password=INCOMING_PASSWORD,
    )


#: The fax vendors a run can use (``goodfaith simulate --fax-vendor``): the vendor's settings
#: with its API at the simulator.
SIM_FAX_VENDORS: dict[str, Callable[[str], FaxVendorSettings]] = {
    "telnyx": _telnyx,
    "sinch": _sinch,
}


def sim_vendors(simulator_url: str, vendor_ids: set[str], secret: str) -> dict[str, Any]:
    """``GOODFAITH_RETRIEVAL_VENDORS`` for a run: every vendor id served by the simulator's
    vendor (``/vendor``), its callbacks signed with ``secret``."""
    return {
        vendor_id: RetrievalVendorSettings(
            name=f"Retrieval vendor {vendor_id}",
            api_base=f"{simulator_url}/vendor",
            api_key=SecretStr("sim-vendor-key"),
            webhook_secret=SecretStr(secret),
        )
        for vendor_id in sorted(vendor_ids)
    }


def _settings(
    workdir: Path,
    api_url: str,
    fax: FaxVendorSettings,
    database_url: str | None,
    object_store: str | None,
    vendors: dict[str, Any] | None = None,
) -> Settings:
    """Our settings for a run: state in ``workdir`` unless a database or object store is named,
    ``fax`` (the vendor's settings, its API at the simulator), our API at ``api_url``,
    ``vendors`` the retrieval vendors (at the simulator)."""
    return Settings(
        retrieval_vendors=vendors or {},
        database_url=database_url or f"sqlite:///{workdir / 'goodfaith.db'}",
        object_store=object_store or f"file://{workdir / 'objects'}",
        eoc_library=f"file://{workdir / 'eoc'}",
        public_base_url=api_url,
        media_secret=uuid.uuid4().hex,
        fax=fax,
        # time-compressed: a virtual day of webhooks arrives in seconds of wall time
        rate_limits=RateLimitSettings(intake_per_s=0, webhooks_per_s=0),
        # a run is re-run, not recovered: its own folder's writes need not wait for the disk
        # (a database or store the caller named keeps its durability)
        durable_writes=database_url is not None or object_store is not None,
    )


def _in_process(app: Any, stops: list[Callable[[], None]]) -> httpx.BaseTransport:
    """A transport calling ``app`` in-process as a server would (an error answered 500, not
    raised into the caller); closed with the run."""
    transport = InProcessASGITransport(app, raise_app_exceptions=False)
    stops.append(transport.close)
    return transport


def _start(
    scenario: Scenario,
    *,
    workdir: Path,
    redis_url: str | None,
    database_url: str | None,
    object_store: str | None,
    s3_client: Any,
    threads: int,
    stops: list[Callable[[], None]],
    wall0: float,
    fax: Callable[[str], FaxVendorSettings],
    far_sides: tuple[type[FarSide], ...],
    broker_kind: BrokerKind = "redis",
    rabbitmq_url: str | None = None,
    executor: Executor = "dramatiq",
) -> _Run:
    """Start Redis, our API, the simulator (serving ``far_sides``), the broker and the workers;
    each stop goes on ``stops`` as soon as its service runs, so a failure half-way still stops
    the rest. ``fax(sim_url)`` is the fax vendor's settings."""
    clock = VirtualClock(scenario.start)
    # the run's own queues (and, on Redis, keys): it may share a server with other runs
    namespace = f"goodfaith-sim-{uuid.uuid4().hex[:8]}"
    broker: dramatiq.Broker | None = None
    if executor == "inprocess":
        pass  # no broker: PoolDispatcher below
    elif broker_kind == "redis":
        redis = ensure_redis(redis_url)
        stops.append(redis.stop)
        broker = make_broker("redis", redis_url=redis.url, namespace=namespace)
    else:
        broker = make_broker(broker_kind, rabbitmq_url=rabbitmq_url)
    holder: dict[str, Container] = {}
    api = create_app(lambda: holder["c"])
    api_url, stop_api = run_in_thread(api)
    stops.append(stop_api)
    sim_port = free_port()
    sim_url = f"http://127.0.0.1:{sim_port}"
    notifications = route_fhir_to(sim_url, scenario.notifications)
    book = far_side_book(sim_url, notifications, scenario.agencies)
    # The in-process executor also calls both apps in-process: a request runs on the thread
    # that makes it (simulator/serving.py), as the server on its URL would answer it, with no
    # socket or server thread between. Both servers still listen (a person watching).
    mounts: dict[str, httpx.BaseTransport] = {}
    if executor == "inprocess":
        mounts[api_url] = _in_process(api, stops)
    sim_http = make_http_client(mounts=mounts)
    stops.append(sim_http.close)
    seed = secrets.token_bytes(32)  # the simulator signs its webhooks; we verify them
    vendor_secret = secrets.token_urlsafe(32)  # and its retrieval vendor's callbacks
    settings = _settings(
        workdir,
        api_url,
        _verifying(fax(sim_url), seed),
        database_url,
        object_store,
        sim_vendors(sim_url, book.vendor_ids, vendor_secret),
    )
    simulator = Simulator(
        clock=clock,
        webhook_url=webhook_url(api_url, settings.fax.vendor),
        behaviours=scenario.providers,
        directory=book.directory,
        http=sim_http,
        public_base_url=sim_url,
        carrier_fax_number=settings.fax.from_number,
        provider_names=book.names,
        far_sides=far_sides,
        drop_webhooks=scenario.drop_webhooks,
        signing_key=seed,
        vendor_webhook_secret=vendor_secret,
        duplicate_webhooks=scenario.duplicate_webhooks,
        throttle=scenario.throttle,
        agency_lines=book.agency_lines,
        refused_uploads=book.refused_uploads,
    )
    _, stop_sim = run_in_thread(simulator.app, port=sim_port)
    stops.append(stop_sim)
    our_http: httpx.Client | None = None  # None: the container makes one (over the network)
    if executor == "inprocess":
        our_http = make_http_client(mounts={**mounts, sim_url: _in_process(simulator.app, stops)})
        stops.append(our_http.close)

    inflight: _Idle
    dispatcher: Dispatcher
    prefix = namespace if broker_kind == "rabbitmq" else "goodfaith"
    if broker is None:
        pool = PoolDispatcher(threads)
        inflight = dispatcher = pool
    else:
        counter = InFlight()
        inflight = counter
        broker.add_middleware(counter, before=Retries)  # see InFlight
        broker.add_middleware(DeadLetters(lambda: holder["c"]), before=Retries)  # after Retries
        broker.add_middleware(LogContext())
        stops.append(broker.close)
        on_broker = broker
        stops.append(lambda: delete_queues(on_broker))  # RabbitMQ: the run's queues go with it
        dispatcher = register_actors(broker, lambda: holder["c"], prefix)
    c = build_container(
        settings,
        clock=clock,
        dispatcher=dispatcher,
        s3_client=s3_client,
        eoc_fallback=generate_eoc_pdf,
        authorization_fallback=generate_authorization_pdf,
        open_agencies=True,
        extra_agencies=book.agencies,
        retry_sleep=no_sleep,
        background_audit=True,  # as the production processes: one chaining per batch of commits
        http=our_http,
    )
    holder["c"] = c
    stops.append(c.close)
    if broker is None:
        stops.append(pool.close)
    else:
        worker = dramatiq.Worker(
            broker,
            queues=set(lane_queues(LANES, prefix)),
            worker_threads=threads,
            worker_timeout=10,
        )
        worker.start()
        stops.append(worker.stop)
    ids = frozenset(
        str(n["notification_id"])
        for n in notifications
        if isinstance(n, dict) and "notification_id" in n
    )
    return _Run(
        scenario,
        clock,
        c,
        simulator,
        inflight,
        _arrivals(notifications, scenario.start),
        wall0,
        notification_ids=ids,
    )


def _step(run: _Run) -> None:
    """Set off everything due at the clock's instant: take in the notifications received by
    now, fire the simulator's due events, run the scheduler."""
    now = run.clock.now()
    while run.arrivals and run.arrivals[0][0] <= now:
        _, doc = run.arrivals.pop(0)
        try:
            services.intake(run.container, doc)
        except services.IntakeError as exc:
            nid = doc.get("notification_id") if isinstance(doc, dict) else None
            run.intake_errors.append(f"{nid}: {exc}")
    run.simulator.fire_due()
    tick(run.container)


def _wait_idle(run: _Run) -> None:
    """Wait until no message is in flight (what the step set off has run); one step done."""
    if not run.inflight.wait_idle(timeout=_IDLE_TIMEOUT_S):
        raise RuntimeError(
            f"simulation stalled: messages still in flight after {_IDLE_TIMEOUT_S} s"
        )
    run.steps += 1


def _next_instant(run: _Run) -> datetime | None:
    """The earliest of the next arrival, the next simulator event and the next database timer."""
    candidates = [
        t
        for t in (
            run.arrivals[0][0] if run.arrivals else None,
            run.simulator.next_event_at(),
            next_due(run.container),
        )
        if t is not None
    ]
    return min(candidates) if candidates else None


def _all_done(run: _Run) -> bool:
    """Nothing left to arrive or fire, and every case delivered, late or cancelled."""
    if run.arrivals or run.simulator.next_event_at() is not None:
        return False
    with transaction(run.container.sessions) as s:
        unfinished = s.scalar(
            run.mine(
                select(func.count())
                .select_from(Case)
                .where(Case.status.not_in([st.value for st in CaseStatus if st.closed]))
            )
        )
    return not unfinished


def _advance(run: _Run, now: datetime, upcoming: datetime | None, resolution_s: float) -> bool:
    """Move the clock to ``upcoming`` on the time grid; False (clock at ``until``) when the
    scenario's span is over."""
    until = run.scenario.until
    if upcoming is None or upcoming > until:
        run.clock.advance_to(until)
        return False
    run.clock.advance_to(min(_on_grid(max(upcoming, now), run.scenario.start, resolution_s), until))
    return True


def _snapshot(run: _Run) -> Progress:
    with transaction(run.container.sessions) as s:
        statuses = dict(
            s.execute(run.mine(select(Case.status, func.count()).group_by(Case.status))).all()
        )
        on_time = (
            s.scalar(
                run.mine(
                    select(func.count()).select_from(Case).where(Case.delivered_at <= Case.due_at)
                )
            )
            or 0
        )
        attempts = s.scalar(run.mine(select(func.count()).select_from(Attempt).join(Case))) or 0
        docs = s.scalar(run.mine(select(func.count()).select_from(Document).join(Case))) or 0
    delivered = sum(n for st, n in statuses.items() if CaseStatus(st).delivered)
    return Progress(
        run.clock.now(),
        sum(statuses.values()),
        delivered,
        on_time,
        attempts,
        docs,
        run.steps,
        time.monotonic() - run.wall0,
        statuses,
    )


def _collect(run: _Run, workdir: Path) -> SimulationResult:
    report = build_report(run.container, notification_ids=run.notification_ids)
    report["summary"]["virtual_until"] = run.clock.now().isoformat()
    report["summary"]["wall_seconds"] = round(time.monotonic() - run.wall0, 2)
    if run.intake_errors:
        report["intake_errors"] = run.intake_errors
    if run.scenario.warnings:
        report["scenario_warnings"] = list(run.scenario.warnings)
    faxes = run.simulator.agency_faxes
    if faxes:  # what the fax-only agencies' machines printed, as their clerks read the cover
        report["agency_faxes"] = [fax.summary() for fax in faxes]
    return SimulationResult(
        report,
        workdir,
        time.monotonic() - run.wall0,
        run.steps,
        len(run.simulator.submissions) + len(faxes),
    )


def run_simulation(
    scenario: Scenario,
    *,
    workdir: Path | None = None,
    redis_url: str | None = None,
    database_url: str | None = None,
    object_store: str | None = None,
    s3_client: Any = None,
    threads: int = 8,
    progress: Callable[[Progress], None] | None = None,
    progress_interval_s: float = 0.25,
    stop_when_done: bool = True,
    resolution_s: float = 60.0,
    fax: Callable[[str], FaxVendorSettings] | None = None,
    far_sides: tuple[type[FarSide], ...] = FAR_SIDES,
    broker: BrokerKind = "redis",
    rabbitmq_url: str | None = None,
    executor: Executor = "dramatiq",
) -> SimulationResult:
    """Run ``scenario`` through the real pipeline; returns the report (see worker/readmodels/report.py).

    ``resolution_s`` (virtual seconds): when the pipeline is idle the clock jumps to the next
    thing due, rounded up to this grid, so everything due within one step is handled together.
    Events therefore happen up to ``resolution_s`` after their exact instant — one minute is
    far below any deadline's granularity and keeps 1,000-case runs fast.
    ``progress_interval_s`` is in wall seconds. ``fax`` maps the simulator's base URL to the fax
    vendor's settings (default: Telnyx); ``far_sides`` are the far-side classes served.
    ``broker``: the run's messages go through Redis (``redis_url``, or a private Redis) or
    RabbitMQ (``rabbitmq_url``), on queues of the run's own (worker/brokers.py), unless
    ``executor`` is ``inprocess``: then ``threads`` threads of this process run the same
    handlers with no broker at all (simulator/inprocess.py), the fast way to rehearse many
    cases.
    """
    wall0 = time.monotonic()
    workdir = workdir or Path(tempfile.mkdtemp(prefix="goodfaith-sim-"))
    workdir.mkdir(parents=True, exist_ok=True)
    stops: list[Callable[[], None]] = []
    try:
        run = _start(
            scenario,
            workdir=workdir,
            redis_url=redis_url,
            database_url=database_url,
            object_store=object_store,
            s3_client=s3_client,
            threads=threads,
            stops=stops,
            wall0=wall0,
            fax=fax or _telnyx,
            far_sides=far_sides,
            broker_kind=broker,
            rabbitmq_url=rabbitmq_url,
            executor=executor,
        )
        last_progress = 0.0
        while True:
            now = run.clock.now()
            _step(run)
            _wait_idle(run)
            if progress and time.monotonic() - last_progress >= progress_interval_s:
                progress(_snapshot(run))
                last_progress = time.monotonic()
            upcoming = _next_instant(run)
            if upcoming is not None and upcoming <= now:
                continue  # more is due at this instant (e.g. what a webhook just made due)
            if stop_when_done and _all_done(run):
                break
            if not _advance(run, now, upcoming, resolution_s):
                break
        if progress:
            progress(_snapshot(run))
        return _collect(run, workdir)
    finally:
        for stop in reversed(stops):
            with contextlib.suppress(Exception):  # shutting down: keep stopping the rest
                stop()
