"""Deadline arithmetic: business, calendar and hour rules per shipped jurisdiction."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from config.jurisdictions import UnknownJurisdiction, get_jurisdiction, load_jurisdictions
from worker.domain.deadlines import DeadlineError, due_at, timeline
from worker.domain.jurisdiction import DeadlineUnit, Jurisdiction
from worker.domain.types import ReviewType

NY = ZoneInfo("America/New_York")
CHI = ZoneInfo("America/Chicago")
STD, EXP = ReviewType.STANDARD, ReviewType.EXPEDITED

MINIMAL_TOML = """
[ZZ]
name = "Test state"
citation = "Test Code 1"
timezone = "America/New_York"
extra_closures = {closures}

[ZZ.holidays]
country = "US"
subdiv = "MA"
observed = "sunday_to_monday"

[ZZ.standard]
unit = "business_days"
amount = 3

[ZZ.expedited]
unit = "hours"
amount = {hours}
assembly_hours = 3
delivery_hours = 1
"""


def _load(tmp_path: Path, *, closures: str = "[]", hours: int = 24) -> Jurisdiction:
    path = tmp_path / "j.toml"
    path.write_text(MINIMAL_TOML.format(closures=closures, hours=hours))
    return load_jurisdictions(path)["ZZ"]


@pytest.mark.parametrize(
    ("code", "review_type", "received", "expected"),
    [
        # MA: Mon 2026-04-20 is Patriots' Day, so business days 1-3 are Tue-Thu.
        ("MA", STD, datetime(2026, 4, 17, 9, tzinfo=NY), datetime(2026, 4, 23, 17, tzinfo=NY)),
        ("MA", EXP, datetime(2026, 4, 17, 9, tzinfo=NY), datetime(2026, 4, 18, 9, tzinfo=NY)),
        # MA keeps Fri 2026-07-03 as a business day (Independence Day is on Saturday).
        ("MA", STD, datetime(2026, 7, 1, 9, tzinfo=NY), datetime(2026, 7, 6, 17, tzinfo=NY)),
        # NAIC / federal: 5 business days, no Patriots' Day.
        ("NAIC", STD, datetime(2026, 4, 17, 9, tzinfo=NY), datetime(2026, 4, 24, 17, tzinfo=NY)),
        ("NAIC", EXP, datetime(2026, 4, 17, 9, tzinfo=NY), datetime(2026, 4, 18, 9, tzinfo=NY)),
        ("US-FED", STD, datetime(2026, 4, 17, 9, tzinfo=NY), datetime(2026, 4, 24, 17, tzinfo=NY)),
        ("US-FED", EXP, datetime(2026, 4, 17, 9, tzinfo=NY), datetime(2026, 4, 18, 9, tzinfo=NY)),
        # Federal rule: Sat 2026-07-04 is observed Fri 07-03, which is skipped.
        ("US-FED", STD, datetime(2026, 7, 1, 9, tzinfo=NY), datetime(2026, 7, 9, 17, tzinfo=NY)),
        # NC: 7 calendar days, no roll-forward off a weekend.
        ("NC", STD, datetime(2026, 4, 17, 9, tzinfo=NY), datetime(2026, 4, 24, 17, tzinfo=NY)),
        ("NC", STD, datetime(2026, 4, 11, 9, tzinfo=NY), datetime(2026, 4, 18, 17, tzinfo=NY)),
        ("NC", EXP, datetime(2026, 4, 17, 9, tzinfo=NY), datetime(2026, 4, 18, 9, tzinfo=NY)),
        # TX: 3 business days, Central time; national holidays on their own dates only.
        ("TX", STD, datetime(2026, 4, 17, 9, tzinfo=CHI), datetime(2026, 4, 22, 17, tzinfo=CHI)),
        ("TX", STD, datetime(2026, 7, 2, 9, tzinfo=CHI), datetime(2026, 7, 7, 17, tzinfo=CHI)),
        ("TX", EXP, datetime(2026, 4, 17, 9, tzinfo=CHI), datetime(2026, 4, 18, 9, tzinfo=CHI)),
    ],
    ids=lambda v: v.isoformat() if isinstance(v, datetime) else str(v),
)
def test_due_time_per_jurisdiction(
    code: str, review_type: ReviewType, received: datetime, expected: datetime
) -> None:
    """Each shipped jurisdiction's rule gives the expected local due instant."""
    j = get_jurisdiction(code)
    got = due_at(j, review_type, received)
    assert got == expected
    assert got.tzinfo == j.tz


