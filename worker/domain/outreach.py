"""The good-faith outreach policy: when to make the next records request, and over which channel.

Pure: the caller passes the facts (window, channels, attempts so far, the current instant, the
provider's business hours) and gets back a :class:`~worker.domain.types.PlannedAttempt` or
``None``. The caller stops asking once records, or a written "no records" reply, have arrived.

Policy (``OutreachSettings`` holds the numbers; docs/policy.md has worked examples)
-----------------------------------------------------------------------------------
- The outreach window is ``[opened_at, cutoff]`` (cutoff: usually the packet assembly cutoff,
  :attr:`worker.domain.deadlines.Timeline.assemble_at`). ``min_attempts`` (3) documented
  attempts, each strictly before ``cutoff``. Every attempt made counts, including one whose
  transmission FAILED (it is documented, and it triggers escalation to another channel).

Standard reviews: business time. A request is only *reasonable* if someone can act on it, so
the window is seen as the provider's business openings (:class:`BusinessWindow`: business
days of the jurisdiction's calendar, the provider's own hours where known, else
``jurisdiction.business_hours``; openings shorter than ``min_opening`` do not count).

- ``B`` is the window's business time. The nominal gap is ``max(min_spacing,
  spacing_fraction * B)`` of business time; the reply reserve is
  ``business_reply_reserve_fraction * B`` of business time before ``cutoff``, and the point
  where it starts is ``reserve_at``.
- The *business windows* a window allows are its openings starting no later than
  ``reserve_at``. Each attempt takes an opening of its own, later than the one in which the
  previous attempt is read (an attempt sent out of hours is read at the next opening), so no
  two attempts are read together; the last is no later than ``reserve_at``.
- Attempt 1: at once inside an opening, else at the next opening (at once after all when
  waiting for it would leave no room for the later attempts before ``cutoff``).
- Attempt k > 1: at ``previous + gap`` in business time, moved into the range of openings
  that still leaves one opening for each attempt after it: forward to an opening's start, or
  back to ``LAST_CALL`` before the closing of the latest opening allowed. After a FAILED
  transmission (read by nobody) the escalation may share the failed attempt's opening, at
  ``min_spacing`` of business time.
- Fewer business windows than attempts (the caller flags the request): the attempts still
  each take the earliest next opening, not the middle of the night; only when no opening is
  left before ``cutoff`` is an attempt made out of hours (``min_spacing`` after the previous),
  as long as it is before ``cutoff``.

Expedited reviews: elapsed time, away from the dead of night.

- Attempt 1 is due at once. Attempt k > 1 is planned from the previous attempt at
  ``spacing = max(min_spacing, spacing_fraction * W)`` (``W = cutoff - opened_at``) but no
  later than ``latest_k = cutoff - reply_reserve_fraction * W - r * min_spacing`` (r: required
  attempts still to come after k); never closer than ``min_spacing`` to the previous one.
- A planned time in the jurisdiction's ``quiet_hours`` (e.g. 22:00-07:00 local) moves forward
  to their end when that is no later than ``latest_k``, else back to ``LAST_CALL`` before they
  begin when that keeps ``min_spacing``; else it stays (urgency wins).

Both: the planned attempt is ``None`` when it would not be before ``cutoff``. The returned
``at`` is clamped to ``now``: a planned time already past (a late scheduler tick, a failure
learned after the escalation's planned time) comes back as ``now``, meaning "send
immediately" -- for a standard review's follow-up, the next opening when ``now`` is outside
the provider's business hours. Returned instants are in UTC. The previous attempt's time
is its ``sent_at`` (its ``planned_at`` when it has not been sent).

Channel choice: channels are ordered provider channels first, then designee channels (each
group in the order given). Attempt 1 uses the first (a provider channel when there is one),
reason INITIAL. Afterwards, if the previous attempt's outcome is FAILED, the next channel in
that order (wrapping around; with a single channel, the same one), reason ESCALATION;
otherwise the previous attempt's channel, reason FOLLOW_UP (the first channel if that one is
no longer offered). No channels: ``None``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta

from worker.domain.jurisdiction import Jurisdiction
from worker.domain.openings import (
    Opening,
    business_add,
    business_before,
    business_time,
    openings,
    read_index,
)
from worker.domain.types import (
    AttemptFact,
    AttemptOutcome,
    AttemptReason,
    Channel,
    ChannelKind,
    PlannedAttempt,
    ReviewType,
)

#: A move back into business hours (or out of the quiet hours) lands this long before the
#: closing, so that someone at the provider can see the request the same day.
LAST_CALL = timedelta(hours=1)


@dataclass(frozen=True)
class OutreachSettings:
    """Numbers of the good-faith policy.

    - ``min_attempts``: documented attempts to make before the cutoff (count, >= 1).
    - ``spacing_fraction``: nominal gap between attempts as a fraction of the outreach window,
      in ``[0, 1)`` -- of its business time for standard reviews, of its elapsed time for
      expedited ones.
    - ``reply_reserve_fraction``: fraction of an expedited window (elapsed time) kept free
      after the last required attempt so that a reply can still make the packet, in ``[0, 1)``.
    - ``business_reply_reserve_fraction``: the same for standard reviews, as a fraction of the
      window's business time, in ``[0, 1)``. Smaller than the elapsed one: business time has
      no nights in it, and 0.2 still lets a window received after hours (three business days,
      the last one cut at the assembly cutoff) give each attempt its own business day.
    - ``min_spacing``: the smallest gap ever planned between two attempts (> 0).
    - ``min_opening``: a business opening shorter than this (elapsed time) is not counted: a
      request arriving minutes before closing is read at the next opening.
    """

    min_attempts: int = 3
    spacing_fraction: float = 0.25
    reply_reserve_fraction: float = 0.25
    business_reply_reserve_fraction: float = 0.2
    min_spacing: timedelta = timedelta(minutes=30)
    min_opening: timedelta = timedelta(hours=1)

    def __post_init__(self) -> None:
        if self.min_attempts < 1:
            raise ValueError(f"min_attempts must be >= 1, got {self.min_attempts}")
        for name in (
            "spacing_fraction",
            "reply_reserve_fraction",
            "business_reply_reserve_fraction",
        ):
            value = getattr(self, name)
            if not 0 <= value < 1:
                raise ValueError(f"{name} is a fraction of the window in [0, 1), got {value}")
        if self.min_spacing <= timedelta(0):
            raise ValueError(f"min_spacing must be positive, got {self.min_spacing}")
        if self.min_opening < timedelta(0):
            raise ValueError(f"min_opening must not be negative, got {self.min_opening}")


DEFAULT_SETTINGS = OutreachSettings()


def _utc(instant: datetime, what: str) -> datetime:
    if instant.tzinfo is None or instant.utcoffset() is None:
        raise ValueError(f"{what} must be timezone-aware, got naive {instant.isoformat()}")
    return instant.astimezone(UTC)


def _ordered(channels: Sequence[Channel]) -> list[Channel]:
    return [c for c in channels if not c.designee] + [c for c in channels if c.designee]


#: A provider's measured success on a channel counts for the first attempt only from this many
#: completed attempts on it: fewer say nothing.
MIN_PROFILE_ATTEMPTS = 5
#: The score of a channel without enough history: neither good nor bad.
UNKNOWN_RATE = 0.5


@dataclass(frozen=True)
class ChannelRecord:
    """What past attempts to one provider over one channel kind did: ``completed`` attempts
    (delivered or failed), of which ``succeeded`` were delivered."""

    completed: int
    succeeded: int

    @property
    def rate(self) -> float:
        """The share delivered, in [0, 1] (0 with nothing completed)."""
        return self.succeeded / self.completed if self.completed else 0.0


def choose_channel(
    channels: Sequence[Channel],
    previous: AttemptFact | None,
    profile: Mapping[ChannelKind, ChannelRecord] | None = None,
) -> tuple[Channel, AttemptReason] | None:
    """The channel and reason for the attempt after ``previous`` (see the module docstring).

    ``profile``: the provider's measured channel success (optional). With it, the first
    attempt goes over the provider's own channel with the best delivered rate (a channel with
    fewer than :data:`MIN_PROFILE_ATTEMPTS` completed attempts scores :data:`UNKNOWN_RATE`;
    ties keep the listed order); later attempts are unchanged."""
    order = _ordered(channels)
    if not order:
        return None
    if previous is None:
        return _first_channel(order, profile), AttemptReason.INITIAL
    if previous.outcome is AttemptOutcome.FAILED:
        index = order.index(previous.channel) if previous.channel in order else -1
        return order[(index + 1) % len(order)], AttemptReason.ESCALATION
    same = previous.channel if previous.channel in order else order[0]
    return same, AttemptReason.FOLLOW_UP


def _first_channel(
    order: Sequence[Channel], profile: Mapping[ChannelKind, ChannelRecord] | None
) -> Channel:
    """The provider's own channel with the best score: its measured rate, or
    :data:`UNKNOWN_RATE` without enough history; ties keep the listed order."""
    if not profile:
        return order[0]
    own = [c for c in order if not c.designee] or list(order)

    def score(c: Channel) -> tuple[float, int]:
        rec = profile.get(c.kind)
        known = rec is not None and rec.completed >= MIN_PROFILE_ATTEMPTS
        return (rec.rate if known and rec is not None else UNKNOWN_RATE, -own.index(c))

    return max(own, key=score)


@dataclass(frozen=True)
class BusinessWindow:
    """A standard review's outreach window seen in the provider's business time.

    - ``openings``: every business opening in ``[opened_at, cutoff)`` at least ``min_opening``
      long (see :mod:`worker.domain.openings`), in order.
    - ``reserve_at``: the last required attempt should be no later than this, so that
      ``business_reply_reserve_fraction`` of the window's business time is left for a reply.
    - ``usable``: the openings that start no later than ``reserve_at``; each attempt takes its
      own. ``count`` (their number) is how many business windows the window allowed.
    - ``spacing``: the nominal gap between attempts, in business time.
    """

    openings: tuple[Opening, ...]
    usable: tuple[Opening, ...]
    reserve_at: datetime
    spacing: timedelta

    @property
    def count(self) -> int:
        """How many distinct business windows the outreach window allowed."""
        return len(self.usable)


def business_window(
    *,
    opened_at: datetime,
    cutoff: datetime,
    jurisdiction: Jurisdiction,
    hours: tuple[time, time] | None = None,
    settings: OutreachSettings = DEFAULT_SETTINGS,
) -> BusinessWindow:
    """The window ``[opened_at, cutoff)`` in the provider's business time (``hours``: its own
    local ``(open, close)``, default the jurisdiction's ``business_hours``)."""
    opened_at, cutoff = _utc(opened_at, "opened_at"), _utc(cutoff, "cutoff")
    spans = tuple(
        openings(
            opened_at,
            cutoff,
            jurisdiction.calendar,
            hours or jurisdiction.business_hours,
            settings.min_opening,
        )
    )
    total = business_time(spans)
    reserve = total * settings.business_reply_reserve_fraction
    reserve_at = business_before(spans, reserve) or cutoff
    usable = tuple(o for o in spans if o.start <= reserve_at)
    spacing = max(settings.min_spacing, total * settings.spacing_fraction)
    return BusinessWindow(spans, usable, reserve_at, spacing)


