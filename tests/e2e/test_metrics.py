"""/metrics after a simulated run: Prometheus text that passes `promtool check metrics` and
whose figures match the run, on SQLite and PostgreSQL; queue health from a real broker."""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from collections import defaultdict
from pathlib import Path

import pytest
import redis
from dramatiq import Message
from dramatiq.brokers.redis import RedisBroker

from api.app import create_app
from simulator.demo import demo_scenario
from simulator.driver import run_simulation
from simulator.serving import asgi_client
from tests.conftest import os_tool
from tests.fakes import make_container
from worker.actors import lane_queues
from worker.domain.lanes import Lane
from worker.readmodels.queues import queue_health


def _promtool() -> str:
    return os_tool("promtool", (), "prometheus")


def _samples(text: str) -> dict[str, dict[str, float]]:
    """name → {label text → value} of every sample line."""
    out: dict[str, dict[str, float]] = defaultdict(dict)
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        series, value = line.rsplit(" ", 1)
        name, _, labels = series.partition("{")
        out[name][labels.rstrip("}")] = float(value)
    return out


def test_metrics_reflect_a_simulated_run_and_pass_promtool(
    database_url: str, redis_url: str, tmp_path: Path
) -> None:
    """After 6 simulated cases: cases by status, attempts by channel/outcome, on-time
    deliveries, the margin and latency histograms agree with the run's report; queue depth
    and age come from dramatiq's own keys; promtool finds nothing to complain about."""
    promtool = _promtool()
    result = run_simulation(
        demo_scenario(6), workdir=tmp_path / "run", redis_url=redis_url, database_url=database_url
    )
    report = result.report
    end = report["summary"]["virtual_until"]
    from datetime import datetime

    c, _clock, _fax, _d = make_container(tmp_path, datetime.fromisoformat(end), database_url)
    namespace = f"gf-metrics-{uuid.uuid4().hex[:8]}"
    broker = RedisBroker(url=redis_url, namespace=namespace)  # type: ignore[no-untyped-call]
    queues = lane_queues(list(Lane))
    for q in queues:
        broker.declare_queue(q)
    broker.enqueue(
        Message(queue_name="goodfaith.standard", actor_name="x", args=(), kwargs={}, options={})
    )
    r = redis.Redis.from_url(redis_url)
    r.zadd(f"{namespace}:__heartbeats__", {"worker-1": int(time.time() * 1000)})
    time.sleep(0.05)
    try:
        http = asgi_client(
            create_app(
                lambda: c, lambda: queue_health(r, namespace, queues, int(time.time() * 1000))
            )
        )
        response = http.get("/metrics")
        http.close()
    finally:
        r.delete(*r.keys(f"{namespace}:*"))
        r.close()
        broker.close()
        c.close()
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    text = response.text
    checked = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert all(
        line.startswith(("# HELP goodfaith_", "# TYPE goodfaith_", "goodfaith_"))
        for line in text.splitlines()
    )

    m = _samples(text)
    cases = report["cases"]
    assert m["goodfaith_cases"] == {'status="delivered"': float(len(cases))}
    attempts = [a for c_ in cases for req in c_["requests"] for a in req["attempts"]]
    by_key: dict[str, float] = defaultdict(float)
    for a in attempts:
        by_key[f'channel="{a["channel"]}",outcome="{a["outcome"]}"'] += 1
    assert m["goodfaith_attempts"] == dict(by_key)
    assert sum(m["goodfaith_attempts"].values()) == report["summary"]["attempts"]
    on_time = report["summary"]["on_time"]
    assert m["goodfaith_cases_delivered"] == {
        'timeliness="on_time"': on_time,
        'timeliness="late"': len(cases) - on_time,
    }
    margin = m["goodfaith_deadline_margin_at_delivery_seconds_bucket"]
    assert m["goodfaith_deadline_margin_at_delivery_seconds_count"][""] == len(cases)
    assert margin['le="0"'] == 0 and margin['le="+Inf"'] == len(cases)  # none late
    values = list(margin.values())
    assert values == sorted(values)  # cumulative
    expected_margin = sum(
        (
            datetime.fromisoformat(x["due_at"]) - datetime.fromisoformat(x["delivered_at"])
        ).total_seconds()
        for x in cases
    )
    assert m["goodfaith_deadline_margin_at_delivery_seconds_sum"][""] == pytest.approx(
        expected_margin, abs=1
    )
    latency = m["goodfaith_intake_to_first_attempt_seconds_count"][""]
    assert latency == sum(
        1 for x in cases if any(a["sent_at"] for r_ in x["requests"] for a in r_["attempts"])
    )
    from worker.scheduler import TIMERS  # every timer of the table is reported

    assert set(m["goodfaith_timers_overdue"]) == {f'timer="{t.name}"' for t in TIMERS}
    assert {"outreach", "opening", "sweep", "check"} <= {t.name for t in TIMERS}
    assert m["goodfaith_broker_up"][""] == 1
    assert m["goodfaith_queue_depth"]['queue="goodfaith.standard"'] == 1
    assert m["goodfaith_queue_depth"]['queue="goodfaith.expedited"'] == 0
    assert 0 <= m["goodfaith_queue_oldest_message_age_seconds"]['queue="goodfaith.standard"'] < 60
    # dramatiq records a heartbeat for every broker that talks to Redis: the one that enqueued
    # above, and the worker we stood in for
    assert m["goodfaith_workers_alive"][""] == 2
    assert json.dumps(report)  # the report itself stays serialisable


def test_a_broker_that_does_not_answer_is_broker_up_0(tmp_path: Path) -> None:
    """When the queue read fails, /metrics still answers, with goodfaith_broker_up 0."""
    from tests.conftest import at

    c, _clock, _fax, _d = make_container(tmp_path, at("2026-04-17T09:00:00-04:00"))

    def down() -> None:
        raise redis.ConnectionError("refused")

    try:
        with asgi_client(create_app(lambda: c, down)) as http:  # type: ignore[arg-type]
            text = http.get("/metrics").text
    finally:
        c.close()
    assert "goodfaith_broker_up 0" in text.splitlines()
    assert "goodfaith_queue_depth" not in text
