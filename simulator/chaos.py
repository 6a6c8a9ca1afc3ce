"""Chaos rehearsal: the production processes under faults, on a shared virtual clock.

What runs, as an operator runs it: ``goodfaith api``, one or more ``goodfaith worker`` pools
and ``goodfaith scheduler``, each a separate process, on real PostgreSQL and on a Redis server
of the run's own (so that it can be flushed, killed and restarted), with an S3 object store
(moto's server, here, behind a switch that makes uploads fail). The far side — fax carrier,
providers' FHIR servers, agencies — is the simulator, served from this process, with a share
of its fax status webhooks and of its ``fax.received`` webhooks (the providers' answers) lost,
and without idempotency keys (a fax requested twice is two faxes, so a repeated send is seen).

Time is virtual and shared: every process reads the instant from one file
(``GOODFAITH_CLOCK_FILE``, worker/sharedclock.py). The driver moves it, as the in-process
simulation does, only when nothing is in flight — no message queued or held by a live worker,
no timer due in the database, the scheduler has ticked since the clock last moved, no webhook
waiting — to the next thing due: a notification's receipt, a simulator event, a database
timer, a case's watchdog instant. Days of case time pass in minutes.

Faults (:class:`Faults`) come at random moments, right after the clock moved (while the work
it set off is running): ``kill -9`` of a whole worker pool, of one forked worker process, of
the scheduler; Redis flushed once and killed and restarted once (empty: it keeps nothing);
every database connection of the run terminated (``pg_terminate_backend``); object-store
uploads failing for a while. The driver restarts what died, as a supervisor would.

:func:`run_chaos` returns a :class:`ChaosResult`: cases delivered on time, cases lost (never
delivered), duplicate sends (a transmission key the far side received more than once),
documented attempts, far-side sends with no attempt in our log, and answers faxed to us that
we never took in.
"""

from __future__ import annotations

import base64
import contextlib
import json
import math
import os
import random
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import redis
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.engine import Engine

from connectors.fhir.cdex import ATTEMPT_SYSTEM
from connectors.registry import webhook_url
from simulator.app import FAR_SIDES, Simulator
from simulator.cdex import CDexFarSide
from simulator.demo import demo_scenario
from simulator.documents import generate_authorization_pdf, generate_eoc_pdf
from simulator.driver import sim_vendors
from simulator.scenario import Scenario, far_side_book, route_fhir_to
from simulator.serving import free_port, run_in_thread
from simulator.telnyx import TelnyxFarSide
from storage.models import Attempt, Case, InboundItem
from worker.domain.clock import VirtualClock
from worker.domain.lifecycle import CaseStatus, transmission_key
from worker.domain.types import ChannelKind
from worker.scheduler import HEARTBEAT_KEY, next_due_at
from worker.sharedclock import write_clock

__all__ = ["NO_FAULTS", "ChaosResult", "Faults", "Rehearsal", "run_chaos"]

NAMESPACE = "dramatiq"  # the production broker's (worker/entrypoint.py)
LIVE_WORKER_S = 5.0  # a dramatiq worker silent this long is taken for dead (killed)
RESOLUTION = timedelta(seconds=60)  # the clock's grid when it jumps
STEP_CAP = timedelta(hours=6)  # never jump further at once (faults need moments to land)


@dataclass(frozen=True)
class Faults:
    """What goes wrong during a run; counts are spread over the run's virtual span."""

    pool_kills: int = 4  # kill -9 of a whole `goodfaith worker` pool (main and children)
    child_kills: int = 4  # kill -9 of one forked worker process (dramatiq then stops its pool)
    scheduler_kills: int = 1
    api_kills: int = 1
    flush_redis: int = 1  # FLUSHALL: every queued message lost
    restart_redis: int = 1  # kill -9 of redis-server, restarted empty after a pause
    drop_db: int = 3  # pg_terminate_backend of every connection of the run
    upload_outages: int = 1  # object-store uploads fail for a while (wall seconds below)
    upload_outage_s: float = 8.0
    drop_webhooks: float = 0.2  # share of fax status webhooks the far side loses
    drop_inbound_webhooks: float = 0.2  # share of fax.received webhooks (answers) it loses

    def plan(self, rnd: random.Random) -> list[tuple[float, str]]:
        """(fraction of the run's span, fault) pairs in order."""
        kinds = (
            ["pool_kill"] * self.pool_kills
            + ["child_kill"] * self.child_kills
            + ["scheduler_kill"] * self.scheduler_kills
            + ["api_kill"] * self.api_kills
            + ["flush_redis"] * self.flush_redis
            + ["restart_redis"] * self.restart_redis
            + ["drop_db"] * self.drop_db
            + ["upload_outage"] * self.upload_outages
        )
        return sorted((rnd.uniform(0.02, 0.9), kind) for kind in kinds)


