"""bench/load.py refuses to start when nothing it measures could happen: outside MA business
hours the standard and campaign first attempts wait for a later opening (it used to wait,
silently, for ever)."""

from __future__ import annotations

import importlib.util
from datetime import datetime
from pathlib import Path
from types import ModuleType
from zoneinfo import ZoneInfo

import pytest

BOSTON = ZoneInfo("America/New_York")


@pytest.fixture(scope="module")
def load() -> ModuleType:
    path = Path(__file__).resolve().parents[2] / "bench" / "load.py"
    spec = importlib.util.spec_from_file_location("bench_load", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_business_morning_is_open(load: ModuleType) -> None:
    assert load.closed_today(datetime(2026, 12, 1, 10, 0, tzinfo=BOSTON)) is None


def test_a_saturday_names_the_next_opening_on_a_utc_faketime(load: ModuleType) -> None:
    why = load.closed_today(datetime(2026, 11, 28, 11, 0, tzinfo=BOSTON))
    assert why is not None
    assert "Saturday" in why
    # Monday 30 November 08:00 EST, an hour into the opening, in UTC for TZ=UTC faketime
    assert "TZ=UTC faketime -f '@2026-11-30 14:00:00'" in why


def test_a_holiday_is_named(load: ModuleType) -> None:
    why = load.closed_today(datetime(2026, 11, 26, 10, 0, tzinfo=BOSTON))
    assert why is not None and "Thanksgiving" in why


def test_a_business_evening_is_closed(load: ModuleType) -> None:
    why = load.closed_today(datetime(2026, 11, 27, 23, 25, tzinfo=BOSTON))
    assert why is not None
    assert "@2026-11-30 14:00:00" in why
