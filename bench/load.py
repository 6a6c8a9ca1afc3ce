"""Burst benchmark of the production processes: do expedited reviews jump a standard backlog?

Starts what an operator runs — ``goodfaith simulator`` (the far side: fax carrier), ``api``,
the ``worker`` pools and ``scheduler`` — as separate processes on this machine's Redis and
PostgreSQL (loopback only), posts a burst of ``--requests`` N standard record requests
(notifications of 3 providers each) to ``POST /v1/notifications`` and, spread evenly through
the burst, ``--expedited`` M expedited notifications (3 providers each). It stops every
process it started and ends with exactly one line on stdout (progress goes to stderr)::

    load: requests=N first_attempt_per_s=<float> expedited_p50_s=<float>
          expedited_p99_s=<float> on_time=<k>/<M> peak_rss_mb=<float>

- An expedited case's wait: from its intake (our client receiving the 201) to the moment the
  first attempt to *every* one of its providers was sent (the last ``Attempt.sent_at`` of its
  attempts number 1), in seconds; p50/p99 are nearest-rank over the M cases (``inf`` when a
  case's first attempts had not all gone out when the run ended).
- on_time: expedited cases whose wait is within ``--goal-s`` (5 s).
- first_attempt_per_s: first attempts sent (every request of the burst, both kinds) divided by
  the seconds from the first post to the last first attempt sent.
- peak_rss_mb: the largest sum of resident memory over every process started (dramatiq's
  forked workers included), sampled twice a second.

Standard reviews send each attempt in a business opening of the provider (docs/policy.md); the
burst's providers read their fax all day (``business_hours`` 00:00-23:59), so run it on an MA
business day: on a weekend or holiday the standard first attempts wait for Monday. Outside MA
business hours (08:00-17:00 local on a business day) it refuses to start and says how to run it
on a shifted clock (``TZ=UTC faketime -f '@<an opening>' python bench/load.py ...``, Debian's
faketime; every process it starts inherits the clock). The warm-up is bounded (120 s).

``--campaign``: the N requests are one campaign instead (one member at one provider each, 1,000
providers, loaded with ``goodfaith campaign load`` as an operator would: the bulk lane, opened by
the scheduler a batch a tick), and the M expedited notifications arrive *during* it, one each
time another N/(M+1) campaign requests have had their first attempt. first_attempt_per_s then
counts from the start of the load (checking and storing the file included) to the last first
attempt, over the campaign's requests and the expedited ones.

The run is bounded: it ends when every first attempt went out, or after ``--max-seconds``.
It DROPS AND RECREATES the schema of ``--database-url`` and FLUSHES ``--redis-url``'s
database: give it ones of its own. ``--workers`` describes the pools, one per option,
``LANES:PROCESSESxTHREADS[:IDLE_POLL_MS]`` (``all`` = one pool for every lane, the
``goodfaith worker`` default). ``--code DIR`` runs the processes from another source tree
(e.g. an export of an older commit, to measure "before"; use ``--workers all:2x8`` there).

Example (this machine: 2 cores)::

    python bench/load.py --requests 20000 --expedited 50 \\
        --database-url postgresql://postgres@127.0.0.1:5432/gf_load --redis-url redis://127.0.0.1:6379/9
"""

from __future__ import annotations

import argparse
import base64
import json
import math
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import redis
from sqlalchemy import create_engine, text

REPO = Path(__file__).resolve().parents[1]
LOOPBACK = {"127.0.0.1", "localhost", "::1"}
DEFAULT_WORKERS = ["expedited:1x4:100", "standard,bulk:2x8"]


