"""Reasonable timing in business time: properties over a year of Massachusetts receipts, and the
business-openings arithmetic under them."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from config.jurisdictions import get_jurisdiction
from worker.domain.deadlines import timeline
from worker.domain.openings import business_add, business_before, openings, read_index
from worker.domain.outreach import (
    DEFAULT_SETTINGS,
    business_window,
    business_windows,
    planned_schedule,
)
from worker.domain.types import Channel, ChannelKind, ReviewType

NY = ZoneInfo("America/New_York")
MA = get_jurisdiction("MA")
FAX = Channel(ChannelKind.FAX, "+16175550100")
STD, EXP = ReviewType.STANDARD, ReviewType.EXPEDITED

#: Receipt instants across 2026 (every MA holiday of the year, both DST changes), to the minute.
RECEIPTS = st.integers(min_value=0, max_value=365 * 24 * 60 - 1).map(
    lambda minutes: datetime(2026, 1, 1, tzinfo=UTC) + timedelta(minutes=minutes)
)
#: Provider hours: the jurisdiction's, or the provider's own (opening 06:00-11:00, 2-9 h long).
HOURS = st.one_of(
    st.none(),
    st.tuples(st.integers(6, 11), st.integers(2, 9)).map(
        lambda oh: (time(oh[0]), time(min(oh[0] + oh[1], 23)))
    ),
)


@settings(max_examples=400, deadline=None, database=None)
@given(received=RECEIPTS, hours=HOURS)
def test_standard_attempts_each_in_an_opening_of_their_own(
    received: datetime, hours: tuple[time, time] | None
) -> None:
    """Standard MA, any receipt in 2026: when the window allows three business windows, the
    three attempts are each inside the provider's business hours, in three distinct openings,
    at least min_spacing apart, and the last leaves the business-time reply reserve."""
    tl = timeline(MA, STD, received)
    w = business_window(opened_at=received, cutoff=tl.assemble_at, jurisdiction=MA, hours=hours)
    plan = planned_schedule(
        opened_at=received,
        cutoff=tl.assemble_at,
        review_type=STD,
        channels=[FAX],
        jurisdiction=MA,
        hours=hours,
    )
    assert len(plan) == 3
    assert all(received <= a.at < tl.assemble_at for a in plan)
    assert all(b.at - a.at >= DEFAULT_SETTINGS.min_spacing for a, b in itertools.pairwise(plan))
    if w.count < 3:
        return
    assert all(MA.calendar.within_business_hours(a.at, hours) for a in plan)
    read_in = [read_index(w.openings, a.at) for a in plan]
    assert read_in == sorted(set(read_in)), "two attempts are read in the same opening"
    assert plan[-1].at <= w.reserve_at
    total = sum((o.length for o in w.openings), timedelta(0))
    left = sum(
        (o.end - max(o.start, plan[-1].at) for o in w.openings if o.end > plan[-1].at),
        timedelta(0),
    )
    assert left >= DEFAULT_SETTINGS.business_reply_reserve_fraction * total


@settings(max_examples=300, deadline=None, database=None)
@given(received=RECEIPTS)
def test_ma_standard_windows_always_allow_three_business_windows(received: datetime) -> None:
    """Three business days plus the assembly cutoff's morning always hold three business
    windows for a provider on the jurisdiction's hours: in MA no standard case is short."""
    tl = timeline(MA, STD, received)
    assert business_windows(opened_at=received, cutoff=tl.assemble_at, jurisdiction=MA) >= 3


@settings(max_examples=300, deadline=None, database=None)
@given(received=RECEIPTS)
def test_expedited_attempts_keep_elapsed_spacing_and_reserve(received: datetime) -> None:
    """Expedited MA, any receipt in 2026: three attempts, min_spacing apart, the last leaving
    reply_reserve_fraction of the elapsed window; attempts 2 and 3 fall in the quiet hours
    only when neither end of them fits."""
    tl = timeline(MA, EXP, received)
    plan = planned_schedule(
        opened_at=received, cutoff=tl.assemble_at, review_type=EXP, channels=[FAX], jurisdiction=MA
    )
    window = tl.assemble_at - received
    assert len(plan) == 3
    assert plan[0].at == received
    assert all(b.at - a.at >= DEFAULT_SETTINGS.min_spacing for a, b in itertools.pairwise(plan))
    assert plan[-1].at <= tl.assemble_at - DEFAULT_SETTINGS.reply_reserve_fraction * window


