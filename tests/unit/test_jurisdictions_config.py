"""Loading config/jurisdictions.toml: validation errors name the key; new entries are data."""

from __future__ import annotations

from datetime import datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from config.jurisdictions import DEFAULT_PATH, JurisdictionConfigError, load_jurisdictions
from worker.domain.deadlines import due_at, timeline
from worker.domain.jurisdiction import DeadlineRule, DeadlineUnit, Margins
from worker.domain.types import ReviewType

GOOD = """
[ZZ]
name = "Test state"
citation = "Test Code 1"
timezone = "America/Denver"
close_of_business = "16:30"
business_hours = ["09:00", "16:30"]
extra_closures = ["2026-04-22"]

[ZZ.holidays]
country = "US"
subdiv = "MA"
observed = "sunday_to_monday"
exclude = ["Patriots' Day"]

[ZZ.standard]
unit = "business_days"
amount = 2
assembly_hours = 5
delivery_hours = 1.5

[ZZ.expedited]
unit = "hours"
amount = 72
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "jurisdictions.toml"
    path.write_text(text)
    return path


def _mutate(old: str, new: str) -> str:
    assert old in GOOD, old
    return GOOD.replace(old, new, 1)


def test_shipped_file_loads_every_jurisdiction() -> None:
    """The shipped data file loads MA, NAIC, US-FED, NC and TX with both review types."""
    table = load_jurisdictions()
    assert sorted(table) == ["MA", "NAIC", "NC", "TX", "US-FED"]
    for j in table.values():
        assert set(j.rules) == set(ReviewType)
    assert table["MA"].rules[ReviewType.STANDARD] == DeadlineRule(DeadlineUnit.BUSINESS_DAYS, 3)
    assert table["MA"].margins[ReviewType.EXPEDITED] == Margins(
        timedelta(hours=3), timedelta(hours=1)
    )
    assert DEFAULT_PATH.name == "jurisdictions.toml"


def test_new_jurisdiction_is_a_data_change(tmp_path: Path) -> None:
    """Appending a table to the shipped data gives a working jurisdiction with its own rules."""
    path = _write(tmp_path, DEFAULT_PATH.read_text() + GOOD)
    zz = load_jurisdictions(path)["ZZ"]
    denver = ZoneInfo("America/Denver")
    assert zz.tz == denver
    assert zz.close_of_business == time(16, 30)
    assert zz.business_hours == (time(9), time(16, 30))
    assert zz.quiet_hours == (time(22), time(7))  # the default: the dead of night
    assert zz.margins[ReviewType.STANDARD] == Margins(timedelta(hours=5), timedelta(hours=1.5))
    # Patriots' Day excluded (a business day), Wed 04-22 closed: Mon 04-20, Tue 04-21.
    received = datetime(2026, 4, 17, 9, tzinfo=denver)
    assert due_at(zz, "standard", received) == datetime(2026, 4, 21, 16, 30, tzinfo=denver)
    t = timeline(zz, "expedited", received)
    assert t.due_at == datetime(2026, 4, 20, 9, tzinfo=denver)
    # Omitted margins take the expedited defaults (3 h / 1 h).
    assert t.due_at - t.assemble_at == timedelta(hours=3)


@pytest.mark.parametrize(
    ("old", "new", "key"),
    [
        ('name = "Test state"\n', "", "ZZ.name"),
        ('timezone = "America/Denver"', 'timezone = "Mars/Olympus"', "ZZ.timezone"),
        ('close_of_business = "16:30"', 'close_of_business = "5pm"', "ZZ.close_of_business"),
        ('["09:00", "16:30"]', '["16:30", "09:00"]', "ZZ.business_hours"),
        ('["2026-04-22"]', '["2026-04-22", "2026-13-01"]', "ZZ.extra_closures[1]"),
        ('citation = "Test Code 1"', 'citation = "x"\ntimezon = "UTC"', "ZZ.timezon"),
        ('country = "US"', 'country = "XX"', "ZZ.holidays.country"),
        ('subdiv = "MA"', 'subdiv = "ZZ"', "ZZ.holidays.subdiv"),
        ('observed = "sunday_to_monday"', 'observed = "sometimes"', "ZZ.holidays.observed"),
        ('["Patriots\' Day"]', '["Patriot\'s Day"]', "ZZ.holidays.exclude"),
        ('unit = "business_days"', 'unit = "weeks"', "ZZ.standard.unit"),
        ("amount = 2", "amount = 0", "ZZ.standard.amount"),
        ("amount = 2", 'amount = "2"', "ZZ.standard.amount"),
        ("amount = 2", "amount = 2\nslack_hours = 1", "ZZ.standard.slack_hours"),
        ("assembly_hours = 5", "assembly_hours = -1", "ZZ.standard.assembly_hours"),
        ("delivery_hours = 1.5", "delivery_hours = 6", "ZZ.standard.delivery_hours"),
        # Below: checks of the pydantic loader beyond the original hand-written validator's.
        ('close_of_business = "16:30"', "close_of_business = 17", "ZZ.close_of_business"),
        ('["09:00", "16:30"]', '["09:00"]', "ZZ.business_hours"),
        (
            'business_hours = ["09:00", "16:30"]',
            'quiet_hours = ["23:00", "23:00"]',
            "ZZ.quiet_hours",
        ),
        ('["2026-04-22"]', '"2026-04-22"', "ZZ.extra_closures"),
        ('country = "US"', 'country = "US"\ncountry_code = "US"', "ZZ.holidays.country_code"),
        ('observed = "sunday_to_monday"\n', "", "ZZ.holidays.observed"),
        ("[ZZ.holidays]", "[ZZ.holiday]", "ZZ.holiday"),
        ('exclude = ["Patriots\' Day"]', 'exclude = "Patriots\' Day"', "ZZ.holidays.exclude"),
        ("amount = 2", "amount = true", "ZZ.standard.amount"),
        ("assembly_hours = 5", 'assembly_hours = "5"', "ZZ.standard.assembly_hours"),
        ("assembly_hours = 5", "assembly_hours = inf", "ZZ.standard.assembly_hours"),
        ("amount = 72", "amount = 72\nassembly_hours = 0.5", "ZZ.expedited.delivery_hours"),
    ],
    ids=lambda v: v if isinstance(v, str) and v.startswith("ZZ") else "",
)
def test_malformed_data_names_the_key(tmp_path: Path, old: str, new: str, key: str) -> None:
    """Each kind of malformed entry raises JurisdictionConfigError naming file and key."""
    path = _write(tmp_path, _mutate(old, new))
    with pytest.raises(JurisdictionConfigError) as info:
        load_jurisdictions(path)
    message = str(info.value)
    assert f": {key}: " in message
    assert str(path) in message


def test_invalid_toml_is_reported_with_the_file(tmp_path: Path) -> None:
    """A file that is not TOML raises JurisdictionConfigError naming the file."""
    path = _write(tmp_path, "[ZZ\nname = 1")
    with pytest.raises(JurisdictionConfigError, match="not valid TOML"):
        load_jurisdictions(path)


def test_jurisdiction_without_review_types_is_rejected(tmp_path: Path) -> None:
    """A jurisdiction with no [X.standard]/[X.expedited] table is an error naming it."""
    path = _write(tmp_path, GOOD[: GOOD.index("[ZZ.standard]")])
    with pytest.raises(JurisdictionConfigError, match=r": ZZ: no review types"):
        load_jurisdictions(path)


def test_missing_holidays_table_names_the_fix(tmp_path: Path) -> None:
    """A jurisdiction without [X.holidays] is told the table is required, with an example."""
    start, end = GOOD.index("[ZZ.holidays]"), GOOD.index("[ZZ.standard]")
    path = _write(tmp_path, GOOD[:start] + GOOD[end:])
    with pytest.raises(JurisdictionConfigError) as info:
        load_jurisdictions(path)
    assert str(info.value) == (
        f'{path}: ZZ.holidays: required, a table, e.g. [X.holidays] country = "US"'
    )


@pytest.mark.parametrize(
    ("old", "new", "problem"),
    [
        (
            'country = "US"',
            'country = "US"\ncountry_code = "US"',
            "ZZ.holidays.country_code: unknown key; allowed: country, exclude, observed, subdiv",
        ),
        (
            "amount = 2",
            "amount = 2\nslack_hours = 1",
            "ZZ.standard.slack_hours: unknown key; "
            "allowed: amount, assembly_hours, delivery_hours, unit",
        ),
        (
            'citation = "Test Code 1"',
            'citation = "x"\ntimezon = "UTC"',
            "ZZ.timezon: unknown key; allowed: business_hours, citation, close_of_business, "
            "expedited, extra_closures, holidays, name, quiet_hours, standard, timezone",
        ),
    ],
    ids=["holidays", "review-type", "jurisdiction"],
)
def test_unknown_key_lists_the_allowed_keys(
    tmp_path: Path, old: str, new: str, problem: str
) -> None:
    """An unknown key (a typo) is rejected at every level, listing the keys that are allowed."""
    path = _write(tmp_path, _mutate(old, new))
    with pytest.raises(JurisdictionConfigError) as info:
        load_jurisdictions(path)
    assert str(info.value) == f"{path}: {problem}"


@pytest.mark.parametrize(
    ("old", "new", "problem"),
    [
        (
            'unit = "business_days"',
            'unit = "weeks"',
            "ZZ.standard.unit: Input should be 'business_days', 'calendar_days' or 'hours'; "
            "got 'weeks'",
        ),
        (
            "amount = 2",
            'amount = "2"',
            "ZZ.standard.amount: Input should be a valid integer; got '2'",
        ),
        (
            'timezone = "America/Denver"',
            'timezone = "Mars/Olympus"',
            "ZZ.timezone: unknown IANA zone 'Mars/Olympus'; e.g. America/New_York",
        ),
        (
            'observed = "sunday_to_monday"\n',
            "",
            "ZZ.holidays.observed: required, one of sunday_to_monday, federal, none, library",
        ),
        (
            "[ZZ.expedited]",
            "[ZZ.expedited]\nassembly_hours = 0.5",
            "ZZ.expedited.delivery_hours: 1.0 h must not exceed assembly_hours (0.5 h): "
            "the packet is assembled before it is delivered",
        ),
    ],
    ids=["enum", "type", "zone", "missing", "default-margin"],
)
def test_bad_value_says_what_is_accepted(tmp_path: Path, old: str, new: str, problem: str) -> None:
    """A bad or missing value's message says what is accepted and, if given, what was found."""
    path = _write(tmp_path, _mutate(old, new))
    with pytest.raises(JurisdictionConfigError) as info:
        load_jurisdictions(path)
    assert str(info.value) == f"{path}: {problem}"


