"""An in-process executor for simulations: the services run on a pool of threads of this
process, with no broker between them, so nothing polls a queue.

The same handlers run (``worker.services.run_command``) with the same follow-ups as through
dramatiq; what a broker adds is reproduced here: a command that raises is run again, up to the
actors' ``max_retries`` (worker/actors.py), then recorded as a dead letter and its case
flagged, as the ``DeadLetters`` middleware does. Because nothing is queued outside this
process, the in-flight count is exact: :meth:`PoolDispatcher.wait_idle` returns once every
command given and every follow-up has run. It serves the time-compressed simulation
(``run_simulation(executor="inprocess")``, ``bench/bench_simulation.py``), where the virtual
clock only moves when nothing is in flight; production and ``goodfaith demo`` keep dramatiq.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor

import structlog

from worker.actors import ACTOR_OPTIONS, actor_name
from worker.commands import Command, entity_id
from worker.services import record_dead_letter, run_command
from worker.wiring import Container

__all__ = ["PoolDispatcher"]

log = structlog.get_logger("goodfaith.inprocess")


class PoolDispatcher:
    """Runs commands on ``threads`` threads; counts what is in flight (see module docstring).

    ``retry_pause_s``: wall seconds before the n-th run again of a failed command, times
    2**n (the virtual clock does not move meanwhile, as with dramatiq's backoff)."""

    def __init__(
        self,
        threads: int,
        *,
        max_retries: int = int(ACTOR_OPTIONS["max_retries"]),
        retry_pause_s: float = 0.01,
    ) -> None:
        self.container: Container | None = None
        self.max_retries = max_retries
        self.retry_pause_s = retry_pause_s
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="sim-worker")
        self._count = 0
        self._cond = threading.Condition()

    def bind(self, container: Container) -> None:
        self.container = container

    @property
    def count(self) -> int:
        """Commands given and not yet run to the end (retries included)."""
        with self._cond:
            return self._count

    def enqueue(self, commands: Iterable[Command]) -> None:
        for cmd in commands:
            self._submit(cmd, 0)

    def _submit(self, cmd: Command, retries: int) -> None:
        with self._cond:
            self._count += 1
        self._pool.submit(self._run, cmd, retries)

    def _run(self, cmd: Command, retries: int) -> None:
        c = self.container
        assert c is not None, "bind the dispatcher to its container first"
        name = actor_name(type(cmd))
        entity = entity_id(cmd)
        try:
            with structlog.contextvars.bound_contextvars(actor=name, entity_id=entity):
                follow = run_command(c, cmd)
            self.enqueue(follow)
        except Exception as exc:
            if retries < self.max_retries:
                time.sleep(self.retry_pause_s * 2**retries)
                self._submit(cmd, retries + 1)  # counted before this run is counted done
            else:
                log.warning("message.failed", actor=name, error=type(exc).__name__)
                try:
                    record_dead_letter(c, cmd, name, uuid.uuid4().hex, type(exc).__name__, retries)
                except Exception as recording:  # the watchdog still finds the case
                    log.error("dead_letter.unrecorded", error=type(recording).__name__)
        finally:
            with self._cond:
                self._count -= 1
                if self._count <= 0:
                    self._cond.notify_all()

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until nothing is in flight; False on timeout (seconds)."""
        with self._cond:
            return self._cond.wait_for(lambda: self._count <= 0, timeout=timeout)

    def close(self) -> None:
        """Stop the threads (what is in flight finishes; what waits is dropped)."""
        self._pool.shutdown(wait=True, cancel_futures=True)
