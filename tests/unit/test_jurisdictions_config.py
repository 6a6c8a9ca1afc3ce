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
