"""The simulation's in-process executor: the same handlers as the dramatiq actors, an exact
in-flight count, retries and then a dead letter as dramatiq gives."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select

from simulator.inprocess import PoolDispatcher
from storage.db import transaction
from storage.models import Case, DeadLetter
from tests.conftest import at, notification
from tests.fakes import make_container
from worker import services
from worker.actors import ACTOR_OPTIONS
from worker.commands import OpenCase

START = at("2026-04-17T09:00:00-04:00")


def test_commands_and_their_follow_ups_run_before_idle(tmp_path: Path) -> None:
    """Intake through the pool: wait_idle returns once the case is opened and its first
    attempts went out (follow-ups of follow-ups included)."""
    pool = PoolDispatcher(4)
    c, _clock, fax, _d = make_container(tmp_path, START)
    c.dispatcher = pool
    pool.bind(c)
    try:
        doc = notification(review_type="expedited")
        services.intake(c, doc)
        assert pool.wait_idle(timeout=60)
        assert pool.count == 0
        assert len(fax.sent) == len(doc["providers"])
    finally:
        pool.close()
        c.close()


def test_a_failing_command_is_retried_then_dead_lettered(tmp_path: Path) -> None:
    """A handler that keeps raising runs 1 + max_retries times, then becomes a DeadLetter row
    with its case flagged, as the dramatiq path records it."""
    pool = PoolDispatcher(2, retry_pause_s=0.0)
    c, _clock, _fax, _d = make_container(tmp_path, START)
    c.dispatcher = pool
    pool.bind(c)
    runs: list[str] = []
    try:
        from worker import services as svc

        result = svc.intake(c, notification())
        assert pool.wait_idle(timeout=60)
        original = svc.HANDLERS[OpenCase]

        def broken(cmd: OpenCase) -> list[object]:
            runs.append(cmd.case_id)
            raise RuntimeError("boom")

        svc.HANDLERS[OpenCase] = broken
        try:
            pool.enqueue([OpenCase(result.case_id)])
            assert pool.wait_idle(timeout=60)
        finally:
            svc.HANDLERS[OpenCase] = original
        assert len(runs) == 1 + ACTOR_OPTIONS["max_retries"]
        with transaction(c.sessions) as s:
            letter = s.scalars(select(DeadLetter)).one()
            case = s.get(Case, result.case_id)
        assert (letter.actor, letter.error) == ("open_case", "RuntimeError")
        assert case is not None and case.attention is not None
    finally:
        pool.close()
        c.close()
