"""The next attempt is planned in the transaction that records a sent one
(``services/outreach.py::_plan_after_send``), inside a savepoint: one transaction and one
message fewer per attempt, and nothing that goes wrong with the planning undoes the record of
what was sent."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import func, select, text

from storage.db import make_engine, transaction
from storage.models import Attempt, AuditEvent, AuditPending, RecordRequest
from tests.conftest import IN_CI, _fresh_postgres, at, notification, postgres_url
from tests.fakes import make_container
from worker import services
from worker.commands import Command, PlanOutreach, SendAttempt
from worker.wiring import Container

START = at("2026-04-17T09:00:00-04:00")  # a Friday morning: the first fax goes at once


class Held:
    """A dispatcher that keeps the commands it is given, to run them one at a time."""

    def __init__(self) -> None:
        self.queue: list[Command] = []

    def bind(self, container: Container) -> None:
        pass

    def enqueue(self, commands: Iterable[Command]) -> None:
        self.queue.extend(commands)


@contextmanager
def _held(tmp_path: Path, database_url: str) -> Iterator[tuple[Container, str]]:
    """A container whose first attempt is planned and not yet sent; (container, attempt id)."""
    c, _clock, _fax, _ = make_container(tmp_path, START, database_url)
    c.dispatcher = Held()
    try:
        services.intake(c, notification())
        queue: list[Command] = list(c.dispatcher.queue)  # type: ignore[attr-defined]
        while queue and not isinstance(queue[0], SendAttempt):
            queue = [*services.run_command(c, queue[0]), *queue[1:]]
        assert queue and isinstance(queue[0], SendAttempt), queue
        yield c, queue[0].attempt_id
    finally:
        c.close()


@pytest.fixture
def held(tmp_path: Path, database_url: str) -> Iterator[tuple[Container, str]]:
    with _held(tmp_path, database_url) as out:
        yield out


@pytest.fixture
def pg_held(tmp_path: Path) -> Iterator[tuple[Container, str, str]]:
    """:func:`_held` on PostgreSQL (under CI its absence is a failure); and its URL."""
    url = postgres_url()
    if url is None:
        if IN_CI:
            pytest.fail("CI needs GOODFAITH_DATABASE_URL naming a PostgreSQL database")
        pytest.skip("GOODFAITH_DATABASE_URL does not name a PostgreSQL database")
    url = _fresh_postgres(url)
    with _held(tmp_path, url) as (c, attempt_id):
        yield c, attempt_id, url


def _state(c: Container) -> tuple[Attempt, RecordRequest]:
    with transaction(c.sessions) as s:
        a = s.scalars(select(Attempt)).one()
        r = s.get(RecordRequest, a.request_id)
        assert r is not None
        return a, r


def test_the_send_sets_the_next_attempts_timer_itself(held: tuple[Container, str]) -> None:
    """Sending the first fax returns no PlanOutreach: the request's timer is already where a
    PlanOutreach would put it (the policy's second attempt, later), and the attempt's events
    were chained at the transaction's commit, not left pending by the savepoint's release."""
    c, attempt_id = held
    assert services.run_command(c, SendAttempt(attempt_id)) == []
    a, r = _state(c)
    assert a.sent_at is not None and a.outcome == "sent"
    assert r.next_action_at is not None and r.next_action_at > a.sent_at
    timer = r.next_action_at
    assert services.run_command(c, PlanOutreach(r.id)) == []  # what the message would do
    assert _state(c)[1].next_action_at == timer
    with transaction(c.sessions) as s:
        assert s.scalar(select(func.count()).select_from(AuditPending)) == 0
        kinds = list(s.scalars(select(AuditEvent.kind)))
    assert kinds.count("attempt.sent") == 1


def test_a_failing_planning_leaves_the_sent_fax_recorded(
    held: tuple[Container, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The policy raising after the fax went out: the savepoint is rolled back alone, the
    attempt stays recorded as sent (with its audit event), and a PlanOutreach message is
    returned to plan it again with its own retries."""
    c, attempt_id = held
    from worker.services import outreach

    def broken(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("policy bug")

    monkeypatch.setattr(outreach, "plan_next", broken)
    a, r = _state(c)
    assert services.run_command(c, SendAttempt(attempt_id)) == [PlanOutreach(r.id)]
    a, _r = _state(c)
    assert a.sent_at is not None and a.external_id is not None
    with transaction(c.sessions) as s:
        assert list(s.scalars(select(AuditEvent.kind))).count("attempt.sent") == 1
    monkeypatch.undo()
    assert services.run_command(c, PlanOutreach(r.id)) == []
    assert _state(c)[1].next_action_at is not None


def test_a_request_locked_elsewhere_is_not_waited_for(
    pg_held: tuple[Container, str, str],
) -> None:
    """PostgreSQL (SQLite runs one writer at a time): another transaction holds the
    request's row. The send does not wait for it while holding the attempt's lock (NOWAIT):
    the fax is recorded and the planning is left to a PlanOutreach message."""
    c, attempt_id, database_url = pg_held
    _a, r = _state(c)
    engine = make_engine(database_url)
    try:
        with engine.begin() as conn:
            conn.execute(
                text("SELECT id FROM record_requests WHERE id = :id FOR UPDATE"), {"id": r.id}
            )
            started = time.monotonic()
            follow = services.run_command(c, SendAttempt(attempt_id))
            waited = time.monotonic() - started
    finally:
        engine.dispose()
    assert follow == [PlanOutreach(r.id)]
    assert waited < 5
    a, _r = _state(c)
    assert a.sent_at is not None and a.outcome == "sent"
    assert services.run_command(c, PlanOutreach(r.id)) == []
    assert _state(c)[1].next_action_at is not None
