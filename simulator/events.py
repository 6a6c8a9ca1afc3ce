"""Virtual time on the far side: one heap of scheduled events, ordered by due instant.

Nothing sleeps. A far side pushes an :class:`Event` due at some instant (a webhook POST, a fax
transmission); the simulator's ``fire_due`` runs every event due at ``clock.now()`` in time order
(:meth:`EventHeap.run_due`), and a driver moves a virtual clock to :meth:`EventHeap.next_at`.
An event that fails in a way the vendor retries (a webhook our side refused) answers
:attr:`Fired.RETRY`: it runs again after the heap's :class:`Backoff` delay for the number of
tries it has made (its ``attempts``), until the backoff gives up; then it is dropped, logged
and counted in :attr:`EventHeap.abandoned`.
"""

from __future__ import annotations

import heapq
import itertools
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import Enum
from typing import Protocol

import structlog

__all__ = ["Backoff", "Event", "EventHeap", "Fired", "iso"]

log = structlog.get_logger(__name__)


class Fired(Enum):
    """What running one event did."""

    DONE = "done"  # it ran; nothing to count
    DELIVERED = "delivered"  # a webhook reached our side (counted by ``run_due``)
    RETRY = "retry"  # it failed as the vendor retries: runs again after the backoff delay


@dataclass(frozen=True)
class Backoff:
    """How a vendor retries a webhook our side refused: after the n-th failed try (n from 1)
    the next comes ``first_s * factor**(n-1)`` seconds later, at most ``max_delay_s``; after
    ``max_attempts`` tries in all it gives up. Seconds of (virtual) clock time.

    The defaults (5 s, doubling, at most 1 h, 10 tries: the last about 43 minutes after the
    first) are this simulator's choice: Telnyx documents that a webhook not answered 2xx is
    re-attempted (at the failover URL when one is set), not its schedule."""

    first_s: float = 5.0
    factor: float = 2.0
    max_delay_s: float = 3600.0
    max_attempts: int = 10

    def __post_init__(self) -> None:
        if self.first_s <= 0 or self.factor < 1 or self.max_delay_s <= 0 or self.max_attempts < 1:
            raise ValueError("Backoff needs first_s > 0, factor >= 1, max_delay_s > 0, tries >= 1")

    def delay(self, attempts: int) -> timedelta | None:
        """The wait after ``attempts`` failed tries, or None when the vendor gives up."""
        if attempts >= self.max_attempts:
            return None
        seconds = self.first_s * self.factor ** max(attempts - 1, 0)
        return timedelta(seconds=min(seconds, self.max_delay_s))


class Event(Protocol):
    """Scheduled far-side work."""

    def fire(self, due: datetime, now: datetime) -> Fired:
        """Run the event scheduled for ``due``; ``now`` (>= ``due``) is the clock's instant."""
        ...


class EventHeap:
    """Events by due instant, first pushed first among equals. Thread-safe.

    ``backoff`` spaces the retries of events answering :attr:`Fired.RETRY`; an event's
    ``attempts`` attribute (1 when it has none) is the number of tries it has made."""

    def __init__(self, backoff: Backoff | None = None) -> None:
        self._lock = threading.Lock()
        self._heap: list[tuple[datetime, int, Event]] = []
        self._seq = itertools.count()
        self.backoff = backoff or Backoff()
        self.abandoned: list[Event] = []  # events the backoff gave up on, in that order

    def push(self, due: datetime, event: Event) -> None:
        """Schedule ``event`` at ``due`` (timezone-aware)."""
        with self._lock:
            heapq.heappush(self._heap, (due, next(self._seq), event))

    def next_at(self) -> datetime | None:
        """The due instant of the earliest pending event, or None."""
        with self._lock:
            return self._heap[0][0] if self._heap else None

    def run_due(self, now: datetime) -> int:
        """Fire every event due at or before ``now`` in time order; return how many delivered.

        Events pushed while firing run in the same call when they are due by ``now``; events
        answering :attr:`Fired.RETRY` are pushed back at ``now`` + the backoff delay
        afterwards, or abandoned when the backoff gives up.
        """
        delivered = 0
        failed: list[Event] = []
        while True:
            with self._lock:
                if not self._heap or self._heap[0][0] > now:
                    break
                due, _, event = heapq.heappop(self._heap)
            outcome = event.fire(due, now)
            if outcome is Fired.DELIVERED:
                delivered += 1
            elif outcome is Fired.RETRY:
                failed.append(event)
        for event in failed:
            attempts = getattr(event, "attempts", 1)
            wait = self.backoff.delay(attempts if isinstance(attempts, int) else 1)
            if wait is None:
                with self._lock:
                    self.abandoned.append(event)
                log.info("sim.webhook_abandoned", attempts=attempts, kind=type(event).__name__)
            else:
                self.push(now + wait, event)
        return delivered


def iso(instant: datetime) -> str:
    """``instant`` in UTC as ISO-8601 with a ``Z`` suffix, as vendors write instants."""
    return instant.astimezone(UTC).isoformat().replace("+00:00", "Z")
