"""The good-faith outreach policy: how many attempts, when, and over which channel."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from config.jurisdictions import get_jurisdiction
from worker.domain.deadlines import timeline
from worker.domain.jurisdiction import Jurisdiction
from worker.domain.outreach import (
    OutreachSettings,
    business_window,
    next_attempt,
    planned_schedule,
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

NY = ZoneInfo("America/New_York")
STD, EXP = ReviewType.STANDARD, ReviewType.EXPEDITED
FAX = Channel(ChannelKind.FAX, "+16175550100")
FHIR = Channel(ChannelKind.FHIR, "https://ehr.example.org/fhir", owner_id="1234567893")
VENDOR = Channel(ChannelKind.FAX, "+16175550199", designee=True)
CHANNELS = (FAX, FHIR, VENDOR)
DEFAULTS = OutreachSettings()
MA = get_jurisdiction("MA")


def _schedule(
    received: datetime,
    review_type: ReviewType,
    *,
    j: Jurisdiction = MA,
    channels: Sequence[Channel] = CHANNELS,
    policy: OutreachSettings = DEFAULTS,
) -> tuple[list[PlannedAttempt], datetime]:
    cutoff = timeline(j, review_type, received).assemble_at
    plan = planned_schedule(
        opened_at=received,
        cutoff=cutoff,
        review_type=review_type,
        channels=channels,
        jurisdiction=j,
        settings=policy,
    )
    return plan, cutoff


def _fact(
    number: int, at: datetime, channel: Channel, outcome: AttemptOutcome = AttemptOutcome.DELIVERED
) -> AttemptFact:
    return AttemptFact(number=number, planned_at=at, sent_at=at, channel=channel, outcome=outcome)


def _next(
    attempts: Sequence[AttemptFact],
    *,
    now: datetime,
    opened_at: datetime = datetime(2026, 4, 17, 9, tzinfo=NY),
    cutoff: datetime = datetime(2026, 4, 18, 6, tzinfo=NY),
    review_type: ReviewType = EXP,
    channels: Sequence[Channel] = CHANNELS,
    policy: OutreachSettings = DEFAULTS,
) -> PlannedAttempt | None:
    return next_attempt(
        opened_at=opened_at,
        cutoff=cutoff,
        review_type=review_type,
        channels=channels,
        attempts=attempts,
        now=now,
        jurisdiction=MA,
        settings=policy,
    )


RECEIPTS = [
    (STD, datetime(2026, 4, 17, 9, tzinfo=NY)),  # Friday before Patriots' Day
    (STD, datetime(2026, 4, 17, 17, 30, tzinfo=NY)),  # Friday after hours
    (STD, datetime(2026, 4, 21, 10, tzinfo=NY)),  # plain Tuesday
    (STD, datetime(2026, 7, 2, 16, tzinfo=NY)),  # before the July 4 weekend
    (EXP, datetime(2026, 4, 17, 9, tzinfo=NY)),
    (EXP, datetime(2026, 3, 7, 22, tzinfo=NY)),  # across spring-forward
]


@pytest.mark.parametrize(("review_type", "received"), RECEIPTS, ids=str)
def test_unresponsive_provider_gets_exactly_three_attempts_before_cutoff(
    review_type: ReviewType, received: datetime
) -> None:
    """Three attempts, numbered 1-3, increasing, each >= min_spacing apart, all before cutoff."""
    plan, cutoff = _schedule(received, review_type)
    assert [a.number for a in plan] == [1, 2, 3]
    assert [a.reason for a in plan] == [
        AttemptReason.INITIAL,
        AttemptReason.FOLLOW_UP,
        AttemptReason.FOLLOW_UP,
    ]
    assert all(a.at < cutoff for a in plan)
    first = received if review_type is EXP else MA.calendar.next_business_moment(received)
    assert plan[0].at == first
    gaps = [b.at - a.at for a, b in itertools.pairwise(plan)]
    assert all(gap >= DEFAULTS.min_spacing for gap in gaps)


@pytest.mark.parametrize(("review_type", "received"), RECEIPTS, ids=str)
def test_third_attempt_leaves_the_reply_reserve(
    review_type: ReviewType, received: datetime
) -> None:
    """The last required attempt leaves the reply reserve: expedited, reply_reserve_fraction of
    the elapsed window; standard, business_reply_reserve_fraction of its business time."""
    plan, cutoff = _schedule(received, review_type)
    if review_type is EXP:
        window = cutoff.astimezone(UTC) - received.astimezone(UTC)
        assert plan[-1].at <= cutoff - DEFAULTS.reply_reserve_fraction * window
        return
    w = business_window(opened_at=received, cutoff=cutoff, jurisdiction=MA)
    assert w.count >= 3
    left = sum(
        (o.end - max(o.start, plan[-1].at) for o in w.openings if o.end > plan[-1].at),
        timedelta(0),
    )
    total = sum((o.length for o in w.openings), timedelta(0))
    assert left >= DEFAULTS.business_reply_reserve_fraction * total


def test_expedited_attempts_use_nominal_spacing_and_ignore_business_hours() -> None:
    """Expedited MA, received Fri 09:00: attempts at 09:00, 14:15 and 19:30 (after hours)."""
    plan, cutoff = _schedule(datetime(2026, 4, 17, 9, tzinfo=NY), EXP)
    assert cutoff == datetime(2026, 4, 18, 6, tzinfo=NY)
    assert [a.at for a in plan] == [
        datetime(2026, 4, 17, 9, tzinfo=NY),
        datetime(2026, 4, 17, 14, 15, tzinfo=NY),
        datetime(2026, 4, 17, 19, 30, tzinfo=NY),
    ]
    assert not MA.calendar.within_business_hours(plan[2].at)


def test_standard_attempts_take_a_business_day_each() -> None:
    """Standard MA, received Fri 09:00 before Patriots' Day: Fri 09:00, Tue 08:00, Wed 08:00 --
    three attempts in three business openings, none read together, Wed+Thu left for a reply."""
    plan, _ = _schedule(datetime(2026, 4, 17, 9, tzinfo=NY), STD)
    assert [a.at for a in plan] == [
        datetime(2026, 4, 17, 9, tzinfo=NY),
        datetime(2026, 4, 21, 8, tzinfo=NY),  # Mon is Patriots' Day: Tuesday's opening
        datetime(2026, 4, 22, 8, tzinfo=NY),  # nominal Tue 15:45 is Tuesday's opening again
    ]
    assert all(MA.calendar.within_business_hours(a.at) for a in plan)


def test_standard_attempts_keep_business_spacing_when_hours_allow() -> None:
    """Standard MA, received Tue 10:00: B = 30 business hours, spacing 7 h 30 of business
    time: Wed 08:30 (7 h Tuesday + 30 min), then Wed 16:00 would share Wednesday's opening, so
    Thu 08:00."""
    received = datetime(2026, 4, 21, 10, tzinfo=NY)
    plan, _ = _schedule(received, STD)
    assert [a.at for a in plan[1:]] == [
        datetime(2026, 4, 22, 8, 30, tzinfo=NY),
        datetime(2026, 4, 23, 8, tzinfo=NY),
    ]


def test_first_attempt_waits_for_the_opening_on_standard_reviews_only() -> None:
    """Received Fri 17:30 (after hours): a standard review's attempt 1 waits for Tuesday's
    opening (Monday is Patriots' Day); an expedited one goes at once."""
    plan, _ = _schedule(datetime(2026, 4, 17, 17, 30, tzinfo=NY), STD)
    assert plan[0].at == datetime(2026, 4, 21, 8, tzinfo=NY)
    later = datetime(2026, 4, 17, 18, tzinfo=NY)
    step = _next([], now=later)
    assert step is not None and step.at == later


def test_expedited_attempts_avoid_the_dead_of_night() -> None:
    """Expedited MA received Fri 18:00: the nominal attempt 2 at Sat 00:45 moves to the end of
    the quiet hours (Sat 07:00), which still leaves room before the reserve."""
    plan, _ = _schedule(datetime(2026, 4, 17, 18, tzinfo=NY), EXP)
    assert [a.at for a in plan] == [
        datetime(2026, 4, 17, 18, tzinfo=NY),
        datetime(2026, 4, 18, 7, tzinfo=NY),
        datetime(2026, 4, 18, 9, 45, tzinfo=NY),
    ]


def test_escalation_after_a_failed_fax_may_share_its_opening() -> None:
    """A failed transmission was read by nobody: the escalation follows min_spacing later in
    the same opening instead of waiting for the next business day."""
    t0 = datetime(2026, 4, 21, 10, tzinfo=NY)
    cutoff = datetime(2026, 4, 24, 13, tzinfo=NY)
    step = _next(
        [_fact(1, t0, FAX, AttemptOutcome.FAILED)],
        now=t0,
        opened_at=t0,
        cutoff=cutoff,
        review_type=STD,
    )
    assert step is not None and step.reason is AttemptReason.ESCALATION
    assert step.at == t0 + DEFAULTS.min_spacing


def test_provider_hours_replace_the_jurisdiction_hours() -> None:
    """A provider open 10:00-14:00 gets its attempts inside those hours."""
    received = datetime(2026, 4, 21, 7, tzinfo=NY)
    cutoff = timeline(MA, STD, received).assemble_at
    hours = (time(10), time(14))
    plan = planned_schedule(
        opened_at=received,
        cutoff=cutoff,
        review_type=STD,
        channels=CHANNELS,
        jurisdiction=MA,
        hours=hours,
    )
    assert len(plan) == 3
    assert all(MA.calendar.within_business_hours(a.at, hours) for a in plan)
    assert plan[0].at == datetime(2026, 4, 21, 10, tzinfo=NY)


def test_failed_transmission_escalates_through_channels_then_designee() -> None:
    """FAILED -> next channel (provider channels, then designee, then wrap), reason ESCALATION."""
    t0 = datetime(2026, 4, 17, 9, tzinfo=NY)
    failed = AttemptOutcome.FAILED
    step = _next([_fact(1, t0, FAX, failed)], now=t0)
    assert step is not None and (step.channel, step.reason) == (FHIR, AttemptReason.ESCALATION)
    step = _next([_fact(1, t0, FAX), _fact(2, t0, FHIR, failed)], now=t0)
    assert step is not None and (step.channel, step.reason) == (VENDOR, AttemptReason.ESCALATION)
    policy = OutreachSettings(min_attempts=4)
    history = [_fact(1, t0, FAX), _fact(2, t0, FHIR), _fact(3, t0, VENDOR, failed)]
    step = _next(history, now=t0, policy=policy)
    assert step is not None and (step.channel, step.reason) == (FAX, AttemptReason.ESCALATION)


def test_delivered_or_sent_attempt_is_followed_up_on_the_same_channel() -> None:
    """A non-failed attempt is followed up over the same channel, reason FOLLOW_UP."""
    t0 = datetime(2026, 4, 17, 9, tzinfo=NY)
    for outcome in (AttemptOutcome.DELIVERED, AttemptOutcome.SENT, AttemptOutcome.PENDING):
        step = _next([_fact(1, t0, FHIR, outcome)], now=t0)
        assert step is not None and (step.channel, step.reason) == (
            FHIR,
            AttemptReason.FOLLOW_UP,
        )


def test_first_attempt_prefers_a_provider_channel_over_the_designee() -> None:
    """Attempt 1 uses the first non-designee channel even when a designee is listed first."""
    t0 = datetime(2026, 4, 17, 9, tzinfo=NY)
    step = _next([], now=t0, channels=[VENDOR, FHIR])
    assert step is not None and (step.channel, step.reason) == (FHIR, AttemptReason.INITIAL)
    only_designee = _next([], now=t0, channels=[VENDOR])
    assert only_designee is not None and only_designee.channel == VENDOR


def test_no_channels_means_no_attempt() -> None:
    """Without any channel the policy plans nothing."""
    assert _next([], now=datetime(2026, 4, 17, 9, tzinfo=NY), channels=[]) is None


def test_no_fourth_attempt() -> None:
    """After min_attempts attempts the policy returns None."""
    t0 = datetime(2026, 4, 17, 9, tzinfo=NY)
    history = [_fact(n, t0 + timedelta(hours=n), FAX) for n in (1, 2, 3)]
    assert _next(history, now=t0 + timedelta(hours=4)) is None


@pytest.mark.parametrize(
    ("minutes", "expected_offsets"),
    [
        (120, [0, 30, 60]),  # nominal spacing 30 min (floor), fits with the reserve
        (70, [0, 30, 60]),  # compressed to min_spacing; the 3rd misses the reserve but not cutoff
        (60, [0, 30]),  # a 3rd attempt at min_spacing would be at the cutoff: not made
        (20, [0]),
    ],
)
def test_tiny_window_compresses_to_min_spacing_but_never_below(
    minutes: int, expected_offsets: list[int]
) -> None:
    """Short windows: spacing shrinks to min_spacing (30 min) and no further; misfits are None."""
    opened = datetime(2026, 4, 17, 9, tzinfo=NY)
    cutoff = opened + timedelta(minutes=minutes)
    plan = planned_schedule(
        opened_at=opened,
        cutoff=cutoff,
        review_type=EXP,
        channels=CHANNELS,
        jurisdiction=MA,
    )
    assert [(a.at - opened) // timedelta(minutes=1) for a in plan] == expected_offsets


def test_next_time_counts_from_sent_at_and_is_clamped_to_now() -> None:
    """Follow-up = previous sent_at + spacing; a past planned time comes back as now."""
    opened = datetime(2026, 4, 17, 9, tzinfo=NY)
    late_send = AttemptFact(
        number=1,
        planned_at=opened,
        sent_at=opened + timedelta(hours=1),
        channel=FAX,
        outcome=AttemptOutcome.SENT,
    )
    step = _next([late_send], now=opened + timedelta(hours=1))
    assert step is not None
    assert step.at == datetime(2026, 4, 17, 15, 15, tzinfo=NY)  # 10:00 + 5 h 15 min
    overdue = datetime(2026, 4, 17, 18, tzinfo=NY)
    step = _next([late_send], now=overdue)
    assert step is not None and step.at == overdue


def test_nothing_after_the_cutoff() -> None:
    """When now is at or past the cutoff no attempt is planned."""
    t0 = datetime(2026, 4, 17, 9, tzinfo=NY)
    assert _next([], now=datetime(2026, 4, 18, 6, tzinfo=NY)) is None
    assert _next([_fact(1, t0, FAX)], now=datetime(2026, 4, 18, 7, tzinfo=NY)) is None


def test_naive_instants_are_rejected() -> None:
    """A naive now/opened_at/cutoff raises ValueError."""
    with pytest.raises(ValueError, match="timezone-aware"):
        _next([], now=datetime(2026, 4, 17, 9))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"min_attempts": 0},
        {"spacing_fraction": 1.0},
        {"reply_reserve_fraction": -0.1},
        {"min_spacing": timedelta(0)},
    ],
    ids=str,
)
def test_settings_are_validated(kwargs: dict[str, object]) -> None:
    """Nonsensical settings are refused at construction."""
    with pytest.raises(ValueError):
        OutreachSettings(**kwargs)  # type: ignore[arg-type]


@settings(max_examples=200, deadline=None, database=None)
@given(
    opened=st.datetimes(
        min_value=datetime(2026, 1, 1), max_value=datetime(2027, 12, 31), timezones=st.just(UTC)
    ),
    window_minutes=st.integers(min_value=91, max_value=14 * 24 * 60),
    review_type=st.sampled_from(list(ReviewType)),
)
def test_schedule_property(opened: datetime, window_minutes: int, review_type: ReviewType) -> None:
    """Any window over 90 min: 3 attempts, before cutoff, increasing by >= min_spacing;
    attempt 1 at once, or (standard) at the window's next business opening."""
    cutoff = opened + timedelta(minutes=window_minutes)
    plan = planned_schedule(
        opened_at=opened,
        cutoff=cutoff,
        review_type=review_type,
        channels=CHANNELS,
        jurisdiction=MA,
    )
    assert len(plan) == 3
    assert plan[0].at == opened or (
        review_type is STD and MA.calendar.within_business_hours(plan[0].at)
    )
    assert all(a.at < cutoff for a in plan)
    assert all(b.at - a.at >= DEFAULTS.min_spacing for a, b in itertools.pairwise(plan))