def test_every_problem_in_a_jurisdiction_is_reported(tmp_path: Path) -> None:
    """All problems of the first bad jurisdiction come at once, one line each naming the file."""
    text = _mutate('timezone = "America/Denver"', 'timezone = "Mars/Olympus"')
    text = text.replace("amount = 2", "amount = 0", 1)
    path = _write(tmp_path, text)
    with pytest.raises(JurisdictionConfigError) as info:
        load_jurisdictions(path)
    lines = str(info.value).splitlines()
    assert [line.split(": ")[1] for line in lines] == ["ZZ.timezone", "ZZ.standard.amount"]
    assert all(line.startswith(f"{path}: ") for line in lines)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("ZZ = 5\n", "ZZ: must be a table ([CODE] section)"),
        ("", "(file): no jurisdictions defined"),
        (
            GOOD.replace("[ZZ.holidays]", "standard = 5\n[ZZ.holidays]", 1).replace(
                '[ZZ.standard]\nunit = "business_days"\namount = 2\n'
                "assembly_hours = 5\ndelivery_hours = 1.5\n",
                "",
                1,
            ),
            "ZZ.standard: expected a table, got 5",
        ),
    ],
    ids=["jurisdiction", "empty", "review-type"],
)
def test_tables_that_are_not_tables(tmp_path: Path, text: str, problem: str) -> None:
    """A jurisdiction or review type given as a plain value, or an empty file, is rejected."""
    path = _write(tmp_path, text)
    with pytest.raises(JurisdictionConfigError) as info:
        load_jurisdictions(path)
    assert str(info.value) == f"{path}: {problem}"
