"""Time-compressed simulation: the real pipeline on a virtual clock.

The same intake, actors (dramatiq on Redis), outreach policy, connectors, packet assembly and
delivery run against the simulator (the far side of every channel, on localhost). Only the
clock is virtual: when nothing is in flight, the driver moves it to the next thing due —
a notification's receipt, a simulator event (webhook, inbound fax) or a database timer —
so days of case time pass in seconds. ``goodfaith demo`` is a simulation of a built-in
scenario.

Scenario file (JSON)::

    {"start": "2026-04-16T08:00:00-04:00",
     "notifications": [ <intake documents> ],
     "providers": {"prov-1": {"respond_after_attempts": 1, "reply_delay_minutes": 90, "pages": 12},
                   "prov-2": {"respond_after_attempts": null}, ...},
     "until": "2026-04-24T18:00:00-04:00"}
"""

from __future__ import annotations

import contextlib
import json
import math
import random
import socket
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

from config.settings import AgencySettings, FaxSettings, Settings
from simulator.providers import ProviderBehaviour
from worker.domain.clock import VirtualClock

DEFAULT_HORIZON = timedelta(days=14)


class ScenarioError(ValueError):
    """The scenario is malformed; the message names the key."""


class _ProviderSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    respond_after_attempts: int | None = Field(default=1, ge=1)
    reply_delay_minutes: float = Field(default=60, ge=0)
    pages: int = Field(default=5, ge=1, le=5000)
    fax: Literal["ok", "busy"] = "ok"
    reply: Literal["records", "no_records"] = "records"
    document: str | None = None


class _ScenarioSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    start: AwareDatetime
    notifications: list[dict[str, Any]] = Field(min_length=1)
    providers: dict[str, _ProviderSpec] = Field(default_factory=dict)
    until: AwareDatetime | None = None


@dataclass
class Scenario:
    start: datetime
    notifications: list[dict[str, Any]]
    providers: dict[str, ProviderBehaviour]
    until: datetime


def parse_scenario(data: Any, base_dir: Path | None = None) -> Scenario:
    """Validate a scenario document; ScenarioError names each bad key."""
    try:
        spec = _ScenarioSpec.model_validate(data)
    except ValidationError as exc:
        msgs = [
            f"{'.'.join(str(p) for p in e['loc']) or '(scenario)'}: "
            + ("unknown key" if e["type"] == "extra_forbidden" else e["msg"])
            for e in exc.errors()
        ]
        raise ScenarioError("invalid scenario: " + "; ".join(msgs)) from None
    providers = {}
    for pid, p in spec.providers.items():
        doc = None
        if p.document:
            doc = Path(p.document)
            if not doc.is_absolute() and base_dir is not None:
                doc = base_dir / doc
            if not doc.is_file():
                raise ScenarioError(f"providers.{pid}.document: no such file: {p.document}")
        providers[pid] = ProviderBehaviour(
            respond_after_attempts=p.respond_after_attempts,
            reply_delay_minutes=p.reply_delay_minutes,
            pages=p.pages,
            fax=p.fax,
            reply=p.reply,
            document=doc,
        )
    until = spec.until or spec.start + DEFAULT_HORIZON
    if until <= spec.start:
        raise ScenarioError("until: must be after start")
    return Scenario(spec.start, spec.notifications, providers, until)


def load_scenario(path: Path) -> Scenario:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ScenarioError(f"no such scenario file: {path}") from None
    except json.JSONDecodeError as exc:
        raise ScenarioError(f"{path}: not valid JSON ({exc})") from None
    return parse_scenario(data, path.parent)


# --- the built-in demo scenario ------------------------------------------------------------


def _demo_npi(k: int) -> str:
    """A distinct, valid NPI for each k: nine digits, then the Luhn check digit over '80840'+them.
    (An NPI names one provider: the simulator finds a FHIR Task's provider by it.)"""
    from worker.notification import npi_check_digit

    base = f"{100000000 + k:09d}"
    return base + str(npi_check_digit(base))


def _demo_number(area: int, k: int) -> str:
    """A distinct NANP fax number for each k (area codes step up every 9,000 numbers), never
    the carrier's own +16175550000."""
    return f"+1{area + k // 9000:03d}555{1000 + k % 9000:04d}"


