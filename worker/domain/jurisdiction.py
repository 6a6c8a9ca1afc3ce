"""A jurisdiction's external-review rules: deadline per review type, packet margins, calendar.

Pure value types; config/jurisdictions.py builds them from ``config/jurisdictions.toml``.

Units: ``DeadlineRule.amount`` counts business days, calendar days or elapsed hours as its
``unit`` says; :class:`Margins` are elapsed time (``timedelta``). Times of day (close of
business, business hours) are local wall-clock times in the jurisdiction's zone.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import time, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo

from worker.domain.calendar import BusinessCalendar
from worker.domain.types import ReviewType


class DeadlineUnit(StrEnum):
    BUSINESS_DAYS = "business_days"
    CALENDAR_DAYS = "calendar_days"
    HOURS = "hours"


@dataclass(frozen=True)
class DeadlineRule:
    """``amount`` units (business days, calendar days or elapsed hours) after receipt."""

    unit: DeadlineUnit
    amount: int


@dataclass(frozen=True)
class Margins:
    """Elapsed time before the due instant: assemble the packet at ``due - assembly``,
    deliver it no later than ``due - delivery`` (``delivery <= assembly``)."""

    assembly: timedelta
    delivery: timedelta


@dataclass(frozen=True)
class Jurisdiction:
    """One jurisdiction's rules. ``rules``/``margins`` are keyed by review type."""

    code: str
    name: str
    citation: str
    tz: ZoneInfo
    close_of_business: time
    business_hours: tuple[time, time]
    rules: Mapping[ReviewType, DeadlineRule]
    margins: Mapping[ReviewType, Margins]
    calendar: BusinessCalendar = field(compare=False)
    #: Local ``(begin, end)`` of the dead of night (may run past midnight, e.g. 22:00-07:00):
    #: expedited attempts avoid it where the window allows. None: no quiet hours.
    quiet_hours: tuple[time, time] | None = None
