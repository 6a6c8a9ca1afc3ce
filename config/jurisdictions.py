"""Jurisdictions: deadline rules, packet margins and business calendars, loaded from TOML.

The data lives in ``config/jurisdictions.toml`` (its header documents every key); this module
turns it into typed, validated values. Nothing is read at import: :func:`load_jurisdictions`
reads a file when called and :func:`get_jurisdiction` caches the default table on first use.

Units: ``DeadlineRule.amount`` counts business days, calendar days or elapsed hours as its
``unit`` says; :class:`Margins` are elapsed time (``timedelta``). Times of day (close of
business, business hours) are local wall-clock times in the jurisdiction's zone.

Holidays come from the pinned ``holidays`` package (0.109) with observance applied here
(``observed`` key), so that a library change in observance rules cannot silently move a
deadline; tests/unit/test_calendar_ma.py pins the Massachusetts table.
"""

from __future__ import annotations

import functools
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from enum import StrEnum
from pathlib import Path
from types import MappingProxyType
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import holidays as holidays_lib

from worker.domain.types import ReviewType

DEFAULT_PATH = Path(__file__).with_name("jurisdictions.toml")

DEFAULT_CLOSE_OF_BUSINESS = time(17, 0)
DEFAULT_BUSINESS_HOURS = (time(8, 0), time(17, 0))
#: (assembly_hours, delivery_hours) used when a review-type table omits them.
DEFAULT_MARGIN_HOURS: Mapping[ReviewType, tuple[float, float]] = MappingProxyType(
    {ReviewType.STANDARD: (4.0, 2.0), ReviewType.EXPEDITED: (3.0, 1.0)}
)

_SATURDAY, _SUNDAY = 5, 6
_OBSERVED_SUFFIX = " (observed)"
# Years scanned to check that an ``exclude`` name is a real holiday name (catches typos).
_EXCLUDE_CHECK_YEARS = range(2020, 2036)


class UnknownJurisdiction(ValueError):
    """No jurisdiction with that code is configured."""

    def __init__(self, code: str, known: Iterable[str]) -> None:
        self.code = code
        self.known = tuple(sorted(known))
        super().__init__(
            f"unknown jurisdiction {code!r}; known codes: {', '.join(self.known)}. "
            "Add a table for it to config/jurisdictions.toml."
        )


class JurisdictionConfigError(ValueError):
    """The jurisdictions data file is malformed; the message names the file and the key."""


class DeadlineUnit(StrEnum):
    BUSINESS_DAYS = "business_days"
    CALENDAR_DAYS = "calendar_days"
    HOURS = "hours"


class ObservedRule(StrEnum):
    """How a holiday falling on a weekend is observed."""

    SUNDAY_TO_MONDAY = "sunday_to_monday"  # M.G.L. c.4 §7: Saturday holidays do not move
    FEDERAL = "federal"  # 5 U.S.C. 6103(b): Saturday -> Friday, Sunday -> Monday
    NONE = "none"  # the holiday date only
    LIBRARY = "library"  # whatever the `holidays` package does for the country/subdivision


@dataclass(frozen=True)
class DeadlineRule:
    """``amount`` units (business days, calendar days or elapsed hours) after receipt."""

    unit: DeadlineUnit
    amount: int


@dataclass(frozen=True)
class Margins:
    """Elapsed time before the due instant: assemble the packet at ``due - assembly``,
    deliver it no later than ``due - delivery`` (``delivery <= assembly``)."""

    assembly: timedelta
    delivery: timedelta


@dataclass(frozen=True)
class HolidaySource:
    """Where holidays come from: the ``holidays`` package plus our observance rule."""

    country: str
    subdiv: str | None
    observed: ObservedRule
    exclude: frozenset[str] = frozenset()