def demo_scenario(cases: int = 12, start: datetime | None = None, seed: int = 7) -> Scenario:
    """A realistic mix: standard and expedited cases, 2–3 providers each; most providers answer
    the first request, some only the second, a few never; one fax line is always busy (its
    records come through the provider's retrieval vendor); one answers "no records"; some
    are reached over FHIR (Da Vinci CDex)."""
    from zoneinfo import ZoneInfo

    rnd = random.Random(seed)
    tz = ZoneInfo("America/New_York")
    start = start or datetime(2026, 4, 16, 8, 0, tzinfo=tz)
    notifications: list[dict[str, Any]] = []
    providers: dict[str, ProviderBehaviour] = {}
    for i in range(cases):
        expedited = i % 3 == 2
        received = start + timedelta(minutes=rnd.randint(0, 8 * 60))
        nprov = 2 + (i % 2)
        plist = []
        for j in range(nprov):
            pid = f"prov-{i + 1:03d}-{j + 1}"
            kind = (i * 3 + j) % 7
            fax = _demo_number(617, i * 10 + j)
            prov: dict[str, Any] = {
                "provider_id": pid,
                "name": f"{['Example Orthopedics', 'Harbor Imaging', 'Back Bay Physical Therapy', 'North Shore Primary Care'][(i + j) % 4]}",
                "npi": _demo_npi(i * 10 + j),
                "role": "treating" if j == 0 else "consulting",
                "network": "in" if (i + j) % 3 else "out",
                "channels": [{"kind": "fax", "number": fax}],
            }
            if kind == 3:  # busy line: records through the designee (a retrieval vendor)
                providers[pid] = ProviderBehaviour(
                    fax="busy", respond_after_attempts=1, reply_delay_minutes=45, pages=4
                )
                prov["designee"] = {
                    "vendor_id": "vendor-1",
                    "name": "Records Retrieval Co.",
                    "channels": [{"kind": "fax", "number": _demo_number(781, i * 10 + j)}],
                }
            elif kind == 5:
                providers[pid] = ProviderBehaviour(respond_after_attempts=None)
            elif kind == 6:
                providers[pid] = ProviderBehaviour(
                    respond_after_attempts=2,
                    reply_delay_minutes=rnd.randint(30, 240),
                    pages=rnd.randint(3, 15),
                )
            elif kind == 1 and i % 4 == 1:
                providers[pid] = ProviderBehaviour(reply="no_records", reply_delay_minutes=120)
            elif kind == 4:
                prov["channels"] = [{"kind": "fhir", "base_url": "https://fhir.example.org/r4"}]
                providers[pid] = ProviderBehaviour(
                    reply_delay_minutes=rnd.randint(20, 180), pages=rnd.randint(2, 10)
                )
            else:
                providers[pid] = ProviderBehaviour(
                    reply_delay_minutes=rnd.randint(20, 300), pages=rnd.randint(2, 20)
                )
            plist.append(prov)
        notifications.append(
            {
                "notification_id": f"OPP-2026-{i + 1:06d}",
                "received_at": received.isoformat(),
                "jurisdiction": "MA",
                "review_type": "expedited" if expedited else "standard",
                "agency_id": "agency-a" if i % 2 == 0 else "agency-b",
                "insured": {
                    "member_id": f"M{1000 + i}",
                    "name": f"Member {i + 1}",
                    "birth_date": f"19{60 + i % 40}-0{1 + i % 9}-1{i % 10}",
                },
                "coverage": {"plan_id": ["PPO-2026", "HMO-2026", "EPO-2026"][i % 3]},
                "dispute": {
                    "service": ["Lumbar spine MRI", "Physical therapy", "Knee arthroscopy"][i % 3],
                    "codes": [["72148"], ["97110"], ["29881"]][i % 3],
                    "dates_of_service": ["2026-03-02"],
                },
                "providers": plist,
            }
        )
    return Scenario(start, notifications, providers, start + DEFAULT_HORIZON)


# --- the driver ------------------------------------------------------------------------------


@dataclass
class Progress:
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
    report: dict[str, Any]
    workdir: Path
    wall_s: float
    steps: int
    submissions: int