def test_a_short_window_says_how_many_business_windows_it_allowed() -> None:
    """Received Fri 16:00 with a cutoff Mon 11:00 (a custom rule): Friday's last hour and Monday
    morning are the only openings; the attempts take them, earliest first, none at night."""
    received = datetime(2026, 5, 1, 16, tzinfo=NY)
    cutoff = datetime(2026, 5, 4, 11, tzinfo=NY)
    assert business_windows(opened_at=received, cutoff=cutoff, jurisdiction=MA) == 2
    plan = planned_schedule(
        opened_at=received, cutoff=cutoff, review_type=STD, channels=[FAX], jurisdiction=MA
    )
    assert [a.at.astimezone(NY) for a in plan] == [
        datetime(2026, 5, 1, 16, tzinfo=NY),
        datetime(2026, 5, 4, 8, tzinfo=NY),
        datetime(2026, 5, 4, 8, 30, tzinfo=NY),
    ]


def test_openings_follow_the_calendar_and_clip_to_the_window() -> None:
    """Openings skip weekends and Patriots' Day, clip to the window and drop stubs shorter than
    the minimum."""
    start = datetime(2026, 4, 17, 16, 30, tzinfo=NY)  # Friday, 30 min before closing
    end = datetime(2026, 4, 22, 12, tzinfo=NY)
    spans = openings(start, end, MA.calendar, minimum=timedelta(hours=1))
    assert [(o.start.astimezone(NY), o.end.astimezone(NY)) for o in spans] == [
        (datetime(2026, 4, 21, 8, tzinfo=NY), datetime(2026, 4, 21, 17, tzinfo=NY)),
        (datetime(2026, 4, 22, 8, tzinfo=NY), datetime(2026, 4, 22, 12, tzinfo=NY)),
    ]
    assert len(openings(start, end, MA.calendar)) == 3  # no minimum: Friday's stub counts


def test_business_time_arithmetic() -> None:
    """business_add skips closed time; business_before finds where a reserve starts."""
    spans = openings(
        datetime(2026, 4, 21, 8, tzinfo=NY), datetime(2026, 4, 23, 13, tzinfo=NY), MA.calendar
    )
    tue_16 = datetime(2026, 4, 21, 16, tzinfo=NY)
    assert business_add(spans, tue_16, timedelta(hours=2)) == datetime(2026, 4, 22, 9, tzinfo=NY)
    assert business_add(spans, tue_16, timedelta(hours=30)) is None
    assert business_before(spans, timedelta(hours=6)) == datetime(2026, 4, 22, 16, tzinfo=NY)
    assert business_before(spans, timedelta(hours=24)) is None
    assert read_index(spans, datetime(2026, 4, 21, 20, tzinfo=NY)) == 1


def test_overdue_standard_follow_up_waits_for_the_next_opening() -> None:
    """A failure learned after closing (escalation planned 16:55, known 17:20): the escalation
    goes at the next opening, not at once in the evening; expedited would go at once."""
    from worker.domain.outreach import next_attempt
    from worker.domain.types import AttemptFact, AttemptOutcome

    opened = datetime(2026, 4, 21, 8, tzinfo=NY)
    cutoff = timeline(MA, STD, opened).assemble_at
    sent = datetime(2026, 4, 21, 16, 25, tzinfo=NY)
    failed = AttemptFact(1, sent, sent, FAX, AttemptOutcome.FAILED)
    now = datetime(2026, 4, 21, 17, 20, tzinfo=NY)
    step = next_attempt(
        opened_at=opened,
        cutoff=cutoff,
        review_type=STD,
        channels=[FAX],
        attempts=[failed],
        now=now,
        jurisdiction=MA,
    )
    assert step is not None and step.at == datetime(2026, 4, 22, 8, tzinfo=NY)


def test_the_issue_s_sunday_attempt_moves_to_a_business_morning() -> None:
    """The demo's shape (standard, received Thu 2026-04-16 13:30): the old rule's third attempt
    went out on Sunday 03:52, read with Friday's on Tuesday; now Thu, Fri and Tue openings."""
    received = datetime(2026, 4, 16, 13, 30, tzinfo=NY)
    cutoff = timeline(MA, STD, received).assemble_at
    plan = planned_schedule(
        opened_at=received, cutoff=cutoff, review_type=STD, channels=[FAX], jurisdiction=MA
    )
    assert [a.at.astimezone(NY) for a in plan] == [
        received,
        datetime(2026, 4, 17, 11, 7, 30, tzinfo=NY),
        datetime(2026, 4, 21, 8, 45, tzinfo=NY),
    ]
