"""Clocks. Domain code never calls ``datetime.now()``; it is handed a :class:`Clock`.

All instants are timezone-aware and returned in UTC.

- :class:`SystemClock` is the wall clock, for production.
- :class:`VirtualClock` only moves when told to (``advance_to``). The simulation driver
  uses it to run the real pipeline through days of case time in seconds of wall time.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """The current instant, timezone-aware, in UTC."""
        ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class VirtualClock:
    """A clock that stands still until :meth:`advance_to` moves it forward.

    Thread-safe: worker threads read it while the driver advances it.
    """

    def __init__(self, start: datetime) -> None:
        if start.tzinfo is None:
            raise ValueError("VirtualClock needs a timezone-aware start instant")
        self._now = start.astimezone(UTC)
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def advance_to(self, instant: datetime) -> None:
        """Move to ``instant``; moving backwards is ignored (time never runs back)."""
        if instant.tzinfo is None:
            raise ValueError("advance_to needs a timezone-aware instant")
        with self._lock:
            if instant > self._now:
                self._now = instant.astimezone(UTC)

    def advance(self, seconds: float) -> None:
        """Move forward by ``seconds`` (elapsed seconds, not business time)."""
        from datetime import timedelta

        with self._lock:
            self._now = self._now + timedelta(seconds=seconds)
