"""The file-backed virtual clock that separate processes share in rehearsals (bench/chaos.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from worker.sharedclock import FileClock, write_clock

T0 = datetime(2026, 4, 17, 13, 0, tzinfo=UTC)


def test_every_reader_sees_what_the_driver_wrote(tmp_path: Path) -> None:
    """Two clocks on one file (two processes) read the instant written, in UTC."""
    path = tmp_path / "clock"
    write_clock(path, T0.astimezone(datetime.now().astimezone().tzinfo))
    a, b = FileClock(path), FileClock(path)
    assert a.now() == b.now() == T0 and a.now().tzinfo is UTC
    write_clock(path, T0 + timedelta(hours=5))
    assert a.now() == b.now() == T0 + timedelta(hours=5)


def test_time_never_runs_back_for_a_reader(tmp_path: Path) -> None:
    path = tmp_path / "clock"
    write_clock(path, T0 + timedelta(minutes=10))
    clock = FileClock(path)
    assert clock.now() == T0 + timedelta(minutes=10)
    write_clock(path, T0)
    assert clock.now() == T0 + timedelta(minutes=10)


def test_a_missing_or_bad_file_fails_at_start_with_the_setting_named(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="GOODFAITH_CLOCK_FILE"):
        FileClock(tmp_path / "absent")
    (tmp_path / "naive").write_text("2026-04-17T13:00:00")
    with pytest.raises(RuntimeError, match="no offset"):
        FileClock(tmp_path / "naive")
    (tmp_path / "junk").write_text("tomorrow")
    with pytest.raises(RuntimeError, match="GOODFAITH_CLOCK_FILE"):
        FileClock(tmp_path / "junk")
    with pytest.raises(ValueError, match="timezone-aware"):
        write_clock(tmp_path / "c", datetime(2026, 4, 17))


def test_the_write_is_atomic_no_temporary_file_is_left(tmp_path: Path) -> None:
    write_clock(tmp_path / "clock", T0)
    assert [p.name for p in tmp_path.iterdir()] == ["clock"]
