"""A virtual clock shared by separate processes through a file: for rehearsals only.

``bench/chaos.py`` runs the production processes (``api``, ``worker``, ``scheduler``) as they
run in production, but on a virtual clock so that days of case time pass in minutes. Each
process reads the instant from the file named by ``GOODFAITH_CLOCK_FILE``
(:class:`FileClock`); the driver moves it forward with :func:`write_clock`, atomically (a new
file renamed over the old), so a reader never sees half an instant. Unset (production), every
process uses the wall clock.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

__all__ = ["FileClock", "write_clock"]


class FileClock:
    """Reads the current instant from ``path`` (an ISO-8601 instant with its offset) on every
    call; time never runs back, even if the file is rewritten with an earlier instant."""

    def __init__(self, path: str | Path) -> None:
        self._path = Path(path)
        self._last: datetime | None = None
        self.now()  # fail at start, not on the first message, if the file is missing or bad

    def now(self) -> datetime:
        try:
            text = self._path.read_text(encoding="ascii").strip()
            instant = datetime.fromisoformat(text)
        except (OSError, ValueError) as exc:
            raise RuntimeError(f"GOODFAITH_CLOCK_FILE {self._path}: {exc}") from None
        if instant.tzinfo is None:
            raise RuntimeError(f"GOODFAITH_CLOCK_FILE {self._path}: the instant has no offset")
        instant = instant.astimezone(UTC)
        if self._last is not None and instant < self._last:
            return self._last
        self._last = instant
        return instant


def write_clock(path: str | Path, instant: datetime) -> None:
    """Set the shared clock at ``path`` to ``instant`` (timezone-aware), atomically."""
    if instant.tzinfo is None:
        raise ValueError("write_clock needs a timezone-aware instant")
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(instant.astimezone(UTC).isoformat(), encoding="ascii")
    os.replace(tmp, path)