def business_windows(
    *,
    opened_at: datetime,
    cutoff: datetime,
    jurisdiction: Jurisdiction,
    hours: tuple[time, time] | None = None,
    settings: OutreachSettings = DEFAULT_SETTINGS,
) -> int:
    """How many distinct business windows ``[opened_at, cutoff)`` allows (see
    :class:`BusinessWindow`). Fewer than ``settings.min_attempts`` means the attempts cannot
    each have an opening of their own with a reply reserve after the last."""
    return business_window(
        opened_at=opened_at,
        cutoff=cutoff,
        jurisdiction=jurisdiction,
        hours=hours,
        settings=settings,
    ).count


def _first_standard(
    opened_at: datetime, cutoff: datetime, window: BusinessWindow, settings: OutreachSettings
) -> datetime:
    """Attempt 1 of a standard review: at once inside an opening, else at the next opening --
    unless waiting for it would leave no room for the attempts after it (then at once: a
    request sent out of hours is read at that opening all the same)."""
    index = read_index(window.openings, opened_at)
    if index == len(window.openings):
        return opened_at
    start = max(opened_at, window.openings[index].start)
    if start + (settings.min_attempts - 1) * settings.min_spacing >= cutoff:
        return opened_at
    return start


def _standard_time(
    *,
    base: datetime,
    previous_failed: bool,
    number: int,
    window: BusinessWindow,
    settings: OutreachSettings,
) -> datetime:
    """Attempt ``number`` (> 1) of a standard review, planned from ``base``: an opening of its
    own, business-time spacing, the reply reserve (see the module docstring)."""
    spans = window.usable if window.count >= settings.min_attempts else window.openings
    to_make = settings.min_attempts - number + 1  # this one and those after it
    earliest = base + settings.min_spacing
    read = read_index(spans, base)
    # A failed transmission was read by nobody: its escalation may share its opening.
    lo = read if previous_failed else read + 1
    hi = len(spans) - to_make
    if lo <= hi:
        gap = settings.min_spacing if previous_failed else window.spacing
        nominal = business_add(spans, base, gap)
        nominal_index = len(spans) if nominal is None else read_index(spans, nominal)
        index = min(max(nominal_index, lo), hi)
        o = spans[index]
        if nominal is not None and index == nominal_index:
            at = max(nominal, o.start)
        elif index > nominal_index:
            at = o.start
        else:  # held back from a later nominal time: late in this opening, not at closing
            at = max(o.start, o.end - LAST_CALL)
        if to_make == 1:
            at = max(o.start, min(at, window.reserve_at))
        at = max(at, earliest)
        if at < o.end:
            return at
    # Fewer openings than attempts still to make: the earliest next opening, not the night.
    every = window.openings
    later = read_index(every, base) + (0 if previous_failed else 1)
    if later < len(every) and max(every[later].start, earliest) < every[later].end:
        return max(every[later].start, earliest)
    return business_add(every, earliest, timedelta(0)) or earliest


