"""When the records packet is due, and when to assemble and deliver it. Pure functions.

Conventions
-----------
- Every instant is timezone-aware. A naive ``datetime`` raises :class:`DeadlineError`.
- Inputs in any offset (or UTC / ``Z``) are first converted to the jurisdiction's zone; only
  then is the local calendar day of receipt taken. Results are in the jurisdiction's zone.
- **Business days** (``unit = "business_days"``, e.g. MA standard, 3): the local calendar day
  of receipt is day 0, whatever the hour and whether or not it is a business day. The deadline
  is close of business (local, default 17:00) on the N-th business day after day 0. Received
  Fri 2026-04-17 at 09:00 or at 23:00 in Boston: day 0 is Friday; Mon 04-20 is Patriots' Day;
  business days 1-3 are Tue-Thu, so the packet is due Thu 2026-04-23 17:00 EDT.
- **Calendar days** (e.g. NC, 7): as above counting calendar days; due at close of business on
  day N even when day N is a weekend or holiday (no roll-forward: the conservative reading).
- **Hours** (e.g. expedited, 24): exactly N elapsed hours after receipt. The arithmetic is done
  in UTC, so a DST change in between does not shorten or lengthen the window (received
  Sat 2026-03-07 12:00 EST, 24 h -> Sun 2026-03-08 13:00 EDT).
- An unknown review type, or one the jurisdiction has no rule for, raises
  :class:`DeadlineError` naming the valid ones.

Timeline margins
----------------
``assemble_at = due - assembly margin`` (the packet is frozen then, with whatever has come
in) and ``deliver_by = due - delivery margin`` (latest safe hand-off to the agency). When the
window from receipt to due is so short that the assembly margin would take more than half of
it, both margins are scaled down by the same factor so that the assembly margin is exactly
half the window. Hence ``received_at < assemble_at <= deliver_by <= due_at`` always holds: at
least half the window is left for outreach, and the order of the two margins is kept.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from worker.domain.jurisdiction import DeadlineUnit, Jurisdiction, Margins
from worker.domain.types import ReviewType


class DeadlineError(ValueError):
    """The deadline cannot be computed from these inputs; the message says why."""


@dataclass(frozen=True)
class Timeline:
    """The instants of one case, all aware and in the jurisdiction's zone."""

    received_at: datetime
    due_at: datetime  # the legal deadline
    assemble_at: datetime  # packet assembly cutoff: outreach must be over by then
    deliver_by: datetime  # latest planned delivery to the agency


def _review_type(j: Jurisdiction, review_type: ReviewType | str) -> ReviewType:
    try:
        rt = ReviewType(review_type)
    except ValueError:
        valid = ", ".join(t.value for t in ReviewType)
        raise DeadlineError(f"unknown review type {review_type!r}; valid: {valid}") from None
    if rt not in j.rules:
        valid = ", ".join(t.value for t in j.rules)
        raise DeadlineError(
            f"jurisdiction {j.code} has no rule for {rt.value} reviews; it has: {valid}. "
            f"Add [{j.code}.{rt.value}] to config/jurisdictions.toml."
        )
    return rt


#: Years a notice may be received in: anything outside is a typo (e.g. 2206 for 2026), and
#: near year 9999 the deadline itself is past the end of the calendar.
YEARS = range(1970, 2200)


def _local(j: Jurisdiction, instant: datetime, what: str) -> datetime:
    if instant.tzinfo is None or instant.utcoffset() is None:
        raise DeadlineError(
            f"{what} must be timezone-aware, got naive {instant.isoformat()}; "
            "attach the zone it was recorded in (e.g. tzinfo=UTC)"
        )
    try:
        local = instant.astimezone(j.tz)
    except OverflowError:
        local = instant
    if local.year not in YEARS:
        raise DeadlineError(
            f"{what} {instant.isoformat()} is outside the years "
            f"{YEARS.start}–{YEARS.stop - 1}; check the date"
        )
    return local


def due_at(j: Jurisdiction, review_type: ReviewType | str, received_at: datetime) -> datetime:
    """The legal deadline for a notice received at ``received_at`` (aware, in ``j.tz``)."""
    rt = _review_type(j, review_type)
    received = _local(j, received_at, "received_at")
    rule = j.rules[rt]
    if rule.unit is DeadlineUnit.HOURS:
        return (received.astimezone(UTC) + timedelta(hours=rule.amount)).astimezone(j.tz)
    day0 = received.date()
    if rule.unit is DeadlineUnit.BUSINESS_DAYS:
        day_n = j.calendar.add_business_days(day0, rule.amount)
    else:
        day_n = day0 + timedelta(days=rule.amount)
    # Round-trip through UTC so a close of business inside a DST gap becomes a real instant.
    return (
        datetime.combine(day_n, j.close_of_business, tzinfo=j.tz).astimezone(UTC).astimezone(j.tz)
    )


def _fitted_margins(margins: Margins, window: timedelta) -> Margins:
    """Scale both margins down when the assembly margin exceeds half the window."""
    half = window / 2
    if margins.assembly <= half:
        return margins
    factor = half / margins.assembly
    return Margins(assembly=half, delivery=margins.delivery * factor)


def timeline(j: Jurisdiction, review_type: ReviewType | str, received_at: datetime) -> Timeline:
    """Due instant plus assembly cutoff and delivery target (see the module docstring)."""
    rt = _review_type(j, review_type)
    received = _local(j, received_at, "received_at")
    due = due_at(j, rt, received)
    due_utc = due.astimezone(UTC)
    # Elapsed time in UTC: subtracting two datetimes sharing a tzinfo ignores DST offsets.
    margins = _fitted_margins(j.margins[rt], due_utc - received.astimezone(UTC))
    return Timeline(
        received_at=received,
        due_at=due,
        assemble_at=(due_utc - margins.assembly).astimezone(j.tz),
        deliver_by=(due_utc - margins.delivery).astimezone(j.tz),
    )
