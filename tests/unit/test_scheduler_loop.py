"""The scheduler process's loop: a tick that fails (database or Redis away) is logged and the
next one runs; nothing taken by the failed tick is lost; the heartbeat follows each good tick."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import select
from structlog.testing import capture_logs

from storage.db import transaction
from storage.models import Attempt
from tests.conftest import at, notification
from tests.fakes import make_container
from worker import services
from worker.commands import Command
from worker.domain.lifecycle import LEASE
from worker.scheduler import run_loop
from worker.wiring import InlineDispatcher

START = at("2026-04-17T09:00:00-04:00")


class Flaky(InlineDispatcher):
    """Loses everything while ``down`` (as a flushed Redis would), and raises on the first
    enqueue of a tick while ``raising`` (Redis refusing connections)."""

    def __init__(self) -> None:
        super().__init__()
        self.down = False
        self.raising = 0

    def enqueue(self, commands: Iterable[Command]) -> None:
        commands = list(commands)
        if self.raising and commands:
            self.raising -= 1
            raise ConnectionError("Redis is restarting")
        if not self.down:
            super().enqueue(commands)


class Stop(Exception):
    pass


def test_a_failed_tick_is_logged_and_its_work_is_re_driven_after_the_lease(
    tmp_path: Path,
) -> None:
    flaky = Flaky()
    c, clock, fax, _ = make_container(tmp_path, START)
    flaky.bind(c)
    c.dispatcher = flaky
    flaky.down = True
    services.intake(c, notification())  # the OpenCase message is lost
    flaky.down = False
    clock.advance_to(START + LEASE)
    flaky.raising = 1  # the tick leases the case's opening, then cannot enqueue it
    beats: list[datetime] = []
    pauses: list[float] = []

    def pause(seconds: float) -> None:
        pauses.append(seconds)
        if len(pauses) == 1:
            clock.advance_to(START + 2 * LEASE)  # the lease taken by the failed tick ends
        else:
            raise Stop

    with capture_logs() as logs, pytest.raises(Stop):
        run_loop(c, 0.5, beat=beats.append, sleep=pause)
    assert [e["event"] for e in logs if e["event"].startswith("scheduler.")][:1] == [
        "scheduler.tick_failed"
    ]
    assert next(e for e in logs if e["event"] == "scheduler.tick_failed")["error"] == (
        "ConnectionError"
    )
    assert beats == [START + 2 * LEASE]  # only the good tick beats, with its clock instant
    assert pauses == [0.5, 0.5]
    with transaction(c.sessions) as s:
        assert s.scalars(select(Attempt)).one().outcome == "sent"
    assert len(fax.sent) == 1
    c.close()