class BusinessCalendar:
    """Business days (Mon-Fri minus holidays and extra closures) and business hours.

    Dates are local dates of the calendar's zone; instants passed in are converted to that
    zone first (naive instants are rejected).
    """

    def __init__(
        self,
        source: HolidaySource,
        tz: ZoneInfo,
        business_hours: tuple[time, time] = DEFAULT_BUSINESS_HOURS,
        extra_closures: Iterable[date] = (),
    ) -> None:
        if business_hours[0] >= business_hours[1]:
            raise ValueError(f"business hours must open before they close: {business_hours}")
        self.source = source
        self.tz = tz
        self.business_hours = business_hours
        self.extra_closures = frozenset(extra_closures)
        self._by_year: dict[int, dict[date, str]] = {}

    def __repr__(self) -> str:
        return f"BusinessCalendar({self.source!r}, {self.tz.key!r})"

    # -- days -------------------------------------------------------------------------------

    def holidays_in(self, year: int) -> dict[date, str]:
        """Holidays (and their observed days) and extra closures in ``year``, by name.

        Observed days are named ``"<holiday> (observed)"``; closures ``"Extra closure"``.
        Weekends are not listed: :meth:`is_business_day` treats them separately.
        """
        cached = self._by_year.get(year)
        if cached is None:
            cached = self._compute_year(year)
            self._by_year[year] = cached
        return dict(cached)

    def is_business_day(self, d: date) -> bool:
        """True for Monday-Friday dates that are neither a holiday nor an extra closure."""
        if d.weekday() in (_SATURDAY, _SUNDAY):
            return False
        cached = self._by_year.get(d.year)
        if cached is None:
            cached = self._compute_year(d.year)
            self._by_year[d.year] = cached
        return d not in cached

    def add_business_days(self, d: date, n: int) -> date:
        """The ``n``-th business day after ``d`` (``d`` itself never counts; ``n=0`` is ``d``).

        Negative ``n`` counts backwards.
        """
        step = timedelta(days=1 if n >= 0 else -1)
        remaining = abs(n)
        current = d
        while remaining:
            current += step
            if self.is_business_day(current):
                remaining -= 1
        return current

    # -- hours ------------------------------------------------------------------------------

    def within_business_hours(
        self, instant: datetime, hours: tuple[time, time] | None = None
    ) -> bool:
        """True when ``instant`` is on a business day, in ``[open, close)`` local time."""
        opens, closes = hours or self.business_hours
        local = _aware(instant).astimezone(self.tz)
        return self.is_business_day(local.date()) and opens <= local.time() < closes

    def next_business_moment(
        self, instant: datetime, hours: tuple[time, time] | None = None
    ) -> datetime:
        """``instant`` itself when within business hours, else the next opening (local zone)."""
        opens, closes = hours or self.business_hours
        local = _aware(instant).astimezone(self.tz)
        if self.within_business_hours(local, (opens, closes)):
            return local
        day = local.date()
        if not (self.is_business_day(day) and local.time() < opens):
            day = self.add_business_days(day, 1)
        return _local(day, opens, self.tz)

    def latest_business_interval(
        self, instant: datetime, hours: tuple[time, time] | None = None
    ) -> tuple[datetime, datetime] | None:
        """``(open, close)`` of the latest business-hours interval that opened at or before
        ``instant`` (today's, when ``instant`` is inside business hours). ``close`` is exclusive.

        ``None`` only for a calendar without a business day in the ten years before ``instant``.
        """
        opens, closes = hours or self.business_hours
        local = _aware(instant).astimezone(self.tz)
        day = local.date()
        if not (self.is_business_day(day) and local.time() >= opens):
            for _ in range(3660):
                day -= timedelta(days=1)
                if self.is_business_day(day):
                    break
            else:
                return None
        return _local(day, opens, self.tz), _local(day, closes, self.tz)

    # -- internals --------------------------------------------------------------------------

    def _compute_year(self, year: int) -> dict[date, str]:
        src = self.source
        result: dict[date, str] = {}
        if src.observed is ObservedRule.LIBRARY:
            lib = _library_holidays(src.country, src.subdiv, (year,), observed=True)
            for d, names in lib.items():
                kept = [n for n in names if _base_name(n) not in src.exclude]
                if kept:
                    result[d] = "; ".join(kept)
        else:
            # A Saturday Jan 1 is observed (federal rule) on Dec 31 of the year before, a
            # Sunday Dec 31 on Jan 1 after: look at the neighbouring years too.
            years = (year - 1, year, year + 1)
            lib = _library_holidays(src.country, src.subdiv, years, observed=False)
            for d, names in sorted(lib.items()):
                kept = [n for n in names if n not in src.exclude]
                if not kept:
                    continue
                name = "; ".join(kept)
                for day, label in _observances(d, name, src.observed):
                    if day.year == year:
                        result[day] = f"{result[day]}; {label}" if day in result else label
        for d in sorted(self.extra_closures):
            if d.year == year:
                result[d] = f"{result[d]}; Extra closure" if d in result else "Extra closure"
        return result


