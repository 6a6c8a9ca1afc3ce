"""Lanes: expedited reviews go ahead of standard ones, both ahead of bulk work; the scheduler
hands out due work earliest deadline first."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import dramatiq
import pytest
from dramatiq.brokers.stub import StubBroker
from dramatiq.middleware import Middleware
from sqlalchemy import select

from storage.db import transaction
from storage.models import Attempt, Case, Delivery, RecordRequest
from tests.conftest import at, notification
from tests.fakes import Recorded, make_container
from worker import services
from worker.actors import lane_queues, queue_name, register_actors
from worker.commands import (
    AssemblePacket,
    Command,
    DeliverPacket,
    IngestInbound,
    OpenCase,
    PlanOutreach,
    PollTask,
    SendAttempt,
)
from worker.domain.lanes import LANES, Lane, lane_for, parse_lanes
from worker.scheduler import next_due, tick
from worker.wiring import Container

START = at("2026-04-17T09:00:00-04:00")


def test_expedited_reviews_take_the_expedited_lane_even_in_a_campaign() -> None:
    """Expedited → expedited (bulk or not); standard → standard, or bulk in a campaign."""
    assert lane_for("expedited") is Lane.EXPEDITED
    assert lane_for("expedited", bulk=True) is Lane.EXPEDITED
    assert lane_for("standard") is Lane.STANDARD
    assert lane_for("standard", bulk=True) is Lane.BULK


def test_work_of_no_case_is_standard() -> None:
    """A command whose case is not known (an unmatched inbound fax) travels standard."""
    assert lane_for(None) is Lane.STANDARD


def test_lanes_are_listed_most_urgent_first() -> None:
    assert LANES == (Lane.EXPEDITED, Lane.STANDARD, Lane.BULK)


def test_lane_lists_parse_in_urgency_order_and_name_unknown_lanes() -> None:
    """`--lanes bulk, Expedited` → (expedited, bulk); an unknown name is refused by name."""
    assert parse_lanes("bulk, Expedited") == (Lane.EXPEDITED, Lane.BULK)
    with pytest.raises(ValueError, match="unknown lane 'urgent'; known lanes: expedited"):
        parse_lanes("urgent")
    with pytest.raises(ValueError, match="no lane"):
        parse_lanes(" , ")


def test_standard_workers_also_drain_the_queue_of_before_lanes() -> None:
    """Messages enqueued on the old single queue are still worked, by the standard lane."""
    assert lane_queues((Lane.EXPEDITED,)) == ["goodfaith.expedited"]
    assert lane_queues((Lane.STANDARD, Lane.BULK)) == [
        "goodfaith.standard",
        "goodfaith.bulk",
        "goodfaith",
    ]


@pytest.fixture
def env(tmp_path: Path) -> Iterator[tuple[Container, Any]]:
    c, clock, _fax, _deliverer = make_container(tmp_path, START)
    yield c, clock
    c.close()


def _intake(c: Container, n: int, review_type: str, **overrides: Any) -> str:
    doc = notification(notification_id=f"N-{review_type}-{n}", review_type=review_type)
    doc.update(overrides)
    return services.intake(c, doc).case_id


def _queued(broker: StubBroker) -> dict[str, list[tuple[str, str]]]:
    """(actor, id) of every message waiting, by queue."""
    out: dict[str, list[tuple[str, str]]] = {}
    for name, q in broker.queues.items():
        out[name] = [(m.actor_name, m.args[0]) for m in _decoded(q)]
    return out


def _decoded(q: Any) -> list[Any]:
    items = []
    while not q.empty():
        items.append(dramatiq.Message.decode(q.get_nowait()))
    return items


def test_the_dispatcher_sends_each_command_to_its_case_lane(
    env: tuple[Container, Any],
) -> None:
    """Every kind of command of an expedited case goes on the expedited queue, of a standard
    case on the standard one; an inbound fax not yet matched goes standard. Messages carry
    only the id."""
    c, clock = env
    expedited = _intake(c, 1, "expedited")
    standard = _intake(c, 2, "standard")
    while (nxt := next_due(c)) is not None:  # inline, to the delivered packet
        clock.advance_to(nxt)
        tick(c)
    ids: dict[str, dict[type, str]] = {}
    with transaction(c.sessions) as s:
        for case_id in (expedited, standard):
            request = s.scalars(select(RecordRequest).where(RecordRequest.case_id == case_id))
            attempt = s.scalars(select(Attempt).where(Attempt.case_id == case_id))
            delivery = s.scalars(select(Delivery).where(Delivery.case_id == case_id))
            rid, aid, did = request.first().id, attempt.first().id, delivery.first().id  # type: ignore[union-attr]
            ids[case_id] = {
                OpenCase: case_id,
                AssemblePacket: case_id,
                PlanOutreach: rid,
                SendAttempt: aid,
                PollTask: aid,
                DeliverPacket: did,
            }
    broker = StubBroker()
    c.dispatcher = register_actors(broker, lambda: c)
    cmds: list[Command] = [IngestInbound("inbound-1")]
    for case_id in (standard, expedited):
        cmds += [t(i) for t, i in ids[case_id].items()]  # type: ignore[misc]
    c.dispatcher.enqueue(cmds)
    queued = _queued(broker)
    assert sorted(i for _, i in queued[queue_name(Lane.EXPEDITED)]) == sorted(
        ids[expedited].values()
    )
    assert sorted(i for _, i in queued[queue_name(Lane.STANDARD)]) == sorted(
        [*ids[standard].values(), "inbound-1"]
    )
    assert queued[queue_name(Lane.BULK)] == []
    assert ("send_attempt", ids[expedited][SendAttempt]) in queued[queue_name(Lane.EXPEDITED)]


class _Order(Middleware):
    """Records the id of every message a worker finishes, in order."""

    def __init__(self) -> None:
        self.done: list[str] = []

    def after_process_message(
        self, broker: Any, message: Any, *, result: Any = None, exception: Any = None
    ) -> None:
        if message.actor_name == "open_case":
            self.done.append(message.args[0])


@pytest.mark.parametrize("dedicated", [False, True], ids=["shared-pool", "dedicated-pool"])
def test_an_expedited_case_queued_after_a_backlog_is_worked_before_the_backlog_drains(
    env: tuple[Container, Any], dedicated: bool
) -> None:
    """Given 30 standard cases waiting and then one expedited case, when a real dramatiq worker
    (one thread, all lanes; or one more for the expedited lane alone) starts, then the
    expedited case is opened among the first few, not 31st."""
    c, _clock = env
    held = Recorded()
    c.dispatcher = held
    backlog = [_intake(c, i, "standard") for i in range(30)]
    urgent = _intake(c, 99, "expedited")
    broker = StubBroker()
    order = _Order()
    broker.add_middleware(order)
    c.dispatcher = register_actors(broker, lambda: c)
    c.dispatcher.enqueue(held.commands)
    assert held.commands[-1] == OpenCase(urgent)
    workers = [dramatiq.Worker(broker, worker_threads=1, worker_timeout=20)]
    if dedicated:
        workers[0] = dramatiq.Worker(
            broker, queues=set(lane_queues((Lane.STANDARD, Lane.BULK))), worker_threads=1
        )
        workers.append(
            dramatiq.Worker(broker, queues={queue_name(Lane.EXPEDITED)}, worker_threads=1)
        )
    for w in workers:
        w.start()
    try:
        broker.join(queue_name(Lane.EXPEDITED), timeout=30_000)
        broker.join(queue_name(Lane.STANDARD), timeout=60_000)
        for w in workers:
            w.join()
    finally:
        for w in workers:
            w.stop()
    assert sorted(order.done) == sorted([*backlog, urgent])
    assert order.done.index(urgent) < 5, order.done.index(urgent)


def test_the_tick_hands_out_due_work_earliest_deadline_first(env: tuple[Container, Any]) -> None:
    """Three cases whose follow-ups are due in the reverse order of their deadlines: the tick
    enqueues them by deadline (an expedited case received last goes first)."""
    c, clock = env
    late = _intake(c, 1, "standard", received_at="2026-04-17T09:00:00-04:00")
    sooner = _intake(c, 2, "standard", received_at="2026-04-16T09:00:00-04:00")
    urgent = _intake(c, 3, "expedited", received_at="2026-04-17T09:00:00-04:00")
    with transaction(c.sessions) as s:
        deadline = {case.id: case.deliver_by for case in s.scalars(select(Case))}
        assert deadline[urgent] < deadline[sooner] < deadline[late]
        requests = {r.case_id: r for r in s.scalars(select(RecordRequest))}
        for minutes, case_id in enumerate((urgent, sooner, late)):  # timers: reverse order
            requests[case_id].next_action_at = START + timedelta(minutes=10 - minutes)
        case_of = {r.id: case_id for case_id, r in requests.items()}
    clock.advance_to(START + timedelta(minutes=11))
    held = Recorded()
    c.dispatcher = held
    cmds = tick(c)
    assert held.commands == cmds
    planned = [case_of[cmd.request_id] for cmd in cmds if isinstance(cmd, PlanOutreach)]
    assert planned == [urgent, sooner, late]


def test_worker_help_documents_the_lane_options() -> None:
    """`goodfaith worker --help` names --lanes (with the lanes) and --worker-timeout."""
    from click.testing import CliRunner

    from worker.cli import main

    out = CliRunner().invoke(main, ["worker", "--help"]).output
    assert "--lanes" in out and "expedited,standard,bulk" in out and "--worker-timeout" in out
    bad = CliRunner().invoke(main, ["worker", "--lanes", "urgent"])
    assert bad.exit_code == 2 and "unknown lane 'urgent'" in bad.output
