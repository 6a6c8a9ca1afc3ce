"""A worker process closes its container when its dramatiq worker stops (``CloseOnShutdown``):
the background audit chainer chains what the last messages recorded before the process exits."""

from __future__ import annotations

from types import SimpleNamespace

import dramatiq
import pytest
from dramatiq.brokers.stub import StubBroker

from worker import wiring
from worker.actors import CloseOnShutdown


def test_a_worker_stopping_closes_its_process_container(monkeypatch: pytest.MonkeyPatch) -> None:
    closed: list[bool] = []
    monkeypatch.setattr(wiring, "_current", SimpleNamespace(close=lambda: closed.append(True)))
    broker = StubBroker()
    broker.add_middleware(CloseOnShutdown())
    worker = dramatiq.Worker(broker, worker_threads=1)
    worker.start()
    assert closed == []
    worker.stop()
    assert closed == [True]
    assert wiring._current is None  # the next use builds a new one


def test_closing_when_no_container_was_built_does_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(wiring, "_current", None)
    wiring.close_current()
    assert wiring._current is None


def test_a_failing_close_does_not_stop_the_shutdown(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken() -> None:
        raise OSError("database gone")

    monkeypatch.setattr(wiring, "_current", SimpleNamespace(close=broken))
    CloseOnShutdown().after_worker_shutdown(StubBroker(), None)
    assert wiring._current is None
