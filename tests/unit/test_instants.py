"""connectors/instants.py: the one reader of instants other systems send."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from connectors.instants import utc_instant


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-04-20T14:00:00Z", datetime(2026, 4, 20, 14, tzinfo=UTC)),
        ("2026-04-20T10:00:00-04:00", datetime(2026, 4, 20, 14, tzinfo=UTC)),
        ("2026-04-20T14:00:00.123456+00:00", datetime(2026, 4, 20, 14, 0, 0, 123456, tzinfo=UTC)),
        ("2026-04-20T14:00:00", datetime(2026, 4, 20, 14, tzinfo=UTC)),  # no offset: UTC
    ],
)
def test_an_instant_is_read_in_utc(value: str, expected: datetime) -> None:
    read = utc_instant(value)
    assert read == expected and read is not None and read.tzinfo is UTC


@pytest.mark.parametrize(
    "value",
    [None, 1745157600, "", "yesterday", "2026-13-01T00:00:00Z", "9999-12-31T23:59:59-23:59"],
    ids=["none", "number", "empty", "words", "no-such-month", "no-utc-form"],
)
def test_anything_else_reads_as_none(value: object) -> None:
    assert utc_instant(value) is None
