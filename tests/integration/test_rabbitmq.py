"""RabbitMQ as the broker (GOODFAITH_BROKER=rabbitmq): the production processes scaled out —
two worker pools and two schedulers at once on one PostgreSQL — do every piece of work once
(no duplicate sends), and a simulation gives the same results on RabbitMQ as on Redis."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from datetime import time as dtime
from pathlib import Path

import httpx
import pika
import pytest
from sqlalchemy import create_engine, text

from config.jurisdictions import get_jurisdiction
from connectors.registry import webhook_url
from simulator.documents import generate_authorization_pdf, generate_eoc_pdf
from simulator.telnyx import public_key_of
from tests.conftest import IN_CI, _fresh_postgres, notification, postgres_url
from tests.integration.test_processes import BIN, SEED, _key, _port
from worker.brokers import BrokerUnavailable, make_broker
from worker.domain.openings import openings
from worker.domain.outreach import DEFAULT_SETTINGS

CASES = 12  # notifications of 3 providers each


def _queue_exists(url: str, name: str) -> bool:
    with pika.BlockingConnection(pika.URLParameters(url)) as conn:
        try:
            conn.channel().queue_declare(name, passive=True)
        except pika.exceptions.ChannelClosedByBroker:
            return False
        return True


def test_an_unreachable_rabbitmq_is_named_with_the_fix() -> None:
    """GOODFAITH_BROKER=rabbitmq with nothing listening: an error naming the server and the
    setting, before any message is sent; the Redis broker without a URL names its setting."""
    with pytest.raises(BrokerUnavailable, match="GOODFAITH_RABBITMQ_URL"):
        make_broker("rabbitmq", rabbitmq_url="amqp://guest:guest@127.0.0.1:1/")
    with pytest.raises(BrokerUnavailable, match="GOODFAITH_REDIS_URL"):
        make_broker("redis", redis_url=None)


@pytest.fixture
def scaled_out(tmp_path: Path, rabbitmq_url: str) -> Iterator[tuple[dict[str, str], str, str]]:
    """simulator + api + two worker pools + two schedulers on RabbitMQ and PostgreSQL."""
    url = postgres_url()
    if url is None:
        if IN_CI:
            pytest.fail("CI needs GOODFAITH_DATABASE_URL naming a PostgreSQL database")
        pytest.skip("GOODFAITH_DATABASE_URL does not name a PostgreSQL database")
    db = _fresh_postgres(url)
    prefix = f"gf-test-{uuid.uuid4().hex[:8]}"
    api_port, sim_port = _port(), _port()
    (tmp_path / "eoc").mkdir()
    (tmp_path / "eoc" / "PPO-2026.pdf").write_bytes(generate_eoc_pdf("PPO-2026"))
    (tmp_path / "auth.pdf").write_bytes(generate_authorization_pdf("M1001", "Jane Roe"))
    sim, api = f"http://127.0.0.1:{sim_port}", f"http://127.0.0.1:{api_port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("GOODFAITH_")}
    env.update(
        {
            "GOODFAITH_BROKER": "rabbitmq",
            "GOODFAITH_RABBITMQ_URL": rabbitmq_url,
            "GOODFAITH_QUEUE_PREFIX": prefix,
            "GOODFAITH_DATABASE_URL": db,
            "GOODFAITH_OBJECT_STORE": f"file://{tmp_path / 'objects'}",
            "GOODFAITH_EOC_LIBRARY": f"file://{tmp_path / 'eoc'}",
            "GOODFAITH_PUBLIC_BASE_URL": api,
            "GOODFAITH_FAX__API_BASE": sim,
            "GOODFAITH_FAX__API_KEY": "key",
            "GOODFAITH_FAX__CONNECTION_ID": "conn",
            "GOODFAITH_AGENCIES": json.dumps(
                {"agency-a": {"name": "A", "submit_url": f"{sim}/agency/agency-a/submissions"}}
            ),
            "GOODFAITH_SCHEDULER_INTERVAL_S": "0.2",
            # status checks 1 s after each fax: timers both schedulers reach for at once
            "GOODFAITH_FAX_STATUS_CHECK_AFTER_S": "1",
            "GOODFAITH_MEDIA_SECRET": "rabbitmq-test-media-secret",
            "GOODFAITH_FAX__WEBHOOK_PUBLIC_KEY": public_key_of(SEED),
            "GOODFAITH_SIMULATOR_SIGNING_KEY": base64.b64encode(SEED).decode(),
            "GOODFAITH_RATE_LIMITS__INTAKE_PER_S": "0",
        }
    )
    subprocess.run([BIN / "goodfaith", "db", "upgrade"], env=env, check=True, capture_output=True)
    commands = {
        "simulator": [
            "simulator",
            "--port",
            str(sim_port),
            "--webhook-url",
            webhook_url(api, "telnyx"),
        ],
        "api": ["api", "--port", str(api_port)],
        "worker-a": ["worker", "--processes", "1", "--threads", "4"],
        "worker-b": ["worker", "--processes", "1", "--threads", "4"],
        "scheduler-a": ["scheduler"],
        "scheduler-b": ["scheduler"],
    }
    logs = {name: open(tmp_path / f"{name}.log", "wb") for name in commands}  # noqa: SIM115
    procs = [
        subprocess.Popen(
            [BIN / "goodfaith", *cmd],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=logs[name],
            start_new_session=True,
        )
        for name, cmd in commands.items()
    ]
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{api}/healthz", timeout=1).is_success:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the API did not come up"
            time.sleep(0.2)
        yield env, api, sim
    finally:
        for p in procs:
            os.killpg(p.pid, signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait(timeout=20)
        for log in logs.values():
            log.close()
        with pika.BlockingConnection(pika.URLParameters(rabbitmq_url)) as conn:
            channel = conn.channel()
            for lane in ("expedited", "standard", "bulk"):
                for suffix in ("", ".DQ", ".XQ"):
                    channel.queue_delete(f"{prefix}.{lane}{suffix}")
            for suffix in ("", ".DQ", ".XQ"):
                channel.queue_delete(f"{prefix}{suffix}")
        assert not _queue_exists(rabbitmq_url, f"{prefix}.standard")


OPEN_ALL_DAY = (dtime(0, 0), dtime(23, 59))  # the providers' own hours in this test


def _first_opening(now: datetime) -> datetime:
    """When a standard review opened at ``now`` has its first fax due: ``now`` itself inside
    an MA business opening (the providers' hours) long enough to count, else the next one --
    after a weekend, a holiday, or the last hour before 23:59."""
    spans = openings(
        now,
        now + timedelta(days=8),
        get_jurisdiction("MA").calendar,
        OPEN_ALL_DAY,
        DEFAULT_SETTINGS.min_opening,
    )
    return spans[0].start


def _aware(instant: datetime) -> datetime:
    return instant if instant.tzinfo else instant.replace(tzinfo=UTC)


def _steady_now(margin: timedelta = timedelta(minutes=3)) -> tuple[datetime, datetime | None]:
    """The current instant and, when standard reviews are not due at once, their first
    opening; waited out until the answer holds for ``margin`` (it changes minutes a day)."""
    while True:
        now = datetime.now(UTC)
        later = now + margin
        due, due_later = _first_opening(now) == now, _first_opening(later) == later
        if due == due_later:
            return now, None if due else _first_opening(now)
        time.sleep(30)


def test_two_schedulers_and_two_worker_pools_on_rabbitmq_do_no_work_twice(
    scaled_out: tuple[dict[str, str], str, str], tmp_path: Path
) -> None:
    """CASES notifications (3 providers each) through RabbitMQ while both schedulers tick
    every 0.2 s: every provider due a fax gets exactly one, every attempt is planned once and
    every due one transmitted and sent once, and the audit trail the six processes wrote is one
    intact chain. The expedited faxes are due at once on any day; the standard ones when MA
    is open (else each is planned once, unsent, for the next opening)."""
    env, api, sim = scaled_out
    intake = _key(env, "intake")
    now, opening = _steady_now()
    due_numbers, waiting_numbers = set(), set()
    with httpx.Client(timeout=30, headers=intake) as http:
        for i in range(CASES):
            expedited = i % 3 == 0
            doc = notification(
                notification_id=f"RMQ-{i}",
                authorization_uri=f"file://{tmp_path / 'auth.pdf'}",
                received_at=now.isoformat(),
                review_type="expedited" if expedited else "standard",
            )
            doc["providers"] = [
                {
                    **doc["providers"][0],
                    "provider_id": f"p{i}-{k}",
                    "business_hours": [h.strftime("%H:%M") for h in OPEN_ALL_DAY],
                    "channels": [{"kind": "fax", "number": f"+1617555{i:02d}{k:02d}"}],
                }
                for k in range(3)
            ]
            numbers = {p["channels"][0]["number"] for p in doc["providers"]}
            (due_numbers if expedited or opening is None else waiting_numbers).update(numbers)
            assert http.post(f"{api}/v1/notifications", json=doc).status_code == 201
    assert len(due_numbers) >= 3 * (CASES // 3)  # the expedited ones at least
    engine = create_engine(
        env["GOODFAITH_DATABASE_URL"].replace("postgresql:", "postgresql+psycopg:")
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            with engine.connect() as conn:
                sent = conn.execute(
                    text("SELECT count(*) FROM attempts WHERE sent_at IS NOT NULL")
                ).scalar()
            if sent == len(due_numbers):
                break
            assert time.monotonic() < deadline, f"{sent}/{len(due_numbers)} first attempts sent"
            time.sleep(0.5)
        time.sleep(4)  # the status checks (1 s after each fax) run meanwhile
        with engine.connect() as conn:
            attempts = conn.execute(
                text("SELECT request_id, number, transmissions, destination FROM attempts")
            ).all()
            waiting = conn.execute(
                text(
                    "SELECT channels->0->>'destination', next_action_at FROM record_requests r "
                    "WHERE NOT EXISTS (SELECT 1 FROM attempts a WHERE a.request_id = r.id)"
                )
            ).all()
            kinds = Counter(
                (kind, detail_attempt)
                for kind, detail_attempt in conn.execute(
                    text(
                        "SELECT kind, detail->>'attempt_id' FROM audit_events "
                        "UNION ALL SELECT kind, detail->>'attempt_id' FROM audit_pending"
                    )
                )
            )
    finally:
        engine.dispose()
    assert len(attempts) == len(due_numbers)
    assert len({a.request_id for a in attempts}) == len(due_numbers)
    assert {(a.number, a.transmissions) for a in attempts} == {(1, 1)}
    assert {a.destination for a in attempts} == due_numbers
    # not due yet: no attempt made or planned twice, only the request's timer at an opening
    assert {number for number, _at in waiting} == waiting_numbers
    assert {_aware(at) for _n, at in waiting} <= {opening}
    for kind in ("attempt.planned", "attempt.sent"):
        per_attempt = [n for (k, _a), n in kinds.items() if k == kind]
        assert len(per_attempt) == len(due_numbers) and set(per_attempt) == {1}, kind
    faxes = httpx.get(
        f"{sim}/v2/faxes", params={"page[size]": "250"}, headers={"Authorization": "Bearer key"}
    ).json()["data"]
    assert Counter(f["to"] for f in faxes if f["direction"] == "outbound") == Counter(
        {n: 1 for n in due_numbers}
    )
    out = subprocess.run(
        [BIN / "goodfaith", "audit", "verify"], env=env, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_a_simulation_on_rabbitmq_ends_as_on_redis(
    tmp_path: Path, rabbitmq_url: str, redis_url: str
) -> None:
    """The same scenario through the real pipeline on each broker: the same cases on time,
    the same attempts per request."""
    from simulator.demo import demo_scenario
    from simulator.driver import run_simulation

    def outcome(broker: str) -> tuple[dict[str, int], list[int]]:
        result = run_simulation(
            demo_scenario(4, seed=5, run=broker),
            workdir=tmp_path / broker,
            redis_url=redis_url,
            rabbitmq_url=rabbitmq_url,
            broker=broker,  # type: ignore[arg-type]
        )
        summary = result.report["summary"]
        per_request = sorted(
            len(r["attempts"]) for c in result.report["cases"] for r in c["requests"]
        )
        return {k: summary[k] for k in ("cases", "on_time", "late", "attempts")}, per_request

    on_redis, on_rabbitmq = outcome("redis"), outcome("rabbitmq")
    assert on_rabbitmq == on_redis
    assert on_rabbitmq[0]["cases"] == 4 and on_rabbitmq[0]["on_time"] == 4


def test_queue_health_is_read_from_rabbitmq_and_served_as_metrics(
    rabbitmq_url: str, tmp_path: Path
) -> None:
    """Depth, delayed and dead-lettered messages per lane queue come from RabbitMQ's own
    counters (a queue not declared yet is empty), consumers count as workers, and /metrics
    serves them with goodfaith_broker_up 1 and no made-up message ages; nothing is taken."""
    import dramatiq
    from dramatiq.brokers.rabbitmq import RabbitmqBroker
    from dramatiq.common import dq_name, xq_name

    from api.app import create_app
    from simulator.serving import asgi_client
    from tests.conftest import at
    from tests.fakes import make_container
    from worker.actors import lane_queues, queue_name
    from worker.domain.lanes import Lane
    from worker.readmodels.queues import rabbitmq_queue_health

    prefix = f"gf-test-{uuid.uuid4().hex[:8]}"
    standard, bulk = queue_name(Lane.STANDARD, prefix), queue_name(Lane.BULK, prefix)
    broker = RabbitmqBroker(url=rabbitmq_url, confirm_delivery=True)
    c, _clock, _fax, _d = make_container(tmp_path, at("2026-04-17T09:00:00-04:00"))
    try:
        broker.declare_queue(standard)
        for i in range(3):
            broker.enqueue(dramatiq.Message(standard, "open_case", (f"c{i}",), {}, {}))
        broker.enqueue(dramatiq.Message(standard, "open_case", ("late",), {}, {}), delay=60_000)
        queues = lane_queues(list(Lane), prefix)
        health = rabbitmq_queue_health(rabbitmq_url, queues)
        by = {q.queue: q for q in health.queues}
        assert (by[standard].depth, by[standard].delayed, by[standard].dead) == (3, 1, 0)
        assert (by[bulk].depth, by[bulk].delayed) == (0, 0)  # never declared: empty
        assert health.workers_alive == 0 and not health.ages_known
        with asgi_client(
            create_app(lambda: c, lambda: rabbitmq_queue_health(rabbitmq_url, queues))
        ) as http:
            text = http.get("/metrics").text
        lines = text.splitlines()
        assert "goodfaith_broker_up 1" in lines
        assert f'goodfaith_queue_depth{{queue="{standard}"}} 3' in lines
        assert f'goodfaith_queue_delayed{{queue="{standard}"}} 1' in lines
        assert "goodfaith_queue_oldest_message_age_seconds" not in text
        # reading took nothing: the messages are all still there
        assert rabbitmq_queue_health(rabbitmq_url, queues).queues[1].depth == 3
        # a worker process consuming the bulk lane counts as one
        with pika.BlockingConnection(pika.URLParameters(rabbitmq_url)) as conn:
            channel = conn.channel()
            channel.queue_declare(bulk, durable=True)
            channel.basic_consume(bulk, lambda *args: None)
            assert rabbitmq_queue_health(rabbitmq_url, queues).workers_alive == 1
    finally:
        c.close()
        with pika.BlockingConnection(pika.URLParameters(rabbitmq_url)) as conn:
            channel = conn.channel()
            for q in (standard, bulk):
                for name in (q, dq_name(q), xq_name(q)):
                    channel.queue_delete(name)
        broker.close()


def test_a_rabbitmq_that_does_not_answer_raises_for_broker_up_0() -> None:
    from worker.readmodels.queues import rabbitmq_queue_health

    with pytest.raises(Exception):  # noqa: B017 (render_metrics turns any into up 0)
        rabbitmq_queue_health("amqp://guest:guest@127.0.0.1:1/", ["goodfaith.standard"])


def test_the_api_reads_queue_health_from_the_broker_it_is_given(rabbitmq_url: str) -> None:
    """GOODFAITH_BROKER=rabbitmq: /metrics reads the lane queues of GOODFAITH_QUEUE_PREFIX on
    GOODFAITH_RABBITMQ_URL (before: nothing, broker_up absent)."""
    from config.settings import Settings
    from worker.cli import _queue_reader

    prefix = f"gf-test-{uuid.uuid4().hex[:8]}"
    s = Settings(broker="rabbitmq", rabbitmq_url=rabbitmq_url, queue_prefix=prefix)
    read = _queue_reader(s)
    assert read is not None
    assert [q.queue for q in read().queues] == [
        f"{prefix}.expedited",
        f"{prefix}.standard",
        f"{prefix}.bulk",
        prefix,
    ]
