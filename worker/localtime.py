"""Instants as printed on documents (request letters, packet cover and attestation).

A reader of a letter or packet is in the case's jurisdiction: every instant is printed in that
jurisdiction's zone, with the zone's abbreviation and the UTC offset, so it is unambiguous on
paper and across a DST change: ``2026-04-17 09:49 EDT (-04:00)``. Instants are stored and
computed in UTC; only printing converts.
"""

from __future__ import annotations

from datetime import datetime, tzinfo

__all__ = ["format_local"]


def format_local(instant: datetime, zone: tzinfo) -> str:
    """``instant`` in ``zone`` as ``YYYY-MM-DD HH:MM ABBR (+HH:MM)``, to the minute.

    Raises ValueError for a naive datetime: pass a timezone-aware instant (UTC from the clock
    or the database), never wall-clock time.
    """
    if instant.tzinfo is None or instant.utcoffset() is None:
        raise ValueError(
            f"a timezone-aware instant is required, got naive {instant!r}; "
            "attach its zone (e.g. datetime.now(UTC)) before printing it"
        )
    local = instant.astimezone(zone)
    offset = local.utcoffset()
    assert offset is not None  # astimezone(zone) always gives an aware datetime
    minutes = round(offset.total_seconds() / 60)
    sign = "-" if minutes < 0 else "+"
    hours, rest = divmod(abs(minutes), 60)
    printed = f"{local:%Y-%m-%d %H:%M}"
    abbreviation = local.tzname()
    if abbreviation:
        printed += f" {abbreviation}"
    return f"{printed} ({sign}{hours:02d}:{rest:02d})"
