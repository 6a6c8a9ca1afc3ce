"""Business openings: the stretches of a provider's business hours inside an outreach window,
and arithmetic in business time over them.

Pure: no I/O. An *opening* is one business day's ``[open, close)`` local hours (on the
jurisdiction's calendar, with the provider's own hours when it has them) clipped to the
window ``[start, end)``. A request sent in an opening can be acted on in it; one sent outside
business hours is read at the next opening. Openings shorter than a minimum (elapsed time, e.g.
the last 20 minutes of a day) are not counted: nobody can act on a request arriving then.

Units: instants are timezone-aware and come back in UTC; durations are ``timedelta`` of
*business* time (time inside openings) where a name says ``business``, elapsed time otherwise.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from worker.domain.calendar import BusinessCalendar

__all__ = [
    "Opening",
    "business_add",
    "business_before",
    "business_time",
    "openings",
    "read_index",
]


@dataclass(frozen=True)
class Opening:
    """One business-hours stretch inside a window: ``[start, end)``, UTC instants."""

    start: datetime
    end: datetime

    @property
    def length(self) -> timedelta:
        return self.end - self.start

    def __contains__(self, instant: object) -> bool:
        return isinstance(instant, datetime) and self.start <= instant < self.end


def openings(
    start: datetime,
    end: datetime,
    calendar: BusinessCalendar,
    hours: tuple[time, time] | None = None,
    minimum: timedelta = timedelta(0),
) -> list[Opening]:
    """The business openings of ``calendar`` (``hours`` local, default the calendar's) inside
    ``[start, end)``, in order; openings shorter than ``minimum`` (elapsed) are left out."""
    start, end = start.astimezone(UTC), end.astimezone(UTC)
    if end <= start:
        return []
    opens, closes = hours or calendar.business_hours
    tz = calendar.tz
    day = start.astimezone(tz).date()
    last = end.astimezone(tz).date()
    out: list[Opening] = []
    while day <= last:
        if calendar.is_business_day(day):
            o = _utc_at(day, opens, calendar)
            c = _utc_at(day, closes, calendar)
            lo, hi = max(o, start), min(c, end)
            if hi > lo and hi - lo >= minimum:
                out.append(Opening(lo, hi))
        day += timedelta(days=1)
    return out


def _utc_at(day: date, at: time, calendar: BusinessCalendar) -> datetime:
    return datetime.combine(day, at, tzinfo=calendar.tz).astimezone(UTC)


def business_time(spans: Sequence[Opening]) -> timedelta:
    """Total business time of ``spans``."""
    return sum((o.length for o in spans), timedelta(0))


def read_index(spans: Sequence[Opening], instant: datetime) -> int:
    """Index of the opening in which a request sent at ``instant`` is read: the one containing
    it, else the next one. ``len(spans)`` when no opening is left."""
    for i, o in enumerate(spans):
        if instant < o.end:
            return i
    return len(spans)


def business_add(spans: Sequence[Opening], instant: datetime, amount: timedelta) -> datetime | None:
    """The instant ``amount`` of business time after ``instant`` (counting only time inside
    ``spans`` after it); ``None`` when the openings end first. ``amount == 0`` gives
    ``instant`` moved to the next opening (itself when inside one)."""
    left = amount
    for o in spans:
        if instant >= o.end:
            continue
        begin = max(instant, o.start)
        room = o.end - begin
        if left < room or (left == timedelta(0)):
            return begin + left
        left -= room
    return None


def business_before(spans: Sequence[Opening], amount: timedelta) -> datetime | None:
    """The latest instant with ``amount`` of business time still to come in ``spans`` (the
    point a reply reserve of ``amount`` starts); ``None`` when ``spans`` hold less than that."""
    left = amount
    for o in reversed(spans):
        if left <= o.length:
            return o.end - left
        left -= o.length
    return None