def closed_today(now: datetime) -> str | None:
    """Why the run would measure nothing at ``now``, or None: it must start within MA business
    hours (08:00-17:00 local on a business day). Outside them the standard and campaign first
    attempts wait for a later opening (weekends, holidays; late in the evening the policy keeps
    an attempt for an opening with time left to act on it)."""
    from config.jurisdictions import get_jurisdiction

    ma = get_jurisdiction("MA")
    calendar = ma.calendar
    if calendar.within_business_hours(now):
        return None
    local = now.astimezone(ma.tz)
    day = local.date()
    why = calendar.holidays_in(day.year).get(day) or f"{local:%A %H:%M} local"
    at = (calendar.next_business_moment(now) + timedelta(hours=1)).astimezone(UTC)
    return (
        f"{day} ({why}) is outside MA business hours: standard and campaign first attempts "
        f"would wait for a later opening, so nothing would be measured. Run it in business "
        f"hours, or on a shifted clock for every process it starts, e.g. "
        f"TZ=UTC faketime -f '@{at:%Y-%m-%d %H:%M:%S}' python bench/load.py ... (Debian "
        f"package faketime; the clock runs on from there)"
    )


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _log(msg: str) -> None:
    print(f"[load {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def notification(key: str, review_type: str, auth_uri: str) -> dict[str, Any]:
    """A notification with three providers, each on its own fax number."""
    n = zlib.crc32(key.encode()) % 10_000_000
    return {
        "notification_id": f"LOAD-{key}",
        "received_at": datetime.now(UTC).isoformat(),
        "jurisdiction": "MA",
        "review_type": review_type,
        "agency_id": "agency-a",
        "authorization_uri": auth_uri,
        "insured": {"member_id": f"M{n}", "name": "Load Test", "birth_date": "1971-02-03"},
        "coverage": {"plan_id": "PPO-2026"},
        "dispute": {"service": "MRI", "codes": ["72148"], "dates_of_service": ["2026-03-02"]},
        "providers": [
            {
                "provider_id": f"p{i}",
                "name": f"Provider {i}",
                "npi": "1234567893",
                "role": "treating",
                "network": "in",
                "channels": [{"kind": "fax", "number": f"+1617{(n * 3 + i) % 10_000_000:07d}"}],
                # a records department that reads its fax all day: standard first attempts go
                # out at once on a business day instead of waiting for the next opening
                "business_hours": ["00:00", "23:59"],
            }
            for i in range(3)
        ],
    }


def parse_pool(spec: str) -> list[str]:
    """``expedited:1x4:100`` → the ``goodfaith worker`` arguments of that pool."""
    lanes, size, *poll = spec.split(":")
    processes, threads = size.split("x")
    args = ["worker", "--processes", processes, "--threads", threads]
    if lanes != "all":
        args += ["--lanes", lanes]
    return args + (["--worker-timeout", poll[0]] if poll else [])


class Processes:
    """The processes started, each in its own session; peak summed RSS of their trees."""

    def __init__(self, env: dict[str, str], code: Path, logs: Path, database: str = "") -> None:
        self.env, self.code, self.logs = env, code, logs
        self.database = database  # its backends' CPU is counted as "postgres"
        self.procs: list[subprocess.Popen[bytes]] = []
        self.names: dict[int, str] = {}
        self.peak_rss_kb = 0
        #: CPU seconds (user + system) each process used, by pid, as last sampled: on a
        #: shared machine the rate depends on the load, CPU per first attempt much less
        self.cpu_s: dict[int, tuple[str, float]] = {}
        self._stop = threading.Event()
        threading.Thread(target=self._sample, daemon=True).start()

    def start(self, name: str, args: list[str]) -> None:
        log = open(self.logs / f"{name}.log", "wb")  # noqa: SIM115 (closed with the process)
        cmd = [sys.executable, "-m", "worker.cli", *args]
        proc = subprocess.Popen(
            cmd, cwd=self.code, env=self.env, stdout=log, stderr=log, start_new_session=True
        )
        self.procs.append(proc)
        self.names[proc.pid] = name

    def _sample(self) -> None:
        # sleep, not Event.wait: a timed wait never returns under faketime (closed_today)
        while not self._stop.is_set():
            time.sleep(0.5)
            sessions = {p.pid for p in self.procs}
            total = 0
            for entry in os.scandir("/proc"):
                if not entry.name.isdigit():
                    continue
                try:
                    stat = Path(entry.path, "stat").read_text()
                    fields = stat.rsplit(")", 1)[1].split()
                    session = int(fields[3])
                    ticks = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
                    if session not in sessions:
                        # PostgreSQL backends serving this run's database (their title names
                        # it): CPU only, the server's memory is shared with other databases
                        if self.database and stat.split(" ", 2)[1] == "(postgres)":
                            title = Path(entry.path, "cmdline").read_bytes()
                            if f" {self.database} ".encode() in title:
                                self.cpu_s[int(entry.name)] = ("postgres", ticks)
                        continue
                    self.cpu_s[int(entry.name)] = (self.names.get(session, "?"), ticks)
                    for line in Path(entry.path, "status").read_text().splitlines():
                        if line.startswith("VmRSS:"):
                            total += int(line.split()[1])
                except (OSError, ValueError, IndexError):
                    continue
            self.peak_rss_kb = max(self.peak_rss_kb, total)

    def cpu_by_name(self) -> dict[str, float]:
        """CPU seconds used so far by each process started (its forked children included)."""
        out: dict[str, float] = {}
        for name, seconds in list(self.cpu_s.values()):
            out[name] = out.get(name, 0.0) + seconds
        return out

    def stop(self) -> None:
        self._stop.set()
        for p in self.procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait(timeout=20)


def _check_loopback(url: str, what: str) -> None:
    host = urlsplit(url).hostname
    if host not in LOOPBACK:
        raise SystemExit(f"{what} must be on this machine (loopback), not {host!r}")


@contextmanager
def stack(
    args: argparse.Namespace, tmp: Path
) -> Iterator[tuple[str, str, Processes, dict[str, str]]]:
    """Reset the database and Redis, start every process, yield (api URL, auth URI, procs,
    the Authorization header of an intake key made with `goodfaith keys create`)."""
    from connectors.registry import webhook_url
    from simulator.documents import generate_authorization_pdf, generate_eoc_pdf
    from simulator.telnyx import public_key_of

    seed = secrets.token_bytes(32)

    engine = create_engine(args.database_url)
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    engine.dispose()
    r = redis.Redis.from_url(args.redis_url)
    r.flushdb()
    r.close()
    api_port, sim_port = _port(), _port()
    (tmp / "eoc").mkdir()
    (tmp / "eoc" / "PPO-2026.pdf").write_bytes(generate_eoc_pdf("PPO-2026"))
    (tmp / "auth.pdf").write_bytes(generate_authorization_pdf("M1", "Load Test"))
    api, sim = f"http://127.0.0.1:{api_port}", f"http://127.0.0.1:{sim_port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("GOODFAITH_")}
    env.update(
        {
            "PYTHONPATH": str(args.code),
            "GOODFAITH_REDIS_URL": args.redis_url,
            "GOODFAITH_DATABASE_URL": args.database_url,
            "GOODFAITH_OBJECT_STORE": f"file://{tmp / 'objects'}",
            "GOODFAITH_EOC_LIBRARY": f"file://{tmp / 'eoc'}",
            "GOODFAITH_PUBLIC_BASE_URL": api,
            "GOODFAITH_FAX__API_BASE": sim,
            "GOODFAITH_FAX__API_KEY": "key",
            "GOODFAITH_FAX__CONNECTION_ID": "conn",
            "GOODFAITH_AGENCIES": json.dumps(
                {"agency-a": {"name": "A", "submit_url": f"{sim}/agency/agency-a/submissions"}}
            ),
            "GOODFAITH_SCHEDULER_INTERVAL_S": "1",
            "GOODFAITH_LOG_LEVEL": "WARNING",
            # the production processes refuse default secrets; the simulator signs its
            # webhooks with this seed and the API verifies them with its public half
            "GOODFAITH_MEDIA_SECRET": secrets.token_urlsafe(24),
            "GOODFAITH_FAX__WEBHOOK_PUBLIC_KEY": public_key_of(seed),
            "GOODFAITH_SIMULATOR_SIGNING_KEY": base64.b64encode(seed).decode(),
            "GOODFAITH_RATE_LIMITS__INTAKE_PER_S": "0",  # the burst is the point
        }
    )
    procs = Processes(env, args.code, tmp, urlsplit(args.database_url).path.lstrip("/"))
    try:
        subprocess.run(
            [sys.executable, "-m", "worker.cli", "db", "upgrade"],
            cwd=args.code,
            env=env,
            check=True,
            capture_output=True,
        )
        webhook = webhook_url(api, "telnyx")
        procs.start("simulator", ["simulator", "--port", str(sim_port), "--webhook-url", webhook])
        procs.start("api", ["api", "--port", str(api_port)])
        for i, spec in enumerate(args.workers):
            procs.start(f"worker{i}", parse_pool(spec))
        procs.start("scheduler", ["scheduler"])
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{api}/healthz", timeout=1).is_success:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit(f"the API did not come up; logs in {tmp}")
            time.sleep(0.2)
        created = subprocess.run(
            [sys.executable, "-m", "worker.cli", "keys", "create", "--role", "intake"],
            cwd=args.code,
            env=env,
            check=True,
            capture_output=True,
            text=True,
        )
        intake = {"Authorization": f"Bearer {created.stdout.strip().splitlines()[-1]}"}
        yield api, f"file://{tmp / 'auth.pdf'}", procs, intake
    finally:
        procs.stop()


FIRST_SENT = text(
    "SELECT r.case_id, count(*), count(a.sent_at), max(a.sent_at) FROM record_requests r "
    "LEFT JOIN attempts a ON a.request_id = r.id AND a.number = 1 "
    "WHERE r.case_id = ANY(:ids) GROUP BY r.case_id"
)
ALL_SENT = text(
    "SELECT count(*), max(sent_at) FROM attempts WHERE number = 1 AND sent_at IS NOT NULL "
    "AND NOT (case_id = ANY(:skip))"
)


def _sent(engine: Any, case_ids: list[str]) -> dict[str, datetime]:
    """Cases whose every first attempt went out → when the last of them did."""
    with engine.connect() as conn:
        rows = conn.execute(FIRST_SENT, {"ids": case_ids}).all()
    return {cid: last.replace(tzinfo=UTC) for cid, n, sent, last in rows if sent == n}


CAMPAIGN_HEADER = (
    "member_id,member_name,birth_date,provider_id,provider_name,fax,request,due_date,business_hours"
)


def campaign_csv(n: int, due: str) -> str:
    """N rows: member ``C<i>`` at one of 1,000 providers (each its own fax number, reading it
    all day), records wanted by ``due`` (YYYY-MM-DD)."""
    rows = [CAMPAIGN_HEADER]
    for i in range(n):
        p = i % 1000
        rows.append(
            f"C{i},Load Test,1971-02-03,cp{p},Clinic {p},+1508{p:07d},"
            f"office notes and imaging reports 2025,{due},00:00-23:59"
        )
    return "\n".join(rows) + "\n"


def _campaign(
    args: argparse.Namespace,
    engine: Any,
    procs: Processes,
    post: Any,
    auth: str,
    warm: list[str],
) -> str:
    """Load the campaign, post the expedited notifications as it progresses, wait."""

    csv_path = procs.logs / "campaign.csv"
    due = (datetime.now(UTC) + timedelta(days=21)).date().isoformat()
    csv_path.write_text(campaign_csv(args.requests, due))
    total = args.requests + 3 * args.expedited
    _log(f"loading a campaign of {args.requests} requests; {args.expedited} expedited during it")
    start = datetime.now(UTC)
    loaded = subprocess.run(
        [sys.executable, "-m", "worker.cli", "campaign", "load", str(csv_path), "--name", "load"],
        cwd=args.code,
        env=procs.env,
        capture_output=True,
        text=True,
    )
    if loaded.returncode != 0:
        raise SystemExit(f"campaign load failed: {loaded.stderr[-2000:]}")
    _log(f"loaded in {(datetime.now(UTC) - start).total_seconds():.1f} s: {loaded.stdout.strip()}")
    step = args.requests / (args.expedited + 1)
    intake: dict[str, datetime] = {}
    done: dict[str, datetime] = {}
    count, last, posted = 0, start, 0
    deadline = time.monotonic() + args.max_seconds
    while time.monotonic() < deadline:
        with engine.connect() as conn:
            count, last_sent = conn.execute(ALL_SENT, {"skip": warm}).one()
        last = last_sent.replace(tzinfo=UTC) if last_sent else start
        # the j-th expedited review arrives once j*N/(M+1) campaign requests were attempted
        while posted < args.expedited and count - 3 * posted >= (posted + 1) * step:
            case_id, at = post(notification(f"e{posted}", "expedited", auth))
            intake[case_id] = at
            posted += 1
        if len(done) < len(intake):
            done.update(_sent(engine, [c for c in intake if c not in done]))
        _log(f"first attempts {count}/{total}, expedited done {len(done)}/{args.expedited}")
        if count >= total and len(done) == args.expedited:
            break
        time.sleep(2)  # the count reads every attempt: do not load the database being measured
    engine.dispose()
    _report_cpu(procs, count)
    return _result(args, intake, done, count, start, last, procs.peak_rss_kb)


def run(args: argparse.Namespace) -> str:
    with tempfile.TemporaryDirectory(prefix="gf-load-") as folder:
        tmp = Path(folder)
        with stack(args, tmp) as (api, auth, procs, intake_key):
            engine = create_engine(args.database_url)
            _say_autovacuum(engine)
            local = threading.local()

            def post(doc: dict[str, Any]) -> tuple[str, datetime]:
                if not hasattr(local, "http"):
                    local.http = httpx.Client(timeout=60, headers=intake_key)
                resp = local.http.post(f"{api}/v1/notifications", json=doc)
                resp.raise_for_status()
                return resp.json()["case_id"], datetime.now(UTC)

            # warm-up: every pool has built its container and connections before the burst
            warm = [post(notification(f"warm-{k}", k, auth))[0] for k in ("standard", "expedited")]
            _wait_warm(engine, warm, min(args.max_seconds, 120.0))
            if args.campaign:
                return _campaign(args, engine, procs, post, auth, warm)
            standard = math.ceil(args.requests / 3)
            docs = [notification(f"s{i}", "standard", auth) for i in range(standard)]
            step = standard / (args.expedited + 1)
            for j in reversed(range(args.expedited)):  # spread evenly through the burst
                docs.insert(round((j + 1) * step), notification(f"e{j}", "expedited", auth))
            _log(f"posting {len(docs)} notifications ({args.expedited} expedited)")
            start = datetime.now(UTC)
            with ThreadPoolExecutor(args.post_threads) as pool:
                futures = [(d["review_type"], pool.submit(post, d)) for d in docs]
                intake = {f.result()[0]: f.result()[1] for k, f in futures if k == "expedited"}
            total = 3 * len(docs)
            _log(f"posted in {(datetime.now(UTC) - start).total_seconds():.1f} s")
            done: dict[str, datetime] = {}
            count, last = 0, start
            deadline = time.monotonic() + args.max_seconds
            while time.monotonic() < deadline:
                if len(done) < len(intake):
                    done.update(_sent(engine, [c for c in intake if c not in done]))
                with engine.connect() as conn:
                    count, last_sent = conn.execute(ALL_SENT, {"skip": warm}).one()
                last = last_sent.replace(tzinfo=UTC) if last_sent else start
                _log(f"first attempts {count}/{total}, expedited done {len(done)}/{len(intake)}")
                if count >= total and len(done) == len(intake):
                    break
                time.sleep(1)
            engine.dispose()
            peak = procs.peak_rss_kb
            _report_cpu(procs, count)
    return _result(args, intake, done, count, start, last, peak)


def _say_autovacuum(engine: Any) -> None:
    """Say so when the server runs without autovacuum (these machines' CI configuration):
    nothing then refreshes the planner's statistics as the attempts table grows (goodfaith
    analyzes after a campaign load, not after every batch), and the figures are the worse
    for it than on a production server."""
    with engine.connect() as conn:
        if conn.execute(text("SHOW autovacuum")).scalar_one() != "on":
            _log(
                "PostgreSQL runs with autovacuum off: its statistics are not refreshed as the run grows"
            )


def _wait_warm(engine: Any, warm: list[str], max_seconds: float) -> None:
    """Wait (at most ``max_seconds``) for the warm-up cases' first attempts, saying so."""
    start = time.monotonic()
    while len(_sent(engine, warm)) < len(warm):
        waited = time.monotonic() - start
        if waited > max_seconds:
            raise SystemExit(
                f"the warm-up cases' first attempts did not go out in {max_seconds:.0f} s "
                "(warm-up bound): a pool, the scheduler or the simulator is not working, or the "
                "providers' openings are closed (see closed_today)"
            )
        if int(waited * 5) % 50 == 49:  # every ten seconds
            _log(f"waiting for the warm-up cases' first attempts ({waited:.0f} s)")
        time.sleep(0.2)


def _report_cpu(procs: Processes, count: int) -> None:
    cpu = procs.cpu_by_name()
    per = {k: round(v / max(count, 1) * 1000, 2) for k, v in sorted(cpu.items())}
    _log(
        f"CPU ms per first attempt (warm-up included), by process: {per}; "
        f"total {sum(cpu.values()) / max(count, 1) * 1000:.1f} ms; load {os.getloadavg()}"
    )


def _result(
    args: argparse.Namespace,
    intake: dict[str, datetime],
    done: dict[str, datetime],
    count: int,
    start: datetime,
    last: datetime,
    peak: int,
) -> str:
    """The one line of output."""
    waits = sorted(
        (done[c] - t).total_seconds() if c in done else math.inf for c, t in intake.items()
    )

    def pct(q: float) -> float:
        return waits[max(0, math.ceil(q * len(waits)) - 1)] if waits else math.nan

    rate = count / max((last - start).total_seconds(), 1e-9)
    on_time = sum(w <= args.goal_s for w in waits)
    return (
        f"load: requests={args.requests} first_attempt_per_s={rate:.1f} "
        f"expedited_p50_s={pct(0.5):.2f} expedited_p99_s={pct(0.99):.2f} "
        f"on_time={on_time}/{len(waits)} peak_rss_mb={peak / 1024:.1f}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--requests", type=int, default=3000, help="standard record requests")
    ap.add_argument("--expedited", type=int, default=50, help="expedited notifications")
    ap.add_argument("--database-url", default=os.environ.get("GOODFAITH_LOAD_DATABASE_URL"))
    ap.add_argument("--redis-url", default=os.environ.get("GOODFAITH_LOAD_REDIS_URL"))
    ap.add_argument("--workers", action="append", help=f"a pool (default: {DEFAULT_WORKERS})")
    ap.add_argument("--code", type=Path, default=REPO, help="source tree the processes run")
    ap.add_argument("--post-threads", type=int, default=8)
    ap.add_argument("--goal-s", type=float, default=5.0)
    ap.add_argument("--max-seconds", type=float, default=900.0, help="bound on the run")
    ap.add_argument(
        "--campaign", action="store_true", help="the N requests as one campaign (see above)"
    )
    args = ap.parse_args()
    if not args.database_url or not args.redis_url:
        ap.error("give --database-url and --redis-url (their contents are wiped)")
    _check_loopback(args.database_url, "--database-url")
    _check_loopback(args.redis_url, "--redis-url")
    closed = closed_today(datetime.now(UTC))
    if closed:
        ap.error(closed)
    args.workers = args.workers or DEFAULT_WORKERS
    args.code = args.code.resolve()
    print(run(args), flush=True)


if __name__ == "__main__":
    main()
