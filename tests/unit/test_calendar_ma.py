"""Massachusetts business calendar (M.G.L. c.4 §7), as shipped in config/jurisdictions.toml."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from config.jurisdictions import get_jurisdiction
from worker.domain.calendar import BusinessCalendar


@pytest.fixture(scope="module")
def ma() -> BusinessCalendar:
    return get_jurisdiction("MA").calendar


# Every c.4 §7 legal holiday of 2026 and 2027 on the day it is kept (weekday or observed Monday).
MA_HOLIDAYS = {
    2026: [
        date(2026, 1, 1),  # New Year's Day (Thu)
        date(2026, 1, 19),  # Martin Luther King Jr. Day
        date(2026, 2, 16),  # Washington's Birthday
        date(2026, 4, 20),  # Patriots' Day (3rd Monday of April)
        date(2026, 5, 25),  # Memorial Day
        date(2026, 6, 19),  # Juneteenth (Fri)
        date(2026, 7, 4),  # Independence Day (Sat: not moved)
        date(2026, 9, 7),  # Labor Day
        date(2026, 10, 12),  # Columbus Day
        date(2026, 11, 11),  # Veterans Day (Wed)
        date(2026, 11, 26),  # Thanksgiving
        date(2026, 12, 25),  # Christmas (Fri)
    ],
    2027: [
        date(2027, 1, 1),  # New Year's Day (Fri)
        date(2027, 1, 18),  # Martin Luther King Jr. Day
        date(2027, 2, 15),  # Washington's Birthday
        date(2027, 4, 19),  # Patriots' Day
        date(2027, 5, 31),  # Memorial Day
        date(2027, 6, 19),  # Juneteenth (Sat: not moved)
        date(2027, 7, 4),  # Independence Day (Sun)
        date(2027, 7, 5),  # Independence Day observed (Mon)
        date(2027, 9, 6),  # Labor Day
        date(2027, 10, 11),  # Columbus Day
        date(2027, 11, 11),  # Veterans Day (Thu)
        date(2027, 11, 25),  # Thanksgiving
        date(2027, 12, 25),  # Christmas (Sat: not moved)
    ],
}


@pytest.mark.parametrize("year", sorted(MA_HOLIDAYS))
def test_holiday_table_is_exactly_the_legal_holidays(ma: BusinessCalendar, year: int) -> None:
    """The MA holiday table for the year lists exactly the c.4 §7 days, no more, no fewer."""
    assert sorted(ma.holidays_in(year)) == MA_HOLIDAYS[year]


@pytest.mark.parametrize("day", [d for days in MA_HOLIDAYS.values() for d in days], ids=str)
def test_every_holiday_is_not_a_business_day(ma: BusinessCalendar, day: date) -> None:
    """Each MA legal holiday (or its observed Monday) is not a business day."""
    assert not ma.is_business_day(day)


@pytest.mark.parametrize(
    "friday",
    [
        date(2026, 7, 3),  # before Independence Day, Sat 2026-07-04
        date(2027, 6, 18),  # before Juneteenth, Sat 2027-06-19
        date(2027, 12, 24),  # before Christmas, Sat 2027-12-25
        date(2027, 12, 31),  # before New Year's Day, Sat 2028-01-01
    ],
    ids=str,
)
def test_friday_before_a_saturday_holiday_is_a_business_day(
    ma: BusinessCalendar, friday: date
) -> None:
    """A Saturday holiday is not moved to Friday in MA (unlike the federal rule)."""
    assert friday.weekday() == 4
    assert ma.is_business_day(friday)


@pytest.mark.parametrize(
    ("sunday", "monday"),
    [
        (date(2027, 7, 4), date(2027, 7, 5)),  # Independence Day
        (date(2029, 11, 11), date(2029, 11, 12)),  # Veterans Day
        (date(2033, 12, 25), date(2033, 12, 26)),  # Christmas Day
    ],
    ids=str,
)
def test_sunday_holiday_is_observed_on_monday(
    ma: BusinessCalendar, sunday: date, monday: date
) -> None:
    """A holiday on Sunday makes the following Monday a non-business day."""
    assert sunday.weekday() == 6
    assert ma.holidays_in(monday.year)[monday].endswith("(observed)")
    assert not ma.is_business_day(monday)
    assert ma.is_business_day(monday + timedelta(days=1))


@pytest.mark.parametrize(
    "day",
    [
        date(2026, 3, 17),  # Evacuation Day (Tue)
        date(2026, 6, 17),  # Bunker Hill Day (Wed)
        date(2027, 3, 17),  # Evacuation Day (Wed)
        date(2027, 6, 17),  # Bunker Hill Day (Thu)
    ],
    ids=str,
)
def test_suffolk_county_days_are_business_days(ma: BusinessCalendar, day: date) -> None:
    """Evacuation Day and Bunker Hill Day are Suffolk-County-only: business days statewide."""
    assert ma.is_business_day(day)


@pytest.mark.parametrize(
    ("day", "expected"),
    [
        (date(2026, 4, 18), False),  # Saturday
        (date(2026, 4, 19), False),  # Sunday
        (date(2026, 4, 17), True),  # Friday
        (date(2026, 4, 21), True),  # Tuesday after Patriots' Day
        (date(2026, 11, 27), True),  # Friday after Thanksgiving: not a MA legal holiday
        (date(2026, 12, 24), True),  # Christmas Eve: not a holiday
    ],
    ids=str,
)
def test_weekends_and_ordinary_weekdays(ma: BusinessCalendar, day: date, expected: bool) -> None:
    """Weekends are never business days; ordinary weekdays (and holiday eves) are."""
    assert ma.is_business_day(day) is expected


def test_add_business_days_skips_weekend_and_patriots_day(ma: BusinessCalendar) -> None:
    """Three business days after Fri 2026-04-17 skip the weekend and Patriots' Day: Thu 04-23."""
    assert ma.add_business_days(date(2026, 4, 17), 1) == date(2026, 4, 21)
    assert ma.add_business_days(date(2026, 4, 17), 3) == date(2026, 4, 23)
    assert ma.add_business_days(date(2026, 4, 23), -3) == date(2026, 4, 17)
    assert ma.add_business_days(date(2026, 4, 18), 0) == date(2026, 4, 18)