def _on_grid(instant: datetime, origin: datetime, step_s: float) -> datetime:
    """``instant`` rounded up to ``origin + k × step_s`` (k whole)."""
    if step_s <= 0:
        return instant
    elapsed = (instant - origin).total_seconds()
    return origin + timedelta(seconds=math.ceil(elapsed / step_s - 1e-9) * step_s)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _route_fhir_to(simulator_url: str, notifications: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Point every FHIR channel at the simulator's FHIR server (it serves every provider)."""
    out: list[dict[str, Any]] = json.loads(json.dumps(notifications))
    for n in out:
        for p in n.get("providers", []) if isinstance(n, dict) else []:
            chans = list(p.get("channels", [])) + list(
                (p.get("designee") or {}).get("channels", [])
            )
            for ch in chans:
                if isinstance(ch, dict) and ch.get("kind") == "fhir":
                    ch["base_url"] = f"{simulator_url}/fhir"
    return out


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
) -> SimulationResult:
    """Run ``scenario`` through the real pipeline; returns the report (see worker/report.py).

    ``resolution_s`` (virtual seconds): when the pipeline is idle the clock jumps to the next
    thing due, rounded up to this grid, so everything due within one step is handled together.
    Events therefore happen up to ``resolution_s`` after their exact instant — one minute is
    far below any deadline's granularity and keeps 1,000-case runs fast.
    """
    import dramatiq
    from dramatiq.brokers.redis import RedisBroker
    from sqlalchemy import func, select

    from api.app import create_app
    from simulator.documents import generate_authorization_pdf, generate_eoc_pdf
    from simulator.server import Simulator
    from simulator.serving import run_in_thread
    from storage.db import transaction
    from storage.models import Attempt, Case, Document
    from worker import services
    from worker.actors import InFlight, LogContext, register_actors
    from worker.redis_server import ensure_redis
    from worker.report import build_report
    from worker.scheduler import next_due, tick
    from worker.wiring import Container, build_container, make_http_client, no_sleep

    wall0 = time.monotonic()
    workdir = workdir or Path(tempfile.mkdtemp(prefix="goodfaith-sim-"))
    workdir.mkdir(parents=True, exist_ok=True)
    clock = VirtualClock(scenario.start)
    stops: list[Callable[[], None]] = []
    try:
        redis = ensure_redis(redis_url)
        stops.append(redis.stop)
        holder: dict[str, Container] = {}
        api_url, stop_api = run_in_thread(create_app(lambda: holder["c"]))
        stops.append(stop_api)
        sim_port = _free_port()
        sim_url = f"http://127.0.0.1:{sim_port}"
        notifications = _route_fhir_to(sim_url, scenario.notifications)
        directory: dict[str, str] = {}
        names: dict[str, str] = {}
        agencies: dict[str, AgencySettings] = {}
        for n in notifications:
            if not isinstance(n, dict):
                continue
            aid = str(n.get("agency_id", ""))
            if aid:
                agencies[aid] = AgencySettings(
                    name=f"External review agency {aid}",
                    submit_url=f"{sim_url}/agency/{aid}/submissions",
                )
            for p in n.get("providers", []) or []:
                pid = p.get("provider_id")
                names[pid] = p.get("name", pid)
                if p.get("npi"):
                    directory[p["npi"]] = pid
                for ch in p.get("channels", []):
                    if ch.get("kind") == "fax" and ch.get("number"):
                        directory[ch["number"]] = pid
                designee = p.get("designee") or {}
                vendor = designee.get("vendor_id")
                if vendor:  # the designee is its own party on the far side, keyed by vendor_id
                    names[vendor] = designee.get("name", vendor)
                    for ch in designee.get("channels", []):
                        if ch.get("kind") == "fax" and ch.get("number"):
                            directory[ch["number"]] = vendor
        sim_http = make_http_client()
        stops.append(sim_http.close)
        settings = Settings(
            database_url=database_url or f"sqlite:///{workdir / 'goodfaith.db'}",
            object_store=object_store or f"file://{workdir / 'objects'}",
            eoc_library=f"file://{workdir / 'eoc'}",
            public_base_url=api_url,
            media_secret=uuid.uuid4().hex,
            fax=FaxSettings(
                api_base=sim_url,
                api_key="sim-key",
                connection_id="sim-connection",
                from_number="+16175550000",
            ),
        )
        simulator = Simulator(
            clock=clock,
            webhook_url=f"{api_url}/v1/webhooks/telnyx",
            behaviours=scenario.providers,
            directory=directory,
            http=sim_http,
            public_base_url=sim_url,
            carrier_fax_number=settings.fax.from_number,
            provider_names=names,
        )
        _, stop_sim = run_in_thread(simulator.app, port=sim_port)
        stops.append(stop_sim)

        broker = RedisBroker(url=redis.url, namespace=f"goodfaith-sim-{uuid.uuid4().hex[:8]}")  # type: ignore[no-untyped-call]
        inflight = InFlight()
        broker.add_middleware(inflight)
        broker.add_middleware(LogContext())
        stops.append(broker.close)
        dispatcher = register_actors(broker, lambda: holder["c"])
        c = build_container(
            settings,
            clock=clock,
            dispatcher=dispatcher,
            s3_client=s3_client,
            eoc_fallback=generate_eoc_pdf,
            authorization_fallback=generate_authorization_pdf,
            open_agencies=True,
            extra_agencies=agencies,
            retry_sleep=no_sleep,
        )
        holder["c"] = c
        stops.append(c.close)
        worker = dramatiq.Worker(broker, worker_threads=threads, worker_timeout=10)
        worker.start()
        stops.append(worker.stop)

        pending = sorted(
            notifications,
            key=lambda n: str(n.get("received_at", "")) if isinstance(n, dict) else "",
        )
        pending_times = []
        for n in pending:
            try:
                pending_times.append(datetime.fromisoformat(str(n["received_at"])))
            except (KeyError, ValueError, TypeError):
                pending_times.append(scenario.start)
        order = sorted(range(len(pending)), key=lambda k: pending_times[k])
        queue = [(pending_times[k], pending[k]) for k in order]
        steps = 0
        last_progress = 0.0
        intake_errors: list[str] = []

        def snapshot() -> Progress:
            with transaction(c.sessions) as s:
                statuses = dict(
                    s.execute(select(Case.status, func.count()).group_by(Case.status)).all()
                )
                on_time = (
                    s.scalar(
                        select(func.count())
                        .select_from(Case)
                        .where(Case.delivered_at <= Case.due_at)
                    )
                    or 0
                )
                attempts = s.scalar(select(func.count()).select_from(Attempt)) or 0
                docs = s.scalar(select(func.count()).select_from(Document)) or 0
            delivered = statuses.get("delivered", 0) + statuses.get("late", 0)
            return Progress(
                clock.now(),
                sum(statuses.values()),
                delivered,
                on_time,
                attempts,
                docs,
                steps,
                time.monotonic() - wall0,
                statuses,
            )

        while True:
            now = clock.now()
            while queue and queue[0][0] <= now:
                _, doc = queue.pop(0)
                try:
                    services.intake(c, doc)
                except services.IntakeError as exc:
                    nid = doc.get("notification_id") if isinstance(doc, dict) else None
                    intake_errors.append(f"{nid}: {exc}")
            simulator.fire_due()
            tick(c)
            if not inflight.wait_idle(timeout=300):
                raise RuntimeError("simulation stalled: messages still in flight after 300 s")
            steps += 1
            if progress and time.monotonic() - last_progress >= progress_interval_s:
                progress(snapshot())
                last_progress = time.monotonic()
            candidates = [
                t
                for t in (queue[0][0] if queue else None, simulator.next_event_at(), next_due(c))
                if t is not None
            ]
            if candidates and min(candidates) <= now:
                continue  # more is due at this instant (e.g. what a webhook just made due)
            if stop_when_done and not queue and simulator.next_event_at() is None:
                with transaction(c.sessions) as s:
                    unfinished = s.scalar(
                        select(func.count())
                        .select_from(Case)
                        .where(Case.status.not_in(("delivered", "late", "cancelled")))
                    )
                if not unfinished:
                    break
            upcoming = min(candidates) if candidates else None
            if upcoming is None or upcoming > scenario.until:
                clock.advance_to(scenario.until)
                break
            clock.advance_to(
                min(_on_grid(max(upcoming, now), scenario.start, resolution_s), scenario.until)
            )
        if progress:
            progress(snapshot())
        report = build_report(c)
        report["summary"]["virtual_until"] = clock.now().isoformat()
        report["summary"]["wall_seconds"] = round(time.monotonic() - wall0, 2)
        if intake_errors:
            report["intake_errors"] = intake_errors
        return SimulationResult(
            report, workdir, time.monotonic() - wall0, steps, len(simulator.submissions)
        )
    finally:
        for stop in reversed(stops):
            with contextlib.suppress(Exception):  # shutting down: keep stopping the rest
                stop()
