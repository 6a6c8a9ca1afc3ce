"""Instants other systems send us (ISO-8601 / FHIR ``instant``), read in one place."""

from __future__ import annotations

from datetime import UTC, datetime

__all__ = ["utc_instant"]


def utc_instant(value: object) -> datetime | None:
    """``value`` (an ISO-8601 date-time, ``Z`` or an offset) as an aware UTC datetime; a
    value without an offset is read as UTC. None when it is not a string, is malformed, or has
    no UTC form (an instant at the edge of the calendar, 9999-12-31T23:59:59-23:59)."""
    if not isinstance(value, str):
        return None
    try:
        instant = datetime.fromisoformat(value.replace("Z", "+00:00"))
        return (instant if instant.tzinfo else instant.replace(tzinfo=UTC)).astimezone(UTC)
    except (ValueError, OverflowError):
        return None
