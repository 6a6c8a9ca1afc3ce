"""Business calendars: which local dates are business days, and business-hours arithmetic.

Pure: no I/O. Holidays come from the pinned ``holidays`` package (0.109, a plain library of
rules) with observance applied here (:class:`ObservedRule`), so that a library change in
observance rules cannot silently move a deadline; tests/unit/test_calendar_ma.py pins the
Massachusetts table.

Units: dates are local calendar dates of the calendar's zone; business hours are local
wall-clock times ``[open, close)``; instants passed in must be timezone-aware.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo

import holidays as holidays_lib

#: Local ``(open, close)`` wall-clock times used when a jurisdiction gives none.
DEFAULT_BUSINESS_HOURS = (time(8, 0), time(17, 0))

_SATURDAY, _SUNDAY = 5, 6
_OBSERVED_SUFFIX = " (observed)"


class ObservedRule(StrEnum):
    """How a holiday falling on a weekend is observed."""

    SUNDAY_TO_MONDAY = "sunday_to_monday"  # M.G.L. c.4 §7: Saturday holidays do not move
    FEDERAL = "federal"  # 5 U.S.C. 6103(b): Saturday -> Friday, Sunday -> Monday
    NONE = "none"  # the holiday date only
    LIBRARY = "library"  # whatever the `holidays` package does for the country/subdivision


@dataclass(frozen=True)
class HolidaySource:
    """Where holidays come from: the ``holidays`` package plus our observance rule.

    ``exclude`` lists holiday names (as the package spells them) to treat as business days.
    """

    country: str
    subdiv: str | None
    observed: ObservedRule
    exclude: frozenset[str] = frozenset()


class BusinessCalendar:
    """Business days (Mon-Fri minus holidays and extra closures) and business hours.

    Dates are local dates of the calendar's zone; instants passed in are converted to that
    zone first (naive instants are rejected).
    """

    def __init__(
        self,
        source: HolidaySource,
        tz: ZoneInfo,
        business_hours: tuple[time, time] = DEFAULT_BUSINESS_HOURS,
        extra_closures: Iterable[date] = (),
    ) -> None:
        if business_hours[0] >= business_hours[1]:
            raise ValueError(f"business hours must open before they close: {business_hours}")
        self.source = source
        self.tz = tz
        self.business_hours = business_hours
        self.extra_closures = frozenset(extra_closures)
        self._by_year: dict[int, dict[date, str]] = {}

    def __repr__(self) -> str:
        return f"BusinessCalendar({self.source!r}, {self.tz.key!r})"

    # -- days -------------------------------------------------------------------------------

    def holidays_in(self, year: int) -> dict[date, str]:
        """Holidays (and their observed days) and extra closures in ``year``, by name.

        Observed days are named ``"<holiday> (observed)"``; closures ``"Extra closure"``.
        Weekends are not listed: :meth:`is_business_day` treats them separately.
        """
        cached = self._by_year.get(year)
        if cached is None:
            cached = self._compute_year(year)
            self._by_year[year] = cached
        return dict(cached)

    def is_business_day(self, d: date) -> bool:
        """True for Monday-Friday dates that are neither a holiday nor an extra closure."""
        if d.weekday() in (_SATURDAY, _SUNDAY):
            return False
        cached = self._by_year.get(d.year)
        if cached is None:
            cached = self._compute_year(d.year)
            self._by_year[d.year] = cached
        return d not in cached

    def add_business_days(self, d: date, n: int) -> date:
        """The ``n``-th business day after ``d`` (``d`` itself never counts; ``n=0`` is ``d``).

        Negative ``n`` counts backwards.
        """
        step = timedelta(days=1 if n >= 0 else -1)
        remaining = abs(n)
        current = d
        while remaining:
            current += step
            if self.is_business_day(current):
                remaining -= 1
        return current

    # -- hours ------------------------------------------------------------------------------

    def within_business_hours(
        self, instant: datetime, hours: tuple[time, time] | None = None
    ) -> bool:
        """True when ``instant`` is on a business day, in ``[open, close)`` local time."""
        opens, closes = hours or self.business_hours
        local = _aware(instant).astimezone(self.tz)
        return self.is_business_day(local.date()) and opens <= local.time() < closes

    def next_business_moment(
        self, instant: datetime, hours: tuple[time, time] | None = None
    ) -> datetime:
        """``instant`` itself when within business hours, else the next opening (local zone)."""
        opens, closes = hours or self.business_hours
        local = _aware(instant).astimezone(self.tz)
        if self.within_business_hours(local, (opens, closes)):
            return local
        day = local.date()
        if not (self.is_business_day(day) and local.time() < opens):
            day = self.add_business_days(day, 1)
        return _local(day, opens, self.tz)

    def latest_business_interval(
        self, instant: datetime, hours: tuple[time, time] | None = None
    ) -> tuple[datetime, datetime] | None:
        """``(open, close)`` of the latest business-hours interval that opened at or before
        ``instant`` (today's, when ``instant`` is inside business hours). ``close`` is exclusive.

        ``None`` only for a calendar without a business day in the ten years before ``instant``.
        """
        opens, closes = hours or self.business_hours
        local = _aware(instant).astimezone(self.tz)
        day = local.date()
        if not (self.is_business_day(day) and local.time() >= opens):
            for _ in range(3660):
                day -= timedelta(days=1)
                if self.is_business_day(day):
                    break
            else:
                return None
        return _local(day, opens, self.tz), _local(day, closes, self.tz)

    # -- internals --------------------------------------------------------------------------

    def _compute_year(self, year: int) -> dict[date, str]:
        src = self.source
        result: dict[date, str] = {}
        if src.observed is ObservedRule.LIBRARY:
            lib = library_holidays(src.country, src.subdiv, (year,), observed=True)
            for d, names in lib.items():
                kept = [n for n in names if _base_name(n) not in src.exclude]
                if kept:
                    result[d] = "; ".join(kept)
        else:
            # A Saturday Jan 1 is observed (federal rule) on Dec 31 of the year before, a
            # Sunday Dec 31 on Jan 1 after: look at the neighbouring years too.
            years = (year - 1, year, year + 1)
            lib = library_holidays(src.country, src.subdiv, years, observed=False)
            for d, names in sorted(lib.items()):
                kept = [n for n in names if n not in src.exclude]
                if not kept:
                    continue
                name = "; ".join(kept)
                for day, label in _observances(d, name, src.observed):
                    if day.year == year:
                        result[day] = f"{result[day]}; {label}" if day in result else label
        for d in sorted(self.extra_closures):
            if d.year == year:
                result[d] = f"{result[d]}; Extra closure" if d in result else "Extra closure"
        return result


def _observances(d: date, name: str, rule: ObservedRule) -> list[tuple[date, str]]:
    out = [(d, name)]
    weekday = d.weekday()
    if weekday == _SUNDAY and rule in (ObservedRule.SUNDAY_TO_MONDAY, ObservedRule.FEDERAL):
        out.append((d + timedelta(days=1), name + _OBSERVED_SUFFIX))
    elif weekday == _SATURDAY and rule is ObservedRule.FEDERAL:
        out.append((d - timedelta(days=1), name + _OBSERVED_SUFFIX))
    return out


def _base_name(name: str) -> str:
    return name.removesuffix(_OBSERVED_SUFFIX)


def library_holidays(
    country: str, subdiv: str | None, years: Iterable[int], *, observed: bool
) -> dict[date, list[str]]:
    """The ``holidays`` package's table for ``years``: each date with its holiday names.

    ``observed=False`` lists holidays on their own dates only. Raises ``NotImplementedError``
    when the package does not know the country or subdivision.
    """
    table = holidays_lib.country_holidays(
        country, subdiv=subdiv, years=list(years), observed=observed
    )
    return {d: [n.strip() for n in str(names).split(";")] for d, names in table.items()}


def _aware(instant: datetime) -> datetime:
    if instant.tzinfo is None or instant.utcoffset() is None:
        raise ValueError(f"a timezone-aware instant is required, got naive {instant!r}")
    return instant


def _local(day: date, at: time, tz: ZoneInfo) -> datetime:
    """Wall-clock ``at`` on ``day`` in ``tz``; a time in a DST gap is normalised forward."""
    return datetime.combine(day, at, tzinfo=tz).astimezone(ZoneInfo("UTC")).astimezone(tz)