def _out_of_quiet_hours(
    planned: datetime, floor: datetime, latest: datetime, jurisdiction: Jurisdiction
) -> datetime:
    """Expedited: move ``planned`` out of the jurisdiction's quiet hours (the dead of night):
    forward to their end if that is no later than ``latest``, else back to ``LAST_CALL``
    before they begin if that is no earlier than ``floor``; else leave it."""
    quiet = jurisdiction.quiet_hours
    if quiet is None:
        return planned
    begins, ends = quiet
    tz = jurisdiction.tz
    local = planned.astimezone(tz)
    t = local.time()
    overnight = begins > ends
    inside = (t >= begins or t < ends) if overnight else (begins <= t < ends)
    if not inside:
        return planned
    day = local.date()
    if overnight and t < ends:  # after midnight: the quiet hours began the evening before
        day -= timedelta(days=1)
    start = datetime.combine(day, begins, tzinfo=tz).astimezone(UTC)
    end_day = day + timedelta(days=1) if overnight else day
    end = datetime.combine(end_day, ends, tzinfo=tz).astimezone(UTC)
    if end <= latest:
        return end
    backward = start - LAST_CALL
    if backward >= floor:
        return backward
    return planned


def _expedited_time(
    *,
    base: datetime,
    number: int,
    opened_at: datetime,
    cutoff: datetime,
    jurisdiction: Jurisdiction,
    settings: OutreachSettings,
) -> datetime:
    """Attempt ``number`` (> 1) of an expedited review: elapsed-time spacing and reserve, out
    of the quiet hours where the window allows."""
    window = cutoff - opened_at
    spacing = max(settings.min_spacing, window * settings.spacing_fraction)
    still_to_come = settings.min_attempts - number
    latest = (
        cutoff - window * settings.reply_reserve_fraction - still_to_come * settings.min_spacing
    )
    earliest = base + settings.min_spacing
    planned = max(earliest, min(base + spacing, latest))
    return _out_of_quiet_hours(planned, earliest, max(latest, planned), jurisdiction)


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
    hours: tuple[time, time] | None = None,
    profile: Mapping[ChannelKind, ChannelRecord] | None = None,
) -> PlannedAttempt | None:
    """The next records request to make, or ``None`` when no (further) attempt is due.

    ``hours``: the provider's own local business hours, when known (default: the
    jurisdiction's). ``profile``: the provider's measured channel success, which may choose
    the first attempt's channel (see :func:`choose_channel`). ``None`` when ``min_attempts`` attempts have been made, when there is no
    channel, or when the next attempt could not be made before ``cutoff``. All instants must
    be aware.
    """
    opened_at = _utc(opened_at, "opened_at")
    cutoff = _utc(cutoff, "cutoff")
    now = _utc(now, "now")
    if len(attempts) >= settings.min_attempts or cutoff <= opened_at:
        return None
    history = sorted(attempts, key=lambda a: a.number)
    previous = history[-1] if history else None
    choice = choose_channel(channels, previous, profile)
    if choice is None:
        return None
    channel, reason = choice
    number = len(history) + 1
    standard = ReviewType(review_type) is ReviewType.STANDARD
    window = (
        business_window(
            opened_at=opened_at,
            cutoff=cutoff,
            jurisdiction=jurisdiction,
            hours=hours,
            settings=settings,
        )
        if standard
        else None
    )
    if previous is None:
        at = opened_at if window is None else _first_standard(opened_at, cutoff, window, settings)
    else:
        base = _utc(previous.sent_at or previous.planned_at, f"attempt {previous.number} time")
        if window is not None:
            at = _standard_time(
                base=base,
                previous_failed=previous.outcome is AttemptOutcome.FAILED,
                number=number,
                window=window,
                settings=settings,
            )
        else:
            at = _expedited_time(
                base=base,
                number=number,
                opened_at=opened_at,
                cutoff=cutoff,
                jurisdiction=jurisdiction,
                settings=settings,
            )
    if now > at:
        at = now  # overdue (a late tick, a failure learned late): at once...
        if window is not None and previous is not None:
            # ...but a standard review's follow-up waits for the provider's next opening
            at = business_add(window.openings, now, timedelta(0)) or now
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
    hours: tuple[time, time] | None = None,
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
            hours=hours,
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


def attempts_before(attempts: Sequence[AttemptFact], cutoff: datetime) -> int:
    """Documented attempts made before ``cutoff``: sent (whatever their outcome, a failed
    transmission included) strictly before it. Cancelled or never-sent attempts do not count."""
    cutoff = _utc(cutoff, "cutoff")
    return sum(
        1
        for a in attempts
        if a.sent_at is not None
        and a.outcome not in (AttemptOutcome.PENDING, AttemptOutcome.CANCELLED)
        and _utc(a.sent_at, "sent_at") < cutoff
    )


def standard_met(
    *, answered: bool, made: int, settings: OutreachSettings = DEFAULT_SETTINGS
) -> bool:
    """Whether the good-faith standard was met for one request: the records (or a written "no
    records" statement) were obtained, or ``min_attempts`` documented attempts were made
    before the cutoff (``made``, see :func:`attempts_before`)."""
    return answered or made >= settings.min_attempts
