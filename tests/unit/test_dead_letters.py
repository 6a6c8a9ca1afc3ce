"""Dead letters, through a real dramatiq worker on a StubBroker: an actor that raises until its
retries run out is recorded (ids and error type only), its case flagged, listed and retried."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dramatiq
import pytest
from click.testing import CliRunner
from dramatiq.brokers.stub import StubBroker
from dramatiq.middleware import Retries
from sqlalchemy import select

from connectors.base import DeliveryReceipt, PacketSubmission
from storage.db import transaction
from storage.models import AuditEvent, Case, DeadLetter
from tests.conftest import at, notification
from tests.fakes import api_client, make_container
from worker import services
from worker.actors import DeadLetters, InFlight, LogContext, actor_name, register_actors
from worker.commands import DeliverPacket
from worker.scheduler import next_due, tick


class FlakyDeliverer:
    """Raises an unexpected error (a bug, not a connector error) while ``broken`` is set."""

    def __init__(self) -> None:
        self.broken = True
        self.submissions: list[PacketSubmission] = []

    def deliver(self, submission: PacketSubmission) -> DeliveryReceipt:
        if self.broken:
            raise ZeroDivisionError("Jane Roe")  # the message must never reach the row or logs
        self.submissions.append(submission)
        return DeliveryReceipt("rcpt-1", submission.manifest["generated_at"], submission.sha256)


@pytest.fixture
def stub(tmp_path: Path) -> Iterator[tuple[Any, ...]]:
    broker = StubBroker()
    inflight = InFlight()
    # after_* hooks run in reverse order: Retries (re-enqueue or fail), then DeadLetters, then
    # InFlight counts the message done (so wait_idle also waits for retries and the row)
    broker.add_middleware(inflight, before=Retries)
    broker.add_middleware(DeadLetters(lambda: c), before=Retries)
    broker.add_middleware(LogContext())
    c, clock, _fax, _deliverer = make_container(tmp_path, at("2026-04-17T09:00:00-04:00"))
    deliverer = FlakyDeliverer()
    c.deliverer = deliverer
    c.dispatcher = register_actors(broker, lambda: c)
    deliver = broker.get_actor(actor_name(DeliverPacket))
    deliver.options.update(max_retries=1, min_backoff=10, max_backoff=20)
    worker = dramatiq.Worker(broker, worker_threads=2, worker_timeout=50)
    worker.start()
    yield c, clock, deliverer, inflight
    worker.stop()
    broker.close()
    c.close()


def _until_dead_lettered(c: Any, clock: Any, inflight: InFlight) -> Case:
    services.intake(c, notification())
    assert inflight.wait_idle(timeout=30)
    with transaction(c.sessions) as s:
        case = s.scalars(select(Case)).one()
        s.expunge(case)
    while (nxt := next_due(c)) is not None and nxt <= case.assemble_at:
        clock.advance_to(nxt)
        tick(c)
        assert inflight.wait_idle(timeout=30)
    return case


def test_an_actor_that_keeps_failing_is_recorded_flagged_listed_and_retried(
    stub: tuple[Any, ...],
) -> None:
    """DeliverPacket raises until dramatiq gives up: a DeadLetter row (actor, entity id, error
    type; no message text) flags the case; ops list it and retry it once, and the packet goes."""
    c, clock, deliverer, inflight = stub
    case = _until_dead_lettered(c, clock, inflight)
    with transaction(c.sessions) as s:
        letter = s.scalars(select(DeadLetter)).one()
        flagged = s.get(Case, case.id)
        assert flagged is not None and "see dead letters" in (flagged.attention or "")
        assert flagged.status == "delivering"
        assert (letter.actor, letter.command, letter.case_id) == (
            "deliver_packet",
            "DeliverPacket",
            case.id,
        )
        assert letter.error == "ZeroDivisionError" and letter.retries == 2
        assert letter.retried_at is None
    http = api_client(c, "ops")
    listed = http.get("/v1/dead-letters").json()
    assert listed["total"] == 1 and listed["dead_letters"][0]["id"] == letter.id
    assert "Jane Roe" not in http.get("/v1/dead-letters").text
    metrics = http.get("/metrics").text.splitlines()
    assert 'goodfaith_dead_letters{state="open"} 1' in metrics
    assert 'goodfaith_cases_at_risk{reason="dead_letter"} 1' in metrics

    deliverer.broken = False
    r = http.post(f"/v1/dead-letters/{letter.id}/retry")
    assert r.status_code == 200 and r.json()["status"] == "retried"
    assert inflight.wait_idle(timeout=30)
    assert len(deliverer.submissions) == 1
    assert http.post(f"/v1/dead-letters/{letter.id}/retry").status_code == 409
    assert http.post("/v1/dead-letters/nope/retry").status_code == 404
    assert http.get("/v1/dead-letters").json()["total"] == 0
    assert http.get("/v1/dead-letters?all=true").json()["total"] == 1
    with transaction(c.sessions) as s:
        assert s.get(Case, case.id).status == "delivered"  # type: ignore[union-attr]
        kinds = [e.kind for e in s.scalars(select(AuditEvent).order_by(AuditEvent.id))]
        assert kinds.count("dead_letter.recorded") == kinds.count("dead_letter.retried") == 1
    http.close()


def test_a_redelivered_failure_is_recorded_once(tmp_path: Path) -> None:
    """The same dramatiq message dead-lettered twice (a redelivery) is one row."""
    c, _clock, _fax, _deliverer = make_container(tmp_path, at("2026-04-17T09:00:00-04:00"))
    try:
        first = services.record_dead_letter(
            c, DeliverPacket("d-1"), "deliver_packet", "m-1", "E", 5
        )
        again = services.record_dead_letter(
            c, DeliverPacket("d-1"), "deliver_packet", "m-1", "E", 5
        )
        assert first is not None and again is None
        with transaction(c.sessions) as s:
            assert s.scalars(select(DeadLetter)).one().case_id is None  # unknown delivery
    finally:
        c.close()


def test_cli_lists_dead_letters(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`goodfaith dead-letters list` prints the open dead letters as JSON."""
    import json

    from config.settings import get_settings
    from worker.cli import main

    url = f"sqlite:///{tmp_path / 'cli.db'}"
    monkeypatch.setenv("GOODFAITH_DATABASE_URL", url)
    monkeypatch.setenv("GOODFAITH_OBJECT_STORE", f"file://{tmp_path / 'objects'}")
    get_settings.cache_clear()
    try:
        c, *_ = make_container(tmp_path, at("2026-04-17T09:00:00-04:00"), url)
        services.record_dead_letter(c, DeliverPacket("d-1"), "deliver_packet", "m-1", "Boom", 5)
        c.close()
        result = CliRunner().invoke(main, ["dead-letters", "list"])
        assert result.exit_code == 0, result.output
        page = json.loads(result.output)
        assert page["total"] == 1 and page["dead_letters"][0]["error"] == "Boom"
    finally:
        get_settings.cache_clear()
