"""Virtual time on the far side: one heap of scheduled events, ordered by due instant.

Nothing sleeps. A far side pushes an :class:`Event` due at some instant (a webhook POST, a fax
transmission); the simulator's ``fire_due`` runs every event due at ``clock.now()`` in time order
(:meth:`EventHeap.run_due`), and a driver moves a virtual clock to :meth:`EventHeap.next_at`.
An event that fails in a way the vendor retries (a webhook our side refused) answers
:attr:`Fired.RETRY`: it stays due and runs again on the next call.
"""

from __future__ import annotations

import heapq
import itertools
import threading
from datetime import UTC, datetime
from enum import Enum
from typing import Protocol

__all__ = ["Event", "EventHeap", "Fired", "iso"]


class Fired(Enum):
    """What running one event did."""

    DONE = "done"  # it ran; nothing to count
    DELIVERED = "delivered"  # a webhook reached our side (counted by ``run_due``)
    RETRY = "retry"  # it failed as the vendor retries: still due, runs again on the next call


class Event(Protocol):
    """Scheduled far-side work."""

    def fire(self, due: datetime, now: datetime) -> Fired:
        """Run the event scheduled for ``due``; ``now`` (>= ``due``) is the clock's instant."""
        ...


class EventHeap:
    """Events by due instant, first pushed first among equals. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._heap: list[tuple[datetime, int, Event]] = []
        self._seq = itertools.count()

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
        answering :attr:`Fired.RETRY` are pushed back at their own due instant afterwards.
        """
        delivered = 0
        failed: list[tuple[datetime, Event]] = []
        while True:
            with self._lock:
                if not self._heap or self._heap[0][0] > now:
                    break
                due, _, event = heapq.heappop(self._heap)
            outcome = event.fire(due, now)
            if outcome is Fired.DELIVERED:
                delivered += 1
            elif outcome is Fired.RETRY:
                failed.append((due, event))
        for due, event in failed:
            self.push(due, event)
        return delivered


def iso(instant: datetime) -> str:
    """``instant`` in UTC as ISO-8601 with a ``Z`` suffix, as vendors write instants."""
    return instant.astimezone(UTC).isoformat().replace("+00:00", "Z")