@pytest.mark.parametrize(
    ("received", "expected"),
    [
        # Spring forward Sun 2026-03-08: 24 elapsed hours, so 13:00 EDT not 12:00.
        (datetime(2026, 3, 7, 12, tzinfo=NY), datetime(2026, 3, 8, 13, tzinfo=NY)),
        # Fall back Sun 2026-11-01: 24 elapsed hours, so 11:00 EST not 12:00.
        (datetime(2026, 10, 31, 12, tzinfo=NY), datetime(2026, 11, 1, 11, tzinfo=NY)),
        # The repeated hour 01:30 on 2026-11-01, once as EDT, once as EST.
        (datetime(2026, 11, 1, 5, 30, tzinfo=UTC), datetime(2026, 11, 2, 5, 30, tzinfo=UTC)),
        (datetime(2026, 11, 1, 6, 30, tzinfo=UTC), datetime(2026, 11, 2, 6, 30, tzinfo=UTC)),
    ],
    ids=str,
)
def test_hour_deadline_is_exact_elapsed_time_across_dst(
    received: datetime, expected: datetime
) -> None:
    """An hour deadline is N elapsed hours whatever the DST change in between."""
    got = due_at(get_jurisdiction("MA"), EXP, received)
    assert got == expected
    assert got.astimezone(UTC) - received.astimezone(UTC) == timedelta(hours=24)


@pytest.mark.parametrize(
    ("received", "expected_utc"),
    [
        # Across spring forward: due 17:00 EDT = 21:00Z.
        (datetime(2026, 3, 6, 10, tzinfo=NY), datetime(2026, 3, 11, 21, tzinfo=UTC)),
        # Across fall back: due 17:00 EST = 22:00Z.
        (datetime(2026, 10, 30, 10, tzinfo=NY), datetime(2026, 11, 4, 22, tzinfo=UTC)),
        # Received on the fall-back day itself, in the repeated hour.
        (datetime(2026, 11, 1, 6, 30, tzinfo=UTC), datetime(2026, 11, 4, 22, tzinfo=UTC)),
    ],
    ids=str,
)
def test_business_day_deadline_is_local_close_of_business_across_dst(
    received: datetime, expected_utc: datetime
) -> None:
    """A business-day deadline is 17:00 local wall time on either side of a DST change."""
    got = due_at(get_jurisdiction("MA"), STD, received)
    assert got == expected_utc
    assert (got.hour, got.minute) == (17, 0)


@pytest.mark.parametrize(
    ("received", "expected"),
    [
        # 13:00Z is 09:00 EDT Friday.
        (datetime.fromisoformat("2026-04-17T13:00:00Z"), datetime(2026, 4, 23, 17, tzinfo=NY)),
        # 02:30Z Saturday is still Friday 22:30 in Boston: day 0 is Friday.
        (datetime.fromisoformat("2026-04-18T02:30:00Z"), datetime(2026, 4, 23, 17, tzinfo=NY)),
        # An offset other than the jurisdiction's: 01:00+02:00 Tue is 19:00 EDT Monday.
        (
            datetime.fromisoformat("2026-04-21T01:00:00+02:00"),
            datetime(2026, 4, 23, 17, tzinfo=NY),
        ),
    ],
    ids=str,
)
def test_inputs_in_other_offsets_are_converted_before_taking_the_day(
    received: datetime, expected: datetime
) -> None:
    """The local calendar day of receipt counts, not the UTC (or sender's) day."""
    assert due_at(get_jurisdiction("MA"), STD, received) == expected


@pytest.mark.parametrize(
    ("received", "expected"),
    [
        (datetime(2026, 4, 20, 10, tzinfo=NY), datetime(2026, 4, 23, 17, tzinfo=NY)),  # holiday
        (datetime(2026, 4, 18, 10, tzinfo=NY), datetime(2026, 4, 23, 17, tzinfo=NY)),  # Sat
        (datetime(2026, 4, 19, 23, 59, tzinfo=NY), datetime(2026, 4, 23, 17, tzinfo=NY)),  # Sun
        (datetime(2026, 4, 17, 23, tzinfo=NY), datetime(2026, 4, 23, 17, tzinfo=NY)),  # late Fri
        (datetime(2026, 4, 21, 18, tzinfo=NY), datetime(2026, 4, 24, 17, tzinfo=NY)),  # Tue 18:00
        (datetime(2026, 4, 21, 0, 0, tzinfo=NY), datetime(2026, 4, 24, 17, tzinfo=NY)),  # Tue 00:00
    ],
    ids=str,
)
def test_day_of_receipt_is_day_zero_whatever_the_hour_or_day(
    received: datetime, expected: datetime
) -> None:
    """Receipt on a holiday, weekend or after hours: that local day is still day 0."""
    assert due_at(get_jurisdiction("MA"), STD, received) == expected


def test_timeline_margins_for_ma() -> None:
    """MA standard: assemble 4 h and deliver 2 h before due; expedited 3 h and 1 h."""
    ma = get_jurisdiction("MA")
    received = datetime(2026, 4, 17, 9, tzinfo=NY)
    std = timeline(ma, "standard", received)
    assert (std.assemble_at, std.deliver_by) == (
        datetime(2026, 4, 23, 13, tzinfo=NY),
        datetime(2026, 4, 23, 15, tzinfo=NY),
    )
    exp = timeline(ma, "expedited", received)
    assert (exp.assemble_at, exp.deliver_by, exp.due_at) == (
        datetime(2026, 4, 18, 6, tzinfo=NY),
        datetime(2026, 4, 18, 8, tzinfo=NY),
        datetime(2026, 4, 18, 9, tzinfo=NY),
    )


