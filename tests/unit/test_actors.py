"""The dramatiq actors, on a StubBroker with a real worker: thin wrappers over the services."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dramatiq
import pytest
import structlog
from dramatiq.brokers.stub import StubBroker
from sqlalchemy import select

from storage.db import transaction
from storage.models import Case
from tests.conftest import at, notification
from tests.fakes import make_container
from worker import services
from worker.actors import InFlight, LogContext, actor_name, queue_name, register_actors
from worker.commands import SendAttempt
from worker.domain.lanes import Lane
from worker.scheduler import next_due, tick
from worker.services import HANDLERS


@pytest.fixture
def stub(tmp_path: Path) -> Iterator[tuple[Any, ...]]:
    broker = StubBroker()
    inflight = InFlight()
    broker.add_middleware(inflight)
    broker.add_middleware(LogContext())
    c, clock, fax, deliverer = make_container(tmp_path, at("2026-04-17T09:00:00-04:00"))
    c.dispatcher = register_actors(broker, lambda: c)
    worker = dramatiq.Worker(broker, worker_threads=2, worker_timeout=50)
    worker.start()
    yield c, clock, fax, deliverer, broker, inflight
    worker.stop()
    broker.close()
    c.close()


def test_one_actor_per_command_and_one_queue_per_lane(stub: tuple[Any, ...]) -> None:
    """Every command has an actor named after it with bounded retries; every lane has a queue."""
    *_, broker, _ = stub
    for command_type in HANDLERS:
        actor = broker.get_actor(actor_name(command_type))
        assert actor.queue_name == queue_name(Lane.STANDARD) and actor.options["max_retries"] == 5
    assert {
        "goodfaith.expedited",
        "goodfaith.standard",
        "goodfaith.bulk",
    } <= broker.get_declared_queues()
    assert actor_name(SendAttempt) == "send_attempt"


def test_actors_carry_a_case_from_notification_to_delivery(stub: tuple[Any, ...]) -> None:
    """Through real actors: intake → outreach → (no reply) → packet delivered at the cutoff."""
    c, clock, fax, deliverer, _broker, inflight = stub
    services.intake(c, notification())
    assert inflight.wait_idle(timeout=30)
    assert len(fax.sent) == 1
    while (nxt := next_due(c)) is not None:
        clock.advance_to(nxt)
        tick(c)
        assert inflight.wait_idle(timeout=30)
    assert len(fax.sent) == 3 and len(deliverer.submissions) == 1
    with transaction(c.sessions) as s:
        assert s.scalars(select(Case)).one().status == "delivered"


def test_log_context_names_the_message_and_actor(stub: tuple[Any, ...]) -> None:
    """Logs written inside an actor carry its message id, actor name and entity id."""
    c, _clock, _fax, _d, _broker, inflight = stub
    with structlog.testing.capture_logs(
        processors=[structlog.contextvars.merge_contextvars]
    ) as logs:
        services.intake(c, notification())
        assert inflight.wait_idle(timeout=30)
    sent = [e for e in logs if e["event"] == "attempt.sent"]
    assert sent and sent[0]["actor"] == "send_attempt" and sent[0]["message_id"]
    assert sent[0]["entity_id"] == sent[0]["attempt_id"]


class _Processed(dramatiq.Middleware):
    """The actor name of every message a worker ran, in order."""

    def __init__(self) -> None:
        self.names: list[str] = []

    def after_process_message(self, broker: Any, message: Any, **kwargs: Any) -> None:
        self.names.append(message.actor_name)


def _campaign_case(c: Any) -> None:
    """Load a one-request campaign; the scheduler's opening timer enqueues its OpenCase."""
    doc = {
        "name": "charts",
        "jurisdiction": "MA",
        "csv": "member_id,member_name,birth_date,provider_id,provider_name,fax,request,"
        "due_date,business_hours\n"
        "M1,Pat Doe,1971-02-03,p1,Clinic,+16175550123,office notes,2026-05-29,00:00-23:59\n",
    }
    services.load_campaign(c, doc, "test", None)
    tick(c)


def test_a_campaign_chain_of_single_steps_runs_in_one_message(stub: tuple[Any, ...]) -> None:
    """In the bulk lane, open → plan → send of a campaign request runs in the OpenCase
    message itself: one message, no broker round trip between the steps; the attempt is sent
    as before."""
    c, _clock, fax, _d, broker, inflight = stub
    processed = _Processed()
    broker.add_middleware(processed)
    _campaign_case(c)
    assert inflight.wait_idle(timeout=30)
    assert len(fax.sent) == 1
    assert processed.names == ["open_case"]


def test_a_review_keeps_one_message_a_step(stub: tuple[Any, ...]) -> None:
    """An external review's steps stay messages of their own (an expedited step never waits
    behind a chain of another case's steps)."""
    c, _clock, fax, _d, broker, inflight = stub
    processed = _Processed()
    broker.add_middleware(processed)
    services.intake(c, notification())
    assert inflight.wait_idle(timeout=30)
    assert len(fax.sent) == 1
    assert processed.names[:3] == ["open_case", "plan_outreach", "send_attempt"]


def test_an_inline_step_that_fails_goes_on_as_its_own_message(stub: tuple[Any, ...]) -> None:
    """A step run inline that raises is enqueued as its own message (with its own retries and
    dead letter) instead of failing the message that led to it; the attempt still goes out."""
    c, clock, fax, _d, broker, inflight = stub
    processed = _Processed()
    broker.add_middleware(processed)
    failures = []

    def fail_once(_request: Any) -> None:
        if not failures:
            failures.append(1)
            raise RuntimeError("the far side's connection reset mid-send")

    fax.on_send = fail_once
    with structlog.testing.capture_logs() as logs:
        _campaign_case(c)
        assert inflight.wait_idle(timeout=60)
    assert failures == [1] and processed.names == ["open_case", "send_attempt"]
    assert any(e["event"] == "inline_step.failed" for e in logs)
    # the send may have left: once its lease ends it is looked up at the vendor, then sent
    while not fax.sent and (nxt := next_due(c)) is not None:
        clock.advance_to(nxt)
        tick(c)
        assert inflight.wait_idle(timeout=30)
    assert len(fax.sent) == 1 and len(fax.lookups) == 1