NO_FAULTS = Faults(
    pool_kills=0,
    child_kills=0,
    scheduler_kills=0,
    api_kills=0,
    flush_redis=0,
    restart_redis=0,
    drop_db=0,
    upload_outages=0,
    upload_outage_s=0.0,
    drop_webhooks=0.0,
    drop_inbound_webhooks=0.0,
)


@dataclass
class ChaosResult:
    cases: int
    delivered_on_time: int
    delivered_late: int
    lost: int  # notifications whose case was never delivered (nor cancelled)
    duplicate_sends: int  # transmissions the far side received more than once
    documented_attempts: int  # attempts with a recorded transmission (sent, delivered, failed)
    undocumented_sends: int  # far-side faxes / Tasks whose key matches no attempt we logged
    lost_replies: int = 0  # answers the far side faxed us that we never took in
    faults: Counter[str] = field(default_factory=Counter)
    restarts: Counter[str] = field(default_factory=Counter)
    dropped_webhooks: int = 0
    wall_s: float = 0.0
    steps: int = 0
    problems: list[str] = field(default_factory=list)

    def line(self) -> str:
        return (
            f"chaos: cases={self.cases} delivered_on_time={self.delivered_on_time} "
            f"lost={self.lost} duplicate_sends={self.duplicate_sends} "
            f"documented_attempts={self.documented_attempts}"
        )

    @property
    def ok(self) -> bool:
        return (
            self.lost == 0
            and self.duplicate_sends == 0
            and self.undocumented_sends == 0
            and self.lost_replies == 0
            and self.delivered_on_time == self.cases
        )


# --- the run's own services ------------------------------------------------------------------