def _observances(d: date, name: str, rule: ObservedRule) -> list[tuple[date, str]]:
    out = [(d, name)]
    weekday = d.weekday()
    if weekday == _SUNDAY and rule in (ObservedRule.SUNDAY_TO_MONDAY, ObservedRule.FEDERAL):
        out.append((d + timedelta(days=1), name + _OBSERVED_SUFFIX))
    elif weekday == _SATURDAY and rule is ObservedRule.FEDERAL:
        out.append((d - timedelta(days=1), name + _OBSERVED_SUFFIX))
    return out


def _base_name(name: str) -> str:
    return name.removesuffix(_OBSERVED_SUFFIX)


def _library_holidays(
    country: str, subdiv: str | None, years: Iterable[int], *, observed: bool
) -> dict[date, list[str]]:
    table = holidays_lib.country_holidays(
        country, subdiv=subdiv, years=list(years), observed=observed
    )
    return {d: [n.strip() for n in str(names).split(";")] for d, names in table.items()}


def _aware(instant: datetime) -> datetime:
    if instant.tzinfo is None or instant.utcoffset() is None:
        raise ValueError(f"a timezone-aware instant is required, got naive {instant!r}")
    return instant


def _local(day: date, at: time, tz: ZoneInfo) -> datetime:
    """Wall-clock ``at`` on ``day`` in ``tz``; a time in a DST gap is normalised forward."""
    return datetime.combine(day, at, tzinfo=tz).astimezone(ZoneInfo("UTC")).astimezone(tz)


@dataclass(frozen=True)
class Jurisdiction:
    """One jurisdiction's rules. ``rules``/``margins`` are keyed by review type."""

    code: str
    name: str
    citation: str
    tz: ZoneInfo
    close_of_business: time
    business_hours: tuple[time, time]
    rules: Mapping[ReviewType, DeadlineRule]
    margins: Mapping[ReviewType, Margins]
    calendar: BusinessCalendar = field(compare=False)


# -- loading ------------------------------------------------------------------------------------

_TOP_KEYS = {
    "name",
    "citation",
    "timezone",
    "close_of_business",
    "business_hours",
    "extra_closures",
    "holidays",
}
_HOLIDAY_KEYS = {"country", "subdiv", "observed", "exclude"}
_RULE_KEYS = {"unit", "amount", "assembly_hours", "delivery_hours"}


