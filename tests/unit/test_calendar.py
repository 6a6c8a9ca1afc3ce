"""BusinessCalendar built directly from domain values, without the configuration loader."""

from __future__ import annotations

from datetime import date, datetime, time
from zoneinfo import ZoneInfo

import pytest

from worker.domain.calendar import BusinessCalendar, HolidaySource, ObservedRule

NY = ZoneInfo("America/New_York")


def _calendar(observed: ObservedRule) -> BusinessCalendar:
    return BusinessCalendar(HolidaySource("US", None, observed), NY)


def test_federal_rule_moves_saturday_holidays_across_the_year_end() -> None:
    """Federal observance: Sat 2022-01-01 is kept Fri 2021-12-31, listed in 2021's table."""
    cal = _calendar(ObservedRule.FEDERAL)
    assert cal.holidays_in(2021)[date(2021, 12, 31)] == "New Year's Day (observed)"
    assert not cal.is_business_day(date(2021, 12, 31))
    assert date(2021, 12, 31) not in _calendar(ObservedRule.NONE).holidays_in(2021)


def test_business_hours_must_open_before_closing() -> None:
    """A calendar whose business hours close before they open is refused."""
    source = HolidaySource("US", None, ObservedRule.NONE)
    with pytest.raises(ValueError, match="open before they close"):
        BusinessCalendar(source, NY, (time(17), time(8)))


def test_naive_instants_are_rejected() -> None:
    """Business-hours questions need a timezone-aware instant."""
    with pytest.raises(ValueError, match="timezone-aware"):
        _calendar(ObservedRule.NONE).within_business_hours(datetime(2026, 4, 21, 10))