def test_margins_larger_than_the_window_are_scaled_to_half_of_it(tmp_path: Path) -> None:
    """A 2 h window with 3 h/1 h margins: assemble after 1 h, deliver 20 min before due."""
    j = _load(tmp_path, hours=2)
    received = datetime(2026, 4, 17, 9, tzinfo=NY)
    t = timeline(j, EXP, received)
    assert t.due_at == received + timedelta(hours=2)
    assert t.assemble_at == received + timedelta(hours=1)
    assert t.deliver_by == t.due_at - timedelta(minutes=20)
    assert t.received_at < t.assemble_at <= t.deliver_by <= t.due_at


def test_extra_closures_are_not_business_days(tmp_path: Path) -> None:
    """A declared closure (e.g. a storm day) pushes a business-day deadline out by one day."""
    received = datetime(2026, 4, 17, 9, tzinfo=NY)
    open_j = _load(tmp_path)
    closed_j = _load(tmp_path, closures='["2026-04-22"]')
    assert due_at(open_j, STD, received) == datetime(2026, 4, 23, 17, tzinfo=NY)
    assert due_at(closed_j, STD, received) == datetime(2026, 4, 24, 17, tzinfo=NY)
    assert closed_j.calendar.holidays_in(2026)[date(2026, 4, 22)] == "Extra closure"


def test_naive_timestamp_is_rejected() -> None:
    """A naive received_at raises DeadlineError saying a zone is needed."""
    with pytest.raises(DeadlineError, match="timezone-aware"):
        due_at(get_jurisdiction("MA"), STD, datetime(2026, 4, 17, 9))


def test_unknown_review_type_names_the_valid_ones() -> None:
    """An unknown review type raises DeadlineError listing standard and expedited."""
    with pytest.raises(DeadlineError, match="standard, expedited"):
        timeline(get_jurisdiction("MA"), "urgent", datetime(2026, 4, 17, 9, tzinfo=NY))


def test_review_type_without_a_rule_names_the_configured_ones(tmp_path: Path) -> None:
    """A jurisdiction that has no expedited rule says which review types it does have."""
    path = tmp_path / "j.toml"
    text = MINIMAL_TOML.format(closures="[]", hours=24)
    path.write_text(text[: text.index("[ZZ.expedited]")])
    j = load_jurisdictions(path)["ZZ"]
    with pytest.raises(DeadlineError, match=r"no rule for expedited.*it has: standard"):
        due_at(j, EXP, datetime(2026, 4, 17, 9, tzinfo=NY))


def test_unknown_jurisdiction_lists_known_codes() -> None:
    """get_jurisdiction on an unknown code raises UnknownJurisdiction listing the codes."""
    with pytest.raises(UnknownJurisdiction, match="MA, NAIC, NC, TX, US-FED"):
        get_jurisdiction("ZZ")


BUSINESS_DAY_CODES = [
    code
    for code in ("MA", "NAIC", "US-FED", "TX", "NC")
    if get_jurisdiction(code).rules[STD].unit is DeadlineUnit.BUSINESS_DAYS
]
instants = st.datetimes(
    min_value=datetime(2026, 1, 1), max_value=datetime(2028, 12, 31), timezones=st.just(UTC)
)


@settings(max_examples=300, deadline=None, database=None)
@given(code=st.sampled_from(BUSINESS_DAY_CODES), a=instants, b=instants)
def test_business_day_deadlines_property(code: str, a: datetime, b: datetime) -> None:
    """Business-day deadlines fall on business days, after receipt, and are monotone."""
    j = get_jurisdiction(code)
    early, late = sorted((a, b))
    due_early, due_late = due_at(j, STD, early), due_at(j, STD, late)
    assert j.calendar.is_business_day(due_early.date())
    assert due_early.time() == j.close_of_business
    assert due_early > early
    assert due_early <= due_late


@settings(max_examples=200, deadline=None, database=None)
@given(
    code=st.sampled_from(["MA", "NAIC", "US-FED", "TX", "NC"]),
    review_type=st.sampled_from(list(ReviewType)),
    received=instants,
)
def test_timeline_order_property(code: str, review_type: ReviewType, received: datetime) -> None:
    """For every jurisdiction and type: received < assemble_at <= deliver_by <= due_at."""
    t = timeline(get_jurisdiction(code), review_type, received)
    assert t.received_at == received
    assert t.received_at < t.assemble_at <= t.deliver_by <= t.due_at


def test_margin_scaling_uses_elapsed_time_across_dst(tmp_path: Path) -> None:
    """A 2 h window spanning spring-forward is 2 elapsed hours (not 3 wall hours) for scaling."""
    j = _load(tmp_path, hours=2)
    received = datetime(2026, 3, 8, 6, 30, tzinfo=UTC)  # 01:30 EST
    t = timeline(j, EXP, received)
    assert t.due_at == datetime(2026, 3, 8, 4, 30, tzinfo=NY)  # 08:30Z
    assert t.assemble_at == datetime(2026, 3, 8, 7, 30, tzinfo=UTC)
