"""Instants as printed on documents (worker/localtime.py)."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from worker.localtime import format_local


@pytest.mark.parametrize(
    ("zone", "instant", "printed"),
    [
        (
            "America/New_York",
            datetime(2026, 4, 17, 13, 49, tzinfo=UTC),
            "2026-04-17 09:49 EDT (-04:00)",
        ),
        (
            "America/New_York",
            datetime(2026, 1, 5, 13, 49, tzinfo=UTC),
            "2026-01-05 08:49 EST (-05:00)",
        ),
        (
            "America/Chicago",
            datetime(2026, 4, 17, 13, 49, tzinfo=UTC),
            "2026-04-17 08:49 CDT (-05:00)",
        ),
        (
            "America/Chicago",
            datetime(2026, 1, 5, 13, 49, tzinfo=UTC),
            "2026-01-05 07:49 CST (-06:00)",
        ),
        ("Asia/Kolkata", datetime(2026, 1, 5, 13, 49, tzinfo=UTC), "2026-01-05 19:19 IST (+05:30)"),
    ],
)
def test_prints_local_time_with_abbreviation_and_offset(
    zone: str, instant: datetime, printed: str
) -> None:
    """An aware instant prints as local wall time, the zone's abbreviation and the offset."""
    assert format_local(instant, ZoneInfo(zone)) == printed


def test_the_same_instant_prints_the_same_from_any_input_offset() -> None:
    """Only the instant matters, not the offset it was given in."""
    zone = ZoneInfo("America/Chicago")
    utc = datetime(2026, 4, 17, 13, 49, tzinfo=UTC)
    assert format_local(utc.astimezone(ZoneInfo("Asia/Tokyo")), zone) == format_local(utc, zone)


def test_naive_datetime_is_refused() -> None:
    """A naive datetime raises ValueError: it could be any zone's wall time."""
    with pytest.raises(ValueError, match="timezone-aware"):
        format_local(datetime(2026, 4, 17, 9, 49), ZoneInfo("America/New_York"))
