"""More than one scheduler at once (no single point of failure): on PostgreSQL two schedulers
ticking together claim due timers with FOR UPDATE SKIP LOCKED, so none is enqueued twice."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import update

from storage.db import transaction
from storage.models import Case
from tests.conftest import at, notification
from tests.fakes import Recorded, make_container
from worker import services
from worker.commands import OpenCase
from worker.scheduler import tick
from worker.wiring import Container

START = at("2026-04-17T09:00:00-04:00")
CASES = 120


@pytest.fixture
def schedulers(tmp_path: Path, pg_url: str) -> Iterator[tuple[Container, Container]]:
    """Two schedulers (own engines, own dispatchers) on one database holding CASES cases
    whose opening timer is due."""
    a, clock, _f, _d = make_container(tmp_path / "a", START, pg_url)
    b, _c, _f2, _d2 = make_container(tmp_path / "b", START, pg_url)
    b.clock = a.clock = clock
    a.dispatcher = Recorded()  # intake's OpenCase messages are "lost": the timers must drive
    for i in range(CASES):
        services.intake(a, notification(notification_id=f"TWO-{i}"))
    with transaction(a.sessions) as s:
        s.execute(update(Case).values(open_at=START - timedelta(minutes=1)))
    a.dispatcher, b.dispatcher = Recorded(), Recorded()
    yield a, b
    a.close()
    b.close()


def test_two_schedulers_never_enqueue_the_same_timer_twice(
    schedulers: tuple[Container, Container],
) -> None:
    """Both tick at the same instant, again and again: every due opening is enqueued exactly
    once between them, and a lease taken by one is respected by the other."""
    a, b = schedulers
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def run(c: Container) -> None:
        try:
            for _ in range(5):
                barrier.wait()
                tick(c)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(c,)) for c in (a, b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    sent = [*a.dispatcher.commands, *b.dispatcher.commands]  # type: ignore[attr-defined]
    openings = Counter(cmd.case_id for cmd in sent if isinstance(cmd, OpenCase))
    assert len(openings) == CASES
    assert max(openings.values()) == 1, [k for k, n in openings.items() if n > 1][:5]
