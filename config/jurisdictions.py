"""Load ``config/jurisdictions.toml`` into :class:`~worker.domain.jurisdiction.Jurisdiction` values.

The data file's header documents every key. Pydantic models mirror its tables with unknown keys
forbidden; validation errors become a :class:`JurisdictionConfigError` whose message names the
file, the key (``CODE.table.key``, ``[i]`` for a list item) and what is wrong. The validated
tables are then converted to the domain types (worker/domain/jurisdiction.py, calendar.py).

Nothing is read at import: :func:`load_jurisdictions` reads a file when called and
:func:`get_jurisdiction` caches the default table on first use.

Units: ``amount`` counts the rule's ``unit`` (business days, calendar days or hours);
``assembly_hours``/``delivery_hours`` are elapsed hours; times of day are local wall-clock
times in the jurisdiction's ``timezone``.
"""

from __future__ import annotations

import functools
import tomllib
import typing
from collections.abc import Iterable, Mapping
from datetime import date, datetime, time, timedelta
from pathlib import Path
from types import MappingProxyType
from typing import Annotated, Any, Self
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    Strict,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from worker.domain.calendar import (
    DEFAULT_BUSINESS_HOURS,
    BusinessCalendar,
    HolidaySource,
    ObservedRule,
    library_holidays,
)
from worker.domain.jurisdiction import DeadlineRule, DeadlineUnit, Jurisdiction, Margins
from worker.domain.types import ReviewType

DEFAULT_PATH = Path(__file__).with_name("jurisdictions.toml")

#: Local time at which a business- or calendar-day deadline falls when a table omits it.
DEFAULT_CLOSE_OF_BUSINESS = time(17, 0)
#: Local (begin, end) of the dead of night, kept free of expedited attempts where possible.
DEFAULT_QUIET_HOURS = (time(22, 0), time(7, 0))
#: (assembly_hours, delivery_hours) used when a review-type table omits them.
DEFAULT_MARGIN_HOURS: Mapping[ReviewType, tuple[float, float]] = MappingProxyType(
    {ReviewType.STANDARD: (4.0, 2.0), ReviewType.EXPEDITED: (3.0, 1.0)}
)

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


# -- field types ---------------------------------------------------------------------------------


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError(f"expected a non-empty string, got {value!r}")
    return value


def _local_time(value: object) -> time:
    # Not pydantic's ``time``: that also takes numbers (seconds after midnight) and offsets.
    if isinstance(value, time) and value.tzinfo is None:
        return value
    if isinstance(value, str):
        try:
            parsed = time.fromisoformat(value)
        except ValueError:
            pass
        else:
            if parsed.tzinfo is None:
                return parsed
    raise ValueError(f'expected a local time like "17:00", got {value!r}')


def _hours_pair(value: object) -> tuple[time, time]:
    if not isinstance(value, list | tuple) or len(value) != 2:
        raise ValueError(f'expected ["HH:MM", "HH:MM"], got {value!r}')
    opens, closes = _local_time(value[0]), _local_time(value[1])
    if opens >= closes:
        raise ValueError(f"opening {opens} must be before closing {closes}")
    return opens, closes


def _quiet_pair(value: object) -> tuple[time, time]:
    # Unlike business hours, quiet hours usually run past midnight: begin > end is allowed.
    if not isinstance(value, list | tuple) or len(value) != 2:
        raise ValueError(f'expected ["HH:MM", "HH:MM"], got {value!r}')
    begins, ends = _local_time(value[0]), _local_time(value[1])
    if begins == ends:
        raise ValueError(f"quiet hours must not begin and end at the same time ({begins})")
    return begins, ends


def _iso_date(value: object) -> date:
    # Not pydantic's ``date``: that also takes Unix timestamps and midnight datetimes.
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    if isinstance(value, str):
        try:
            return date.fromisoformat(value)
        except ValueError:
            pass
    raise ValueError(f"expected an ISO date like 2026-02-09, got {value!r}")


def _zone(value: object) -> ZoneInfo:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"required, an IANA zone name such as America/New_York; got {value!r}")
    try:
        return ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown IANA zone {value!r}; e.g. America/New_York") from exc


_Text = Annotated[str, Strict(), AfterValidator(_not_blank)]
_Zone = Annotated[ZoneInfo, PlainValidator(_zone)]
_LocalTime = Annotated[time, PlainValidator(_local_time)]
_BusinessHours = Annotated[tuple[time, time], PlainValidator(_hours_pair)]
_QuietHours = Annotated[tuple[time, time], PlainValidator(_quiet_pair)]
_IsoDate = Annotated[date, PlainValidator(_iso_date)]
# Strict: true and "5" are not numbers of hours; inf and nan cannot become a timedelta.
_Hours = Annotated[float, Strict(), Field(ge=0, allow_inf_nan=False)]