class _RedisServer:
    """A redis-server of the run's own on a fixed port, keeping nothing on disk."""

    def __init__(self, folder: Path) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._folder = folder
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        exe = os.environ.get("GOODFAITH_REDIS_SERVER", "redis-server")
        self._proc = subprocess.Popen(
            [
                exe,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self._folder),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + 10
        while True:
            with contextlib.suppress(redis.exceptions.ConnectionError):
                if redis.Redis.from_url(self.url).ping():
                    return
            if time.monotonic() > deadline:
                raise RuntimeError("redis-server did not start")
            time.sleep(0.05)

    def kill(self) -> None:
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait()
            self._proc = None


class _FailingUploads:
    """WSGI middleware in front of moto's S3: while ``failing``, uploads (PUT) answer 503."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.failing = False
        self.failed = 0

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        if self.failing and environ.get("REQUEST_METHOD") == "PUT":
            self.failed += 1
            start_response("503 Slow Down", [("Content-Type", "application/xml")])
            return [b"<Error><Code>SlowDown</Code><Message>chaos</Message></Error>"]
        return self.app(environ, start_response)


@contextlib.contextmanager
def _s3() -> Iterator[tuple[str, _FailingUploads]]:
    """moto's S3 server on a free port behind :class:`_FailingUploads`; yields its URL."""
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
    from werkzeug.serving import make_server

    switch = _FailingUploads(DomainDispatcherApplication(create_backend_app))
    server = make_server("127.0.0.1", 0, switch, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", switch
    finally:
        server.shutdown()
        thread.join(timeout=10)


class _Supervised:
    """The production processes, each in its own session; restarted when they die."""

    def __init__(self, env: dict[str, str], logs: Path, log: Callable[[str], None]) -> None:
        self.env, self.logs, self.log = env, logs, log
        self.specs: dict[str, list[str]] = {}
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.restarts: Counter[str] = Counter()
        self.paused: set[str] = set()  # stopped on purpose: not restarted
        self._files: list[Any] = []

    def start(self, name: str, args: list[str]) -> None:
        self.specs[name] = args
        out = open(self.logs / f"{name}.log", "ab")  # noqa: SIM115 (closed in stop_all)
        self._files.append(out)
        self.procs[name] = subprocess.Popen(
            [sys.executable, "-m", "worker.cli", *args],
            env=self.env,
            stdout=out,
            stderr=out,
            start_new_session=True,
        )

    def supervise(self) -> None:
        """Restart every process that exited (as systemd or compose ``restart: always``)."""
        for name, proc in list(self.procs.items()):
            if proc.poll() is not None and name not in self.paused:
                self.restarts[name] += 1
                self.log(f"{name} exited ({proc.returncode}): restarting")
                self.start(name, self.specs[name])

    def kill(self, name: str) -> None:
        """kill -9 of the process and everything it forked."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.procs[name].pid, signal.SIGKILL)
        self.procs[name].wait()

    def kill_child(self, name: str, rnd: random.Random) -> bool:
        """kill -9 of one process forked by ``name`` (a dramatiq worker process)."""
        parent = self.procs[name].pid
        children = (
            [
                int(p)
                for p in Path(f"/proc/{parent}/task/{parent}/children").read_text().split()
                if p
            ]
            if Path(f"/proc/{parent}/task/{parent}/children").exists()
            else []
        )
        if not children:
            return False
        with contextlib.suppress(ProcessLookupError):
            os.kill(rnd.choice(children), signal.SIGKILL)
        return True

    def stop_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=20)
        for f in self._files:
            f.close()


# --- the driver ------------------------------------------------------------------------------


@dataclass
class _Run:
    scenario: Scenario
    clock: VirtualClock
    clock_file: Path
    engine: Engine
    sim: Simulator
    redis_server: _RedisServer
    api: str
    procs: _Supervised
    uploads: _FailingUploads
    database_url: str
    rnd: random.Random
    log: Callable[[str], None]
    arrivals: list[tuple[datetime, dict[str, Any]]]
    intake_key: str = ""
    posted: dict[str, str] = field(default_factory=dict)  # notification id -> case id
    faults: Counter[str] = field(default_factory=Counter)
    steps: int = 0
    watch_grace: timedelta = timedelta(seconds=1200)

    def now(self) -> datetime:
        return self.clock.now()

    def set_clock(self, instant: datetime) -> None:
        self.clock.advance_to(instant)
        write_clock(self.clock_file, self.clock.now())


def _redis(run: _Run) -> redis.Redis:
    return redis.Redis.from_url(run.redis_server.url, socket_timeout=2, socket_connect_timeout=2)


def _queues_busy(r: redis.Redis) -> bool:
    """A message is queued, or held by a live worker (dead workers' messages are not waited
    for: the broker hands them out again later, and the database timers re-drive their work)."""
    now_ms = time.time() * 1000
    beats: list[bytes] = r.zrangebyscore(  # type: ignore[assignment]
        f"{NAMESPACE}:__heartbeats__", now_ms - LIVE_WORKER_S * 1000, "+inf"
    )
    live = {w.decode() for w in beats}
    for key in r.scan_iter(match=f"{NAMESPACE}:*", count=1000):
        name = key.decode()
        rest = name[len(NAMESPACE) + 1 :]
        if rest.startswith("__acks__."):
            worker = rest[len("__acks__.") :].split(".", 1)[0]
            if worker in live and r.scard(key):
                return True
        elif (
            not rest.startswith("__")
            and not rest.endswith((".msgs", ".XQ"))
            and r.type(key) == b"list"
            and r.llen(key)
        ):
            return True
    return False


def _scheduler_caught_up(r: redis.Redis, instant: datetime) -> bool:
    raw = r.get(HEARTBEAT_KEY)
    if raw is None:
        return False
    return datetime.fromisoformat(json.loads(raw)["tick_at"]) >= instant


def _post_arrivals(run: _Run, http: httpx.Client) -> bool:
    """Post every notification received by now; False while the API cannot take one."""
    now = run.now()
    while run.arrivals and run.arrivals[0][0] <= now:
        doc = run.arrivals[0][1]
        try:
            resp = http.post(
                f"{run.api}/v1/notifications",
                json=doc,
                headers={"Authorization": f"Bearer {run.intake_key}"},
            )
        except httpx.HTTPError:
            return False
        if resp.status_code >= 500:
            return False
        if resp.status_code not in (200, 201):
            raise RuntimeError(f"intake refused {doc['notification_id']}: {resp.text[:300]}")
        run.posted[doc["notification_id"]] = resp.json()["case_id"]
        run.arrivals.pop(0)
    return True


def _idle(run: _Run, http: httpx.Client) -> bool:
    """Everything set off at the clock's instant has run (see the module docstring)."""
    now = run.now()
    if not _post_arrivals(run, http):
        return False
    run.sim.fire_due()
    upcoming = run.sim.next_event_at()
    if upcoming is not None and upcoming <= now:
        return False  # due now and not taken yet (a refused webhook waits out its backoff)
    try:
        r = _redis(run)
        try:
            if not _scheduler_caught_up(r, now) or _queues_busy(r):
                return False
        finally:
            r.close()
        due = next_due_at(run.engine)
    except Exception:  # Redis or PostgreSQL away: not idle, ask again
        return False
    return due is None or due > now


def _watch_instants(run: _Run) -> datetime | None:
    """The next instant the watchdog would act on a case, if nothing else happened first."""
    now = run.now()
    live = [st.value for st in CaseStatus if st.in_progress]
    with run.engine.connect() as conn:
        rows = conn.execute(
            select(Case.assemble_at, Case.deliver_by).where(Case.status.in_(live))
        ).all()
    later = [
        t
        for a, d in rows
        for t in (a.replace(tzinfo=UTC) + run.watch_grace, d.replace(tzinfo=UTC))
        if t > now
    ]
    return min(later) if later else None


def _next_instant(run: _Run) -> datetime | None:
    candidates = [
        run.arrivals[0][0] if run.arrivals else None,
        run.sim.next_event_at(),
        next_due_at(run.engine),
        _watch_instants(run),
    ]
    due = [t for t in candidates if t is not None]
    return min(due) if due else None


def _done(run: _Run) -> bool:
    if run.arrivals or run.sim.next_event_at() is not None:
        return False
    closed = [st.value for st in CaseStatus if st.closed]
    with run.engine.connect() as conn:
        unfinished = conn.execute(
            select(func.count()).select_from(Case).where(Case.status.not_in(closed))
        ).scalar()
    return not unfinished


def _on_grid(instant: datetime, origin: datetime) -> datetime:
    steps = math.ceil((instant - origin) / RESOLUTION)
    return origin + steps * RESOLUTION


# --- faults ----------------------------------------------------------------------------------


def _inject(run: _Run, kind: str) -> None:
    """One fault, now (the work the last clock move set off is running)."""
    time.sleep(run.rnd.uniform(0.0, 0.4))  # a random moment inside that work
    pools = [n for n in run.procs.specs if n.startswith("worker")]
    if kind == "pool_kill":
        name = run.rnd.choice(pools)
        run.procs.kill(name)
    elif kind == "child_kill":
        if not run.procs.kill_child(run.rnd.choice(pools), run.rnd):
            return
    elif kind == "scheduler_kill":
        run.procs.kill("scheduler")
    elif kind == "api_kill":
        run.procs.kill("api")
    elif kind == "flush_redis":
        r = _redis(run)
        r.flushall()
        r.close()
    elif kind == "restart_redis":
        run.redis_server.kill()
        time.sleep(1.0)
        run.redis_server.start()
    elif kind == "drop_db":
        engine = create_engine(run.database_url)
        with engine.connect() as conn:
            conn.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            )
            conn.commit()
        engine.dispose()
        run.engine.dispose()
    elif kind == "upload_outage":
        run.uploads.failing = True
    run.faults[kind] += 1
    run.log(f"fault: {kind} at {run.now().isoformat()}")


# --- the run ---------------------------------------------------------------------------------


def _notifications(scenario: Scenario, auth_uri: str) -> list[dict[str, Any]]:
    docs = []
    for n in scenario.notifications:
        doc = dict(n)
        doc["authorization_uri"] = auth_uri
        docs.append(doc)
    return docs


class Rehearsal:
    """The production processes, the far side and the shared clock, started on ``__enter__``
    and stopped on ``__exit__``; :func:`run_chaos` drives it through a whole run, tests script
    it step by step. DROPS AND RECREATES the schema of ``database_url`` (PostgreSQL)."""

    def __init__(
        self,
        scenario: Scenario,
        *,
        database_url: str,
        faults: Faults = NO_FAULTS,
        seed: int = 7,
        workers: tuple[str, ...] = ("2x4",),
        workdir: Path | None = None,
        log: Callable[[str], None] = lambda msg: None,
    ) -> None:
        if not database_url.startswith("postgresql"):
            raise ValueError("chaos runs on PostgreSQL (it terminates the run's connections)")
        self.scenario, self.database_url, self.faults = scenario, database_url, faults
        self.rnd = random.Random(seed)
        self.workers, self.workdir, self.log = workers, workdir, log
        self._stack = contextlib.ExitStack()
        self._outage_ends: float | None = None
        self.run: _Run

    def __enter__(self) -> Rehearsal:
        try:
            folder = Path(
                self.workdir
                if self.workdir is not None
                else self._stack.enter_context(tempfile.TemporaryDirectory(prefix="gf-chaos-"))
            )
            folder.mkdir(parents=True, exist_ok=True)
            self.run = _start(
                self._stack,
                self.scenario,
                folder,
                self.database_url,
                self.faults,
                self.workers,
                self.rnd,
                self.log,
            )
            self.http = self._stack.enter_context(httpx.Client(timeout=30))
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.run.uploads.failing = False
        self._stack.close()

    @property
    def sim(self) -> Simulator:
        return self.run.sim

    def _housekeeping(self) -> None:
        self.run.procs.supervise()
        if self._outage_ends is not None and time.monotonic() >= self._outage_ends:
            self.run.uploads.failing, self._outage_ends = False, None

    def settle(self, timeout_s: float = 600.0, until: Callable[[], bool] | None = None) -> None:
        """Wait until everything the clock's instant set off has run (twice idle in a row),
        restarting what died meanwhile; with ``until``, only until it returns True."""
        deadline = time.monotonic() + timeout_s
        idle_before = False
        while True:
            self._housekeeping()
            if until is not None:
                _post_arrivals(self.run, self.http)
                self.run.sim.fire_due()
                if until():
                    return
                if time.monotonic() > deadline:
                    raise RuntimeError(f"chaos: not there in {timeout_s:.0f} s")
                time.sleep(0.03)
                continue
            idle = _idle(self.run, self.http)
            if idle and idle_before:
                self.run.steps += 1
                return
            idle_before = idle
            if time.monotonic() > deadline:
                raise RuntimeError(f"chaos: the pipeline did not settle in {timeout_s:.0f} s")
            time.sleep(0.03)

    def done(self) -> bool:
        """Every notification posted, every case closed, nothing left at the far side."""
        return _done(self.run)

    def advance(self) -> bool:
        """Move the clock to the next thing due (on the grid, at most :data:`STEP_CAP`); False
        when nothing is due before the scenario's end."""
        upcoming = _next_instant(self.run)
        if upcoming is None or upcoming > self.scenario.until:
            return False
        now = self.run.now()
        target = min(_on_grid(max(upcoming, now), self.scenario.start), now + STEP_CAP)
        self.run.set_clock(max(target, now + timedelta(seconds=1)))
        return True

    def advance_by(self, delta: timedelta) -> None:
        """Move the clock forward by ``delta`` (scripted runs)."""
        self.run.set_clock(self.run.now() + delta)

    def stop_process(self, name: str) -> None:
        """kill -9 of ``name`` (e.g. ``worker0``), not restarted until :meth:`start_process`."""
        self.run.procs.paused.add(name)
        self.run.procs.kill(name)

    def start_process(self, name: str) -> None:
        self.run.procs.paused.discard(name)
        self.run.procs.start(name, self.run.procs.specs[name])

    def inject(self, kind: str) -> None:
        """One fault now (see :class:`Faults`); an upload outage lasts ``upload_outage_s``."""
        _inject(self.run, kind)
        if kind == "upload_outage":
            self._outage_ends = time.monotonic() + self.faults.upload_outage_s

    def collect(self, cases: int = 0) -> ChaosResult:
        result = _collect(self.run, cases)
        result.restarts = self.run.procs.restarts
        return result


def run_chaos(
    cases: int,
    *,
    database_url: str,
    faults: Faults = Faults(),
    seed: int = 7,
    workers: tuple[str, ...] = ("2x4",),
    max_wall_s: float = 1800.0,
    workdir: Path | None = None,
    log: Callable[[str], None] = lambda msg: None,
    scenario: Scenario | None = None,
) -> ChaosResult:
    """Run ``cases`` cases of the demo mix (or ``scenario``) through the production processes
    under ``faults``, each fault at a random moment of the run. DROPS AND RECREATES the schema
    of ``database_url`` (PostgreSQL): give it a database of its own. ``workers``: one
    ``PROCESSESxTHREADS`` per worker pool."""
    wall0 = time.monotonic()
    scenario = scenario or demo_scenario(cases, seed=seed)
    with Rehearsal(
        scenario,
        database_url=database_url,
        faults=faults,
        seed=seed,
        workers=workers,
        workdir=workdir,
        log=log,
    ) as rehearsal:
        run = rehearsal.run
        plan = faults.plan(rehearsal.rnd)
        last = run.arrivals[-1][0] if run.arrivals else scenario.start
        span = max(last - scenario.start + timedelta(days=5), timedelta(hours=1))
        while time.monotonic() - wall0 <= max_wall_s:
            rehearsal.settle()
            if rehearsal.done() or not rehearsal.advance():
                break
            progress = (run.now() - scenario.start) / span
            while plan and plan[0][0] <= progress:
                _, kind = plan.pop(0)
                try:
                    rehearsal.inject(kind)
                except Exception as exc:  # a fault that could not be made is not a result
                    log(f"fault {kind} not made: {exc}")
            if run.steps % 200 == 0:
                log(f"step {run.steps}: {run.now().isoformat()} posted {len(run.posted)}")
        else:
            log(f"stopped after {max_wall_s:.0f} s of wall time")
        result = rehearsal.collect(cases)
    result.wall_s = time.monotonic() - wall0
    return result


def _start(
    stack: contextlib.ExitStack,
    scenario: Scenario,
    folder: Path,
    database_url: str,
    faults: Faults,
    workers: tuple[str, ...],
    rnd: random.Random,
    log: Callable[[str], None],
) -> _Run:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    engine = create_engine(database_url, pool_pre_ping=True)
    stack.callback(engine.dispose)
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    redis_server = _RedisServer(folder)
    redis_server.start()
    stack.callback(redis_server.kill)
    s3_url, uploads = stack.enter_context(_s3())
    import boto3

    boto3.client(
        "s3",
        endpoint_url=s3_url,
        region_name="us-east-1",
        aws_access_key_id="chaos",
        aws_secret_access_key="chaos",
    ).create_bucket(Bucket="gf-chaos")
    (folder / "eoc").mkdir(exist_ok=True)
    for n in scenario.notifications:
        plan_id = str((n.get("coverage") or {}).get("plan_id", "PPO-2026"))
        (folder / "eoc" / f"{plan_id}.pdf").write_bytes(generate_eoc_pdf(plan_id))
    (folder / "auth.pdf").write_bytes(generate_authorization_pdf("M-CHAOS", "Chaos Rehearsal"))
    clock = VirtualClock(scenario.start)
    clock_file = folder / "clock"
    write_clock(clock_file, clock.now())

    api_port = free_port()
    api = f"http://127.0.0.1:{api_port}"
    private = Ed25519PrivateKey.generate()
    seed_bytes = private.private_bytes_raw()
    public = base64.b64encode(
        private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    ).decode()
    sim_port = free_port()
    sim_url = f"http://127.0.0.1:{sim_port}"
    notifications = _notifications(
        Scenario(
            scenario.start,
            route_fhir_to(sim_url, scenario.notifications),
            scenario.providers,
            scenario.until,
        ),
        f"file://{folder / 'auth.pdf'}",
    )
    book = far_side_book(sim_url, notifications)
    vendor_secret = secrets.token_urlsafe(32)
    vendors = {
        vendor_id: {
            "name": v.name,
            "api_base": v.api_base,
            "api_key": v.api_key.get_secret_value(),
            "webhook_secret": v.webhook_secret.get_secret_value(),
        }
        for vendor_id, v in sim_vendors(sim_url, book.vendor_ids, vendor_secret).items()
    }
    sim_http = httpx.Client(timeout=30)
    stack.callback(sim_http.close)
    sim = Simulator(
        clock=clock,
        webhook_url=webhook_url(api, "telnyx"),
        behaviours=scenario.providers,
        directory=book.directory,
        http=sim_http,
        public_base_url=sim_url,
        signing_key=seed_bytes,
        provider_names=book.names,
        far_sides=FAR_SIDES,
        drop_webhooks=faults.drop_webhooks,
        drop_inbound_webhooks=faults.drop_inbound_webhooks,
        seed=rnd.randrange(1 << 30),
        honour_idempotency_keys=False,
        vendor_webhook_secret=vendor_secret,
    )
    _, stop_sim = run_in_thread(sim.app, port=sim_port)
    stack.callback(stop_sim)

    env = {k: v for k, v in os.environ.items() if not k.startswith("GOODFAITH_")}
    env.update(
        {
            "PYTHONPATH": str(Path(__file__).resolve().parents[1]),
            "GOODFAITH_REDIS_URL": redis_server.url,
            "GOODFAITH_DATABASE_URL": database_url,
            "GOODFAITH_CLOCK_FILE": str(clock_file),
            "GOODFAITH_OBJECT_STORE": "s3://gf-chaos/objects",
            "GOODFAITH_S3_ENDPOINT_URL": s3_url,
            "AWS_ACCESS_KEY_ID": "chaos",
            "AWS_SECRET_ACCESS_KEY": "chaos",
            "AWS_DEFAULT_REGION": "us-east-1",
            "GOODFAITH_EOC_LIBRARY": f"file://{folder / 'eoc'}",
            "GOODFAITH_PUBLIC_BASE_URL": api,
            "GOODFAITH_MEDIA_SECRET": base64.b64encode(os.urandom(24)).decode(),
            "GOODFAITH_FAX__API_BASE": sim_url,
            "GOODFAITH_FAX__API_KEY": "chaos-key",
            "GOODFAITH_FAX__CONNECTION_ID": "chaos-connection",
            "GOODFAITH_FAX__WEBHOOK_PUBLIC_KEY": public,
            "GOODFAITH_AGENCIES": json.dumps(
                {k: v.model_dump(mode="json") for k, v in book.agencies.items()}
            ),
            "GOODFAITH_RETRIEVAL_VENDORS": json.dumps(vendors),
            "GOODFAITH_SCHEDULER_INTERVAL_S": "0.05",
            # faults are rehearsed here, not rate limits: a clock jump releases bursts
            "GOODFAITH_RATE_LIMITS__INTAKE_PER_S": "0",
            "GOODFAITH_RATE_LIMITS__WEBHOOKS_PER_S": "0",
            "GOODFAITH_LOG_LEVEL": "WARNING",
        }
    )
    subprocess.run(
        [sys.executable, "-m", "worker.cli", "db", "upgrade"],
        env=env,
        check=True,
        capture_output=True,
    )
    made = subprocess.run(
        [
            sys.executable,
            "-m",
            "worker.cli",
            "keys",
            "create",
            "--role",
            "intake",
            "--name",
            "chaos",
        ],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    intake_key = made.stdout.strip().splitlines()[-1]

    procs = _Supervised(env, folder, log)
    stack.callback(procs.stop_all)
    procs.start("api", ["api", "--port", str(api_port)])
    for i, size in enumerate(workers):
        processes, threads = size.split("x")
        procs.start(f"worker{i}", ["worker", "--processes", processes, "--threads", threads])
    procs.start("scheduler", ["scheduler"])
    deadline = time.monotonic() + 60
    while True:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{api}/healthz", timeout=1).is_success:
                break
        if time.monotonic() > deadline:
            raise RuntimeError(f"the API did not come up; logs in {folder}")
        time.sleep(0.2)
    arrivals = sorted(
        ((datetime.fromisoformat(n["received_at"]), n) for n in notifications),
        key=lambda item: item[0],
    )
    return _Run(
        scenario=scenario,
        clock=clock,
        clock_file=clock_file,
        engine=engine,
        sim=sim,
        redis_server=redis_server,
        api=api,
        procs=procs,
        uploads=uploads,
        database_url=database_url,
        rnd=rnd,
        log=log,
        arrivals=arrivals,
        intake_key=intake_key,
    )


def _collect(run: _Run, cases: int) -> ChaosResult:
    """Count, from the database and the far side's own books."""
    with run.engine.connect() as conn:
        rows = conn.execute(
            select(Case.notification_id, Case.status, Case.delivered_at, Case.due_at)
        ).all()
        attempts = conn.execute(
            select(Attempt.idempotency_key, Attempt.transmissions, Attempt.sent_at)
        ).all()
        taken_in = set(
            conn.execute(
                select(InboundItem.external_id).where(InboundItem.source == ChannelKind.FAX.value)
            ).scalars()
        )
    by_id = {nid: (st, dat, due) for nid, st, dat, due in rows}
    on_time = late = lost = 0
    problems: list[str] = []
    total = len(run.posted) + len(run.arrivals)
    for nid in [*run.posted, *(doc["notification_id"] for _, doc in run.arrivals)]:
        st, delivered_at, due = by_id.get(nid, (None, None, None))
        if st is not None and CaseStatus(st) is CaseStatus.CANCELLED:
            continue
        if st is None or delivered_at is None:
            lost += 1
            problems.append(f"{nid}: not delivered (status {st})")
        elif due is not None and delivered_at <= due:
            on_time += 1
        else:
            late += 1
            problems.append(f"{nid}: delivered late ({delivered_at} > {due})")
    keys = {
        transmission_key(key, n) for key, count, _ in attempts for n in range(1, max(count, 1) + 1)
    }
    from connectors.fax.telnyx_events import decode_client_state

    fax_keys = [decode_client_state(cs) for cs in run.sim.far_side(TelnyxFarSide).client_states()]
    task_keys = [
        next((i.split("|", 1)[1] for i in ids if i.startswith(f"{ATTEMPT_SYSTEM}|")), None)
        for ids in run.sim.far_side(CDexFarSide).task_identifiers()
    ]
    sent = Counter(k for k in [*fax_keys, *task_keys] if k is not None)
    duplicates = sum(n - 1 for n in sent.values() if n > 1)
    undocumented = sum(n for k, n in sent.items() if k not in keys)
    undocumented += sum(1 for k in [*fax_keys, *task_keys] if k is None)
    for k, n in sent.items():
        if n > 1:
            problems.append(f"sent {n} times: {k}")
        if k not in keys:
            problems.append(f"sent, not in the attempt log: {k}")
    telnyx = run.sim.far_side(TelnyxFarSide)
    lost_replies = [i for i in telnyx.received_ids(run.now()) if i not in taken_in]
    problems += [f"answer faxed to us, never taken in: {i}" for i in lost_replies]
    return ChaosResult(
        cases=total or cases,
        delivered_on_time=on_time,
        delivered_late=late,
        lost=lost,
        duplicate_sends=duplicates,
        documented_attempts=sum(1 for _, _, sent_at in attempts if sent_at is not None),
        undocumented_sends=undocumented,
        faults=run.faults,
        lost_replies=len(lost_replies),
        dropped_webhooks=len(telnyx.dropped),
        steps=run.steps,
        problems=problems,
    )
