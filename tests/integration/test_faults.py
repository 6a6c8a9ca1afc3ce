"""Faults against the production processes (simulator/chaos.py): ``goodfaith api``, ``worker``
and ``scheduler`` as separate processes on real PostgreSQL and a Redis server of the test's
own, S3 (moto's server) for objects, the simulator as the far side, on a shared virtual clock.

Whatever is killed, flushed, dropped or failing, no case is lost, no request is sent twice
(the far side's fax API creates a new fax for every request here), every transmission the far
side received is in our attempt log, and every case reaches its agency on time."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

from simulator.chaos import NO_FAULTS, Faults, Rehearsal
from simulator.demo import demo_scenario
from simulator.scenario import Scenario, parse_scenario
from simulator.telnyx import TelnyxFarSide
from storage.models import Attempt, AuditEvent, Case
from tests.conftest import IN_CI, notification, postgres_url


@pytest.fixture
def pg() -> str:
    url = postgres_url()
    if url is None:
        if IN_CI:
            pytest.fail("CI needs GOODFAITH_DATABASE_URL naming a PostgreSQL database")
        pytest.skip("GOODFAITH_DATABASE_URL does not name a PostgreSQL database")
    if shutil.which(os.environ.get("GOODFAITH_REDIS_SERVER", "redis-server")) is None:
        pytest.fail("the fault tests start their own redis-server: install redis-server")
    return url


def _one_case(**provider: Any) -> Scenario:
    return parse_scenario(
        {
            "start": "2026-04-17T08:55:00-04:00",
            "notifications": [notification()],
            "providers": {"prov-1": provider or {"respond_after_attempts": 1}},
        }
    )


@pytest.fixture
def rehearsal_of(pg: str, tmp_path: Path) -> Iterator[Any]:
    opened: list[Rehearsal] = []

    def make(scenario: Scenario, faults: Faults = NO_FAULTS, **kw: Any) -> Rehearsal:
        r = Rehearsal(scenario, database_url=pg, faults=faults, workdir=tmp_path, **kw)
        opened.append(r.__enter__())
        return r

    yield make
    for r in opened:
        r.__exit__(None, None, None)


def _finish(r: Rehearsal, max_steps: int = 3000) -> None:
    for _ in range(max_steps):
        r.settle()
        if r.done() or not r.advance():
            return
    raise AssertionError("the rehearsal did not finish")


def _audit_kinds(pg: str, case_id: str | None = None) -> list[str]:
    engine = create_engine(pg)
    with engine.connect() as conn:
        q = select(AuditEvent.kind)
        if case_id:
            q = q.where(AuditEvent.case_id == case_id)
        kinds = list(conn.execute(q.order_by(AuditEvent.at)).scalars())
    engine.dispose()
    return kinds


def test_a_worker_killed_mid_send_leaves_a_fax_that_is_adopted_never_sent_again(
    rehearsal_of: Any, pg: str
) -> None:
    """The fax vendor has taken the fax, and kill -9 hits the worker before the answer is
    written. The restarted worker finds the attempt counted but unanswered; once the send
    lease ends it asks the vendor (list faxes to that number) and adopts the fax it finds."""
    r = rehearsal_of(_one_case())
    telnyx = r.sim.far_side(TelnyxFarSide)
    import threading

    telnyx.hold_answers = threading.Event()
    r.advance()  # to the notification's receipt
    r.settle(until=lambda: len(telnyx.client_states()) == 1, timeout_s=120)
    r.run.procs.kill("worker0")  # mid-send: the far side has the fax, we have no answer
    telnyx.hold_answers.set()
    r.settle()
    engine = create_engine(pg)
    with Session(engine) as s:
        a = s.scalars(select(Attempt)).one()
        assert (a.outcome, a.transmissions, a.external_id) == ("pending", 1, None)
    _finish(r)
    result = r.collect(1)
    assert result.ok, result.problems
    assert (result.duplicate_sends, result.delivered_on_time) == (0, 1)
    assert len(telnyx.client_states()) == 1
    with Session(engine) as s:
        a = s.scalars(select(Attempt).where(Attempt.number == 1)).one()
    engine.dispose()
    assert a.outcome == "delivered" and a.transmissions == 1
    assert "attempt.adopted" in _audit_kinds(pg, a.case_id)
    assert r.run.procs.restarts["worker0"] == 1


def test_a_notification_whose_opening_message_redis_lost_still_opens_and_is_delivered(
    rehearsal_of: Any, pg: str
) -> None:
    """Taken in (201) while no worker runs, then Redis is flushed: the OpenCase message is
    gone. The opening timer in the database drives the case again when its lease ends."""
    r = rehearsal_of(_one_case())
    r.stop_process("worker0")
    r.advance()
    r.settle(until=lambda: len(r.run.posted) == 1, timeout_s=60)
    r.inject("flush_redis")
    r.start_process("worker0")
    _finish(r)
    result = r.collect(1)
    assert result.ok, result.problems
    assert result.documented_attempts >= 1
    engine = create_engine(pg)
    with Session(engine) as s:
        case = s.scalars(select(Case)).one()
    engine.dispose()
    assert case.status == "delivered" and case.open_at is None
    kinds = _audit_kinds(pg, case.id)
    assert kinds.index("case.opened") < kinds.index("attempt.sent")


def test_every_fault_in_one_run_loses_nothing_and_sends_nothing_twice(
    rehearsal_of: Any,
) -> None:
    """Eight cases of the demo mix (fax and FHIR providers, busy lines, designees, silent
    providers, expedited reviews), a fifth of the fax webhooks lost, and each fault once at a
    fixed step while the work that step set off runs: a worker pool, a worker process, the
    scheduler and the API killed with kill -9 (and restarted, as a supervisor would), Redis
    flushed, Redis killed and restarted empty, every database connection terminated, uploads
    to the object store failing for a while."""
    faults = Faults(upload_outage_s=4.0, drop_webhooks=0.2)
    r = rehearsal_of(demo_scenario(8, seed=11), faults)
    script = {
        3: "pool_kill",
        6: "upload_outage",
        9: "drop_db",
        12: "child_kill",
        15: "flush_redis",
        18: "scheduler_kill",
        21: "restart_redis",
        24: "api_kill",
        27: "drop_db",
    }
    for step in range(3000):
        r.settle()
        if r.done() or not r.advance():
            break
        if step in script:
            r.inject(script[step])
    result = r.collect(8)
    assert result.ok, result.problems
    assert (result.cases, result.lost, result.duplicate_sends) == (8, 0, 0)
    assert result.delivered_on_time == 8 and result.undocumented_sends == 0
    assert result.lost_replies == 0  # a fifth of the answers came with no webhook: swept
    assert sum(result.faults.values()) == len(script)
    assert result.restarts["worker0"] >= 2 and result.restarts["scheduler"] == 1
    assert result.dropped_webhooks > 0
    assert result.documented_attempts >= 8