class _Ctx:
    """Builds error messages that name the file and the offending key."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def error(self, key: str, problem: str) -> JurisdictionConfigError:
        return JurisdictionConfigError(f"{self.path}: {key}: {problem}")


def load_jurisdictions(path: Path | None = None) -> dict[str, Jurisdiction]:
    """Read and validate a jurisdictions TOML file (default: the one beside this module).

    Raises :class:`JurisdictionConfigError` naming the file and the bad key.
    """
    path = DEFAULT_PATH if path is None else Path(path)
    ctx = _Ctx(path)
    try:
        with path.open("rb") as fh:
            raw = tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise JurisdictionConfigError(f"{path}: not valid TOML: {exc}") from exc
    if not raw:
        raise ctx.error("(file)", "no jurisdictions defined")
    table: dict[str, Jurisdiction] = {}
    for code, body in raw.items():
        if not isinstance(body, dict):
            raise ctx.error(code, "must be a table ([CODE] section)")
        table[code] = _parse_jurisdiction(ctx, code, body)
    return table


def _parse_jurisdiction(ctx: _Ctx, code: str, body: dict[str, Any]) -> Jurisdiction:
    review_keys = {rt.value for rt in ReviewType}
    unknown = set(body) - _TOP_KEYS - review_keys
    if unknown:
        raise ctx.error(
            f"{code}.{sorted(unknown)[0]}",
            f"unknown key; allowed: {', '.join(sorted(_TOP_KEYS | review_keys))}",
        )
    name = _req_str(ctx, body, code, "name")
    citation = _req_str(ctx, body, code, "citation")
    tz_name = _req_str(ctx, body, code, "timezone")
    try:
        tz = ZoneInfo(tz_name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ctx.error(f"{code}.timezone", f"unknown IANA zone {tz_name!r}") from exc
    cob = _time(ctx, body.get("close_of_business", "17:00"), f"{code}.close_of_business")
    hours = _hours(ctx, body.get("business_hours", ["08:00", "17:00"]), f"{code}.business_hours")
    closures = _dates(ctx, body.get("extra_closures", []), f"{code}.extra_closures")
    source = _holiday_source(ctx, code, body.get("holidays"))

    rules: dict[ReviewType, DeadlineRule] = {}
    margins: dict[ReviewType, Margins] = {}
    for rt in ReviewType:
        if rt.value not in body:
            continue
        rules[rt], margins[rt] = _rule(ctx, f"{code}.{rt.value}", rt, body[rt.value])
    if not rules:
        raise ctx.error(code, f"no review types; add at least one of [{code}.standard]")
    return Jurisdiction(
        code=code,
        name=name,
        citation=citation,
        tz=tz,
        close_of_business=cob,
        business_hours=hours,
        rules=MappingProxyType(rules),
        margins=MappingProxyType(margins),
        calendar=BusinessCalendar(source, tz, hours, closures),
    )


def _req_str(ctx: _Ctx, body: Mapping[str, Any], code: str, key: str) -> str:
    value = body.get(key)
    if not isinstance(value, str) or not value.strip():
        raise ctx.error(f"{code}.{key}", "required, a non-empty string")
    return value


def _time(ctx: _Ctx, value: object, key: str) -> time:
    if isinstance(value, time):
        return value
    if isinstance(value, str):
        try:
            parsed = time.fromisoformat(value)
        except ValueError:
            pass
        else:
            if parsed.tzinfo is None:
                return parsed
    raise ctx.error(key, f'expected a local time like "17:00", got {value!r}')


def _hours(ctx: _Ctx, value: object, key: str) -> tuple[time, time]:
    if not isinstance(value, list) or len(value) != 2:
        raise ctx.error(key, f'expected ["HH:MM", "HH:MM"], got {value!r}')
    opens, closes = _time(ctx, value[0], key), _time(ctx, value[1], key)
    if opens >= closes:
        raise ctx.error(key, f"opening {opens} must be before closing {closes}")
    return opens, closes


def _dates(ctx: _Ctx, value: object, key: str) -> list[date]:
    if not isinstance(value, list):
        raise ctx.error(key, f"expected a list of ISO dates, got {value!r}")
    out: list[date] = []
    for item in value:
        if isinstance(item, date) and not isinstance(item, datetime):
            out.append(item)
            continue
        parsed: date | None = None
        if isinstance(item, str):
            try:
                parsed = date.fromisoformat(item)
            except ValueError:
                parsed = None
        if parsed is None:
            raise ctx.error(key, f"expected an ISO date like 2026-02-09, got {item!r}")
        out.append(parsed)
    return out


def _reject_unknown_keys(
    ctx: _Ctx, key: str, value: dict[str, object], allowed: Iterable[str]
) -> None:
    unknown = set(value) - set(allowed)
    if unknown:
        raise ctx.error(f"{key}.{sorted(unknown)[0]}", f"unknown key; allowed: {sorted(allowed)}")


def _holiday_source(ctx: _Ctx, code: str, value: object) -> HolidaySource:
    key = f"{code}.holidays"
    if not isinstance(value, dict):
        raise ctx.error(key, 'required table, e.g. [X.holidays] country = "US"')
    _reject_unknown_keys(ctx, key, value, _HOLIDAY_KEYS)
    country = value.get("country")
    if not isinstance(country, str) or not country:
        raise ctx.error(f"{key}.country", 'required, an ISO country code such as "US"')
    subdiv = value.get("subdiv")
    if subdiv is not None and (not isinstance(subdiv, str) or not subdiv):
        raise ctx.error(f"{key}.subdiv", f"expected a subdivision code string, got {subdiv!r}")
    raw_observed = value.get("observed")
    try:
        observed = ObservedRule(str(raw_observed))
    except ValueError:
        raise ctx.error(
            f"{key}.observed",
            f"required, one of {', '.join(r.value for r in ObservedRule)}; got {raw_observed!r}",
        ) from None
    exclude = value.get("exclude", [])
    if not isinstance(exclude, list) or not all(isinstance(n, str) for n in exclude):
        raise ctx.error(f"{key}.exclude", f"expected a list of holiday names, got {exclude!r}")
    for bad_key, sub in ((f"{key}.country", None), (f"{key}.subdiv", subdiv)):
        try:
            known = _library_holidays(country, sub, _EXCLUDE_CHECK_YEARS, observed=False)
        except NotImplementedError as exc:
            raise ctx.error(bad_key, f"not supported by the holidays package: {exc}") from exc
    known_names = {n for names in known.values() for n in names}
    for n in exclude:
        if n not in known_names:
            raise ctx.error(
                f"{key}.exclude",
                f"{n!r} is not a holiday name for {country}/{subdiv}; "
                f"known: {', '.join(sorted(known_names))}",
            )
    return HolidaySource(country, subdiv, observed, frozenset(exclude))


def _rule(ctx: _Ctx, key: str, rt: ReviewType, value: object) -> tuple[DeadlineRule, Margins]:
    if not isinstance(value, dict):
        raise ctx.error(key, "must be a table with unit and amount")
    _reject_unknown_keys(ctx, key, value, _RULE_KEYS)
    raw_unit = value.get("unit")
    try:
        unit = DeadlineUnit(str(raw_unit))
    except ValueError:
        raise ctx.error(
            f"{key}.unit",
            f"required, one of {', '.join(u.value for u in DeadlineUnit)}; got {raw_unit!r}",
        ) from None
    amount = value.get("amount")
    if not isinstance(amount, int) or isinstance(amount, bool) or amount < 1:
        raise ctx.error(f"{key}.amount", f"required, an integer >= 1; got {amount!r}")
    default_assembly, default_delivery = DEFAULT_MARGIN_HOURS[rt]
    assembly = _hours_value(
        ctx, value.get("assembly_hours", default_assembly), f"{key}.assembly_hours"
    )
    delivery = _hours_value(
        ctx, value.get("delivery_hours", default_delivery), f"{key}.delivery_hours"
    )
    if delivery > assembly:
        raise ctx.error(
            f"{key}.delivery_hours",
            f"{delivery} h must not exceed assembly_hours ({assembly} h): "
            "the packet is assembled before it is delivered",
        )
    return DeadlineRule(unit, amount), Margins(timedelta(hours=assembly), timedelta(hours=delivery))


def _hours_value(ctx: _Ctx, value: object, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ctx.error(key, f"expected a number of hours >= 0, got {value!r}")
    return float(value)


@functools.cache
def _default_table() -> dict[str, Jurisdiction]:
    return load_jurisdictions()


def get_jurisdiction(code: str) -> Jurisdiction:
    """The jurisdiction ``code`` (case-insensitive) from the default data file (cached)."""
    table = _default_table()
    found = table.get(code) or table.get(code.strip().upper())
    if found is None:
        raise UnknownJurisdiction(code, table)
    return found


def known_codes() -> list[str]:
    """Codes configured in the default data file."""
    return sorted(_default_table())