@functools.lru_cache(maxsize=64)
def _holiday_names(country: str, subdiv: str | None) -> frozenset[str]:
    """Holiday names the package knows for a place; ``NotImplementedError`` if it knows none."""
    table = library_holidays(country, subdiv, _EXCLUDE_CHECK_YEARS, observed=False)
    return frozenset(n for names in table.values() for n in names)


# -- tables --------------------------------------------------------------------------------------


class _Table(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _HolidaysTable(_Table):
    """``[CODE.holidays]``: fields are validated in this order, each check using the ones before."""

    country: _Text = Field(description='an ISO country code such as "US"')
    subdiv: _Text | None = None
    observed: ObservedRule = Field(description=f"one of {', '.join(ObservedRule)}")
    exclude: list[Annotated[str, Strict()]] = Field(default_factory=list)

    @field_validator("country")
    @classmethod
    def _country_is_known(cls, country: str) -> str:
        try:
            _holiday_names(country, None)
        except NotImplementedError as exc:
            raise ValueError(f"not supported by the holidays package: {exc}") from exc
        return country

    @field_validator("subdiv")
    @classmethod
    def _subdiv_is_known(cls, subdiv: str | None, info: ValidationInfo) -> str | None:
        if subdiv is None or "country" not in info.data:
            return subdiv
        try:
            _holiday_names(info.data["country"], subdiv)
        except NotImplementedError as exc:
            raise ValueError(f"not supported by the holidays package: {exc}") from exc
        return subdiv

    @field_validator("exclude")
    @classmethod
    def _names_are_holidays(cls, exclude: list[str], info: ValidationInfo) -> list[str]:
        if "country" not in info.data or "subdiv" not in info.data:
            return exclude  # the place itself is invalid and reported as such
        country, subdiv = info.data["country"], info.data["subdiv"]
        known = _holiday_names(country, subdiv)
        for name in exclude:
            if name not in known:
                raise ValueError(
                    f"{name!r} is not a holiday name for {country}/{subdiv}; "
                    f"known: {', '.join(sorted(known))}"
                )
        return exclude


class _RuleTable(_Table):
    """``[CODE.<review type>]``; subclasses set the margin defaults of their review type."""

    unit: DeadlineUnit = Field(description=f"one of {', '.join(DeadlineUnit)}")
    amount: Annotated[int, Strict(), Field(ge=1, description="an integer >= 1")]
    assembly_hours: _Hours
    delivery_hours: _Hours

    @field_validator("delivery_hours")
    @classmethod
    def _delivered_after_assembly(cls, delivery: float, info: ValidationInfo) -> float:
        assembly = info.data.get("assembly_hours")
        if assembly is not None and delivery > assembly:
            raise ValueError(
                f"{delivery} h must not exceed assembly_hours ({assembly} h): "
                "the packet is assembled before it is delivered"
            )
        return delivery

    def to_domain(self) -> tuple[DeadlineRule, Margins]:
        return DeadlineRule(self.unit, self.amount), Margins(
            timedelta(hours=self.assembly_hours), timedelta(hours=self.delivery_hours)
        )


class _StandardRuleTable(_RuleTable):
    assembly_hours: _Hours = DEFAULT_MARGIN_HOURS[ReviewType.STANDARD][0]
    # validate_default: an explicit assembly_hours below the default delivery_hours is an error.
    delivery_hours: Annotated[_Hours, Field(validate_default=True)] = DEFAULT_MARGIN_HOURS[
        ReviewType.STANDARD
    ][1]


class _ExpeditedRuleTable(_RuleTable):
    assembly_hours: _Hours = DEFAULT_MARGIN_HOURS[ReviewType.EXPEDITED][0]
    delivery_hours: Annotated[_Hours, Field(validate_default=True)] = DEFAULT_MARGIN_HOURS[
        ReviewType.EXPEDITED
    ][1]


class _JurisdictionTable(_Table):
    """``[CODE]``. Validate with ``context={"code": CODE}`` so messages can name the table."""

    name: _Text = Field(description="a non-empty string")
    citation: _Text = Field(description="a non-empty string")
    timezone: _Zone = Field(description="an IANA zone name such as America/New_York")
    close_of_business: _LocalTime = DEFAULT_CLOSE_OF_BUSINESS
    business_hours: _BusinessHours = DEFAULT_BUSINESS_HOURS
    quiet_hours: _QuietHours = DEFAULT_QUIET_HOURS
    extra_closures: list[_IsoDate] = Field(default_factory=list)
    holidays: _HolidaysTable = Field(description='a table, e.g. [X.holidays] country = "US"')
    # One field per ReviewType value; to_domain() looks them up by that value.
    standard: _StandardRuleTable | None = None
    expedited: _ExpeditedRuleTable | None = None

    @model_validator(mode="after")
    def _has_a_review_type(self, info: ValidationInfo) -> Self:
        if all(self._rule_table(rt) is None for rt in ReviewType):
            code = (info.context or {}).get("code", "X")
            raise ValueError(f"no review types; add at least one of [{code}.standard]")
        return self

    def _rule_table(self, rt: ReviewType) -> _RuleTable | None:
        table = getattr(self, rt.value)
        assert table is None or isinstance(table, _RuleTable)
        return table

    def to_domain(self, code: str) -> Jurisdiction:
        rules: dict[ReviewType, DeadlineRule] = {}
        margins: dict[ReviewType, Margins] = {}
        for rt in ReviewType:
            table = self._rule_table(rt)
            if table is not None:
                rules[rt], margins[rt] = table.to_domain()
        h = self.holidays
        source = HolidaySource(h.country, h.subdiv, h.observed, frozenset(h.exclude))
        return Jurisdiction(
            code=code,
            name=self.name,
            citation=self.citation,
            tz=self.timezone,
            close_of_business=self.close_of_business,
            business_hours=self.business_hours,
            quiet_hours=self.quiet_hours,
            rules=MappingProxyType(rules),
            margins=MappingProxyType(margins),
            calendar=BusinessCalendar(
                source, self.timezone, self.business_hours, self.extra_closures
            ),
        )


# -- error messages ------------------------------------------------------------------------------


def _key(code: str, loc: tuple[int | str, ...]) -> str:
    key = code
    for part in loc:
        key += f"[{part}]" if isinstance(part, int) else f".{part}"
    return key


def _table_at(loc: tuple[int | str, ...]) -> type[BaseModel] | None:
    """The table model that holds the key at ``loc`` (for listing its allowed keys)."""
    model: type[BaseModel] = _JurisdictionTable
    for part in loc[:-1]:
        field = model.model_fields.get(str(part))
        if field is None:
            return None
        nested = [
            arg
            for arg in (field.annotation, *typing.get_args(field.annotation))
            if isinstance(arg, type) and issubclass(arg, BaseModel)
        ]
        if not nested:
            return None
        model = nested[0]
    return model


def _problem(error: Mapping[str, Any]) -> str:
    """One pydantic error in the file's terms, saying what would be accepted."""
    loc = tuple(error["loc"])
    table = _table_at(loc)
    if error["type"] == "extra_forbidden":
        allowed = ", ".join(sorted(table.model_fields)) if table else "see the file header"
        return f"unknown key; allowed: {allowed}"
    if error["type"] == "missing":
        field = table.model_fields.get(str(loc[-1])) if table else None
        hint = field.description if field else None
        return f"required, {hint}" if hint else "required"
    if error["type"] == "model_type":
        return f"expected a table, got {error['input']!r}"
    if error["type"] == "value_error":
        return str(error["ctx"]["error"])  # our own validators' messages, without a prefix
    return f"{error['msg']}; got {error['input']!r}"


def _describe(path: Path, code: str, exc: ValidationError) -> str:
    return "\n".join(f"{path}: {_key(code, tuple(e['loc']))}: {_problem(e)}" for e in exc.errors())


# -- loading -------------------------------------------------------------------------------------


def load_jurisdictions(path: Path | None = None) -> dict[str, Jurisdiction]:
    """Read and validate a jurisdictions TOML file (default: the one beside this module).

    Raises :class:`JurisdictionConfigError` naming the file and the bad key, one line per
    problem found in the first malformed jurisdiction.
    """
    path = DEFAULT_PATH if path is None else Path(path)
    try:
        with path.open("rb") as fh:
            raw = tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise JurisdictionConfigError(f"{path}: not valid TOML: {exc}") from exc
    if not raw:
        raise JurisdictionConfigError(f"{path}: (file): no jurisdictions defined")
    table: dict[str, Jurisdiction] = {}
    for code, body in raw.items():
        if not isinstance(body, dict):
            raise JurisdictionConfigError(f"{path}: {code}: must be a table ([CODE] section)")
        try:
            parsed = _JurisdictionTable.model_validate(body, context={"code": code})
        except ValidationError as exc:
            raise JurisdictionConfigError(_describe(path, code, exc)) from exc
        table[code] = parsed.to_domain(code)
    return table


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
