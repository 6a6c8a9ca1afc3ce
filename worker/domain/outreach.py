"""The good-faith outreach policy: when to make the next records request, and over which channel.

Pure: the caller passes the facts (window, channels, attempts so far, the current instant) and
gets back a :class:`~worker.domain.types.PlannedAttempt` or ``None``. The caller stops asking
once records, or a written "no records" reply, have arrived.

Policy (``OutreachSettings`` holds the numbers)
-----------------------------------------------
- The outreach window is ``[opened_at, cutoff]`` (cutoff: usually the packet assembly cutoff,
  :attr:`worker.domain.deadlines.Timeline.assemble_at`); ``W = cutoff - opened_at``.
- Exactly ``min_attempts`` (3) documented attempts, each strictly before ``cutoff``. Every
  attempt made counts, including one whose transmission FAILED (it is documented, and it
  triggers escalation to another channel).
- Attempt 1 is due at once: ``max(now, opened_at)``, even outside business hours.
- Attempt k > 1 is planned from the previous attempt's ``sent_at`` (its ``planned_at`` when
  it has not been sent) at the nominal ``spacing = max(min_spacing, spacing_fraction * W)``,
  but no later than ``latest_k = cutoff - reply_reserve_fraction * W - r * min_spacing`` where
  r is the number of required attempts still to come after k. So the last required attempt
  is no later than ``cutoff - reply_reserve_fraction * W`` (time for a reply to make the
  packet) whenever the attempts fit at ``min_spacing``.
- Window too short: the spacing is compressed to what fits before ``latest_k``, but never
  below ``min_spacing``; when even ``min_spacing`` overshoots ``latest_k`` the attempt is
  still made at ``previous + min_spacing`` (late but before the cutoff beats not at all), and
  ``None`` is returned when it would not be before ``cutoff``.
- Standard reviews, "where there is a choice": a planned time outside the provider's business
  hours (``jurisdiction.business_hours`` on the jurisdiction's business days) moves forward to
  the next opening if that is still no later than ``latest_k``; otherwise back into the latest
  business-hours interval before it (``LAST_CALL`` before closing, or later if needed), if
  that keeps at least half a business day -- or half the nominal spacing, if smaller -- after
  the previous attempt; otherwise it stays where it is (a fax sent out of hours is still a
  documented attempt, read at the next opening). Attempt 1 is never moved. Expedited reviews
  ignore business hours.
- The returned ``at`` is clamped to ``now``: a planned time already past (a late scheduler
  tick) comes back as ``now``, meaning "send immediately". Returned instants are in UTC.

Channel choice: channels are ordered provider channels first, then designee channels (each
group in the order given). Attempt 1 uses the first (a provider channel when there is one),
reason INITIAL. Afterwards, if the previous attempt's outcome is FAILED, the next channel in
that order (wrapping around; with a single channel, the same one), reason ESCALATION;
otherwise the previous attempt's channel, reason FOLLOW_UP (the first channel if that one is
no longer offered). No channels: ``None``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from worker.domain.jurisdiction import Jurisdiction
from worker.domain.types import (
    AttemptFact,
    AttemptOutcome,
    AttemptReason,
    Channel,
    PlannedAttempt,
    ReviewType,
)

#: A backward move into business hours lands at least this long before closing, so that
#: someone at the provider can see the request the same day.
LAST_CALL = timedelta(hours=1)


@dataclass(frozen=True)
class OutreachSettings:
    """Numbers of the good-faith policy.

    - ``min_attempts``: documented attempts to make before the cutoff (count, >= 1).
    - ``spacing_fraction``: nominal gap between attempts as a fraction of the outreach window
      ``W = cutoff - opened_at`` (elapsed time, not business time), in ``[0, 1)``.
    - ``reply_reserve_fraction``: fraction of ``W`` kept free after the last required attempt
      so that a reply can still make the packet, in ``[0, 1)``.
    - ``min_spacing``: the smallest gap ever planned between two attempts (elapsed time, > 0).
    """

    min_attempts: int = 3
    spacing_fraction: float = 0.25
    reply_reserve_fraction: float = 0.25
    min_spacing: timedelta = timedelta(minutes=30)

    def __post_init__(self) -> None:
        if self.min_attempts < 1:
            raise ValueError(f"min_attempts must be >= 1, got {self.min_attempts}")
        for name in ("spacing_fraction", "reply_reserve_fraction"):
            value = getattr(self, name)
            if not 0 <= value < 1:
                raise ValueError(f"{name} is a fraction of the window in [0, 1), got {value}")
        if self.min_spacing <= timedelta(0):
            raise ValueError(f"min_spacing must be positive, got {self.min_spacing}")


DEFAULT_SETTINGS = OutreachSettings()


def _utc(instant: datetime, what: str) -> datetime:
    if instant.tzinfo is None or instant.utcoffset() is None:
        raise ValueError(f"{what} must be timezone-aware, got naive {instant.isoformat()}")
    return instant.astimezone(UTC)


def _ordered(channels: Sequence[Channel]) -> list[Channel]:
    return [c for c in channels if not c.designee] + [c for c in channels if c.designee]


def choose_channel(
    channels: Sequence[Channel], previous: AttemptFact | None
) -> tuple[Channel, AttemptReason] | None:
    """The channel and reason for the attempt after ``previous`` (see the module docstring)."""
    order = _ordered(channels)
    if not order:
        return None
    if previous is None:
        return order[0], AttemptReason.INITIAL
    if previous.outcome is AttemptOutcome.FAILED:
        index = order.index(previous.channel) if previous.channel in order else -1
        return order[(index + 1) % len(order)], AttemptReason.ESCALATION
    same = previous.channel if previous.channel in order else order[0]
    return same, AttemptReason.FOLLOW_UP


def _into_business_hours(
    planned: datetime, floor: datetime, latest: datetime, jurisdiction: Jurisdiction
) -> datetime:
    """Move ``planned`` into business hours: forward up to ``latest``, else back to ``floor``."""
    calendar = jurisdiction.calendar
    hours = jurisdiction.business_hours
    if calendar.within_business_hours(planned, hours):
        return planned
    forward = calendar.next_business_moment(planned, hours).astimezone(UTC)
    if forward <= latest:
        return forward
    interval = calendar.latest_business_interval(planned, hours)
    if interval is not None:
        opens, closes = (t.astimezone(UTC) for t in interval)
        backward = max(closes - LAST_CALL, opens, floor)
        if backward < closes and backward <= planned:
            return backward
    return planned


def _planned_time(
    *,
    base: datetime,
    number: int,
    opened_at: datetime,
    cutoff: datetime,
    review_type: ReviewType,
    jurisdiction: Jurisdiction,
    settings: OutreachSettings,
) -> datetime:
    window = cutoff - opened_at
    spacing = max(settings.min_spacing, window * settings.spacing_fraction)
    still_to_come = settings.min_attempts - number
    latest = (
        cutoff - window * settings.reply_reserve_fraction - still_to_come * settings.min_spacing
    )
    earliest = base + settings.min_spacing
    planned = max(earliest, min(base + spacing, latest))
    if review_type is ReviewType.STANDARD:
        # A backward move must keep the attempts distinct: at least half a business day (or
        # half the nominal spacing, if smaller) after the previous one.
        opens, closes = jurisdiction.business_hours
        business_day = datetime.combine(base.date(), closes) - datetime.combine(base.date(), opens)
        floor = max(earliest, base + min(spacing, business_day) / 2)
        planned = _into_business_hours(planned, floor, max(latest, planned), jurisdiction)
    return planned


def next_attempt(
    *,
    opened_at: datetime,
    cutoff: datetime,
    review_type: ReviewType,
    channels: Sequence[Channel],
    attempts: Sequence[AttemptFact],
    now: datetime,
    jurisdiction: Jurisdiction,
    settings: OutreachSettings = DEFAULT_SETTINGS,
) -> PlannedAttempt | None:
    """The next records request to make, or ``None`` when no (further) attempt is due.

    ``None`` when ``min_attempts`` attempts have been made, when there is no channel, or when
    the next attempt could not be made before ``cutoff``. All instants must be aware.
    """
    opened_at = _utc(opened_at, "opened_at")
    cutoff = _utc(cutoff, "cutoff")
    now = _utc(now, "now")
    if len(attempts) >= settings.min_attempts or cutoff <= opened_at:
        return None
    history = sorted(attempts, key=lambda a: a.number)
    previous = history[-1] if history else None
    choice = choose_channel(channels, previous)
    if choice is None:
        return None
    channel, reason = choice
    number = len(history) + 1
    if previous is None:
        at = opened_at
    else:
        base = _utc(previous.sent_at or previous.planned_at, f"attempt {previous.number} time")
        at = _planned_time(
            base=base,
            number=number,
            opened_at=opened_at,
            cutoff=cutoff,
            review_type=ReviewType(review_type),
            jurisdiction=jurisdiction,
            settings=settings,
        )
    at = max(at, now)
    if at >= cutoff:
        return None
    return PlannedAttempt(number=number, at=at, channel=channel, reason=reason)


def planned_schedule(
    *,
    opened_at: datetime,
    cutoff: datetime,
    review_type: ReviewType,
    channels: Sequence[Channel],
    jurisdiction: Jurisdiction,
    settings: OutreachSettings = DEFAULT_SETTINGS,
) -> list[PlannedAttempt]:
    """Every attempt the policy makes for an unresponsive provider.

    Each attempt is assumed sent at its planned time and delivered (never answered), and the
    policy is asked again at that instant. For documentation, dashboards and tests.
    """
    facts: list[AttemptFact] = []
    plan: list[PlannedAttempt] = []
    now = opened_at
    while True:
        step = next_attempt(
            opened_at=opened_at,
            cutoff=cutoff,
            review_type=review_type,
            channels=channels,
            attempts=facts,
            now=now,
            jurisdiction=jurisdiction,
            settings=settings,
        )
        if step is None:
            return plan
        plan.append(step)
        facts.append(
            AttemptFact(
                number=step.number,
                planned_at=step.at,
                sent_at=step.at,
                channel=step.channel,
                outcome=AttemptOutcome.DELIVERED,
            )
        )
        now = step.at
