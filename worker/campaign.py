"""A campaign document (bulk record retrieval) and its validation: the campaign's own outreach
policy and its rows, each a request for one member's records at one provider.

Rows come from a CSV file (``goodfaith campaign load FILE.csv``; the header names the
columns) or from ``POST /v1/campaigns`` (``"requests"``: the same columns as JSON strings, or
``"csv"``: the file's text). Every row is checked before anything is stored; each bad value is
named by its row (1 = the first row after the header) and column, and nothing is stored.

Columns (``*`` required)::

    member_id*  member_name*  birth_date* (YYYY-MM-DD)  provider_id*  provider_name*
    npi (10 digits, check digit; needed with fhir)  fax (E.164)  fhir (https:// base URL)
    request* (what to send, in words)  dates_of_service (YYYY-MM-DD;YYYY-MM-DD...)
    due_date* (YYYY-MM-DD: records wanted by 17:00 in the campaign's zone)
    business_hours (HH:MM-HH:MM, the provider's own)

A row needs a fax number or a FHIR base URL (or both: fax first, unless the campaign's
``first_channel`` is ``profile``).
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from worker.notification import E164, _npi_ok

#: The columns a row may have; others are refused by name (a typo must not drop data silently).
COLUMNS = (
    "member_id",
    "member_name",
    "birth_date",
    "provider_id",
    "provider_name",
    "npi",
    "fax",
    "fhir",
    "request",
    "dates_of_service",
    "due_date",
    "business_hours",
)
REQUIRED = (
    "member_id",
    "member_name",
    "birth_date",
    "provider_id",
    "provider_name",
    "request",
    "due_date",
)
#: Local time of day a row's due date ends (the campaign's zone).
DUE_TIME = time(17, 0)
#: A due date must leave at least this long after loading (outreach needs room) ...
MIN_LEAD = timedelta(days=2)
#: ... and be no further out than this.
MAX_LEAD = timedelta(days=366)
#: Rows one campaign may hold.
MAX_ROWS = 200_000

_HOURS = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-3]):([0-5]\d)$")


class CampaignError(ValueError):
    """The campaign is invalid. ``errors`` lists ``(row, column, message)``: row 0 is the
    campaign itself (its name, policy or header), row 1 the first request row."""

    def __init__(self, errors: list[tuple[int, str, str]]) -> None:
        self.errors = errors
        super().__init__("; ".join(_describe(e) for e in errors[:20]))


def _describe(error: tuple[int, str, str]) -> str:
    row, column, message = error
    return f"{column}: {message}" if row == 0 else f"row {row}, column {column}: {message}"


class Policy(BaseModel):
    """The campaign's outreach policy (see ``worker.domain.outreach.OutreachSettings``):
    ``attempts`` documented attempts per request, spread over its window with
    ``spacing_fraction`` of the window's business time between them; ``first_channel``:
    ``listed`` (the row's order, fax first) or ``profile`` (the provider's best-answering
    channel so far, ``worker/readmodels/profiles.py``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    attempts: int = Field(default=3, ge=1, le=10)
    spacing_fraction: float = Field(default=0.25, ge=0.05, lt=0.9)
    first_channel: Literal["listed", "profile"] = "listed"


class CampaignHead(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)

    name: str = Field(min_length=1, max_length=128)
    jurisdiction: str = Field(default="MA", min_length=1, max_length=16)
    policy: Policy = Policy()


@dataclass(frozen=True)
class CampaignRow:
    """One validated row: a request for one member's records at one provider."""

    row: int
    member_id: str
    member_name: str
    birth_date: date
    provider_id: str
    provider_name: str
    npi: str | None
    channels: tuple[tuple[str, str], ...]  # (kind, destination), in the row's order
    request: str
    dates_of_service: tuple[date, ...]
    due_date: date
    business_hours: tuple[str, str] | None


@dataclass(frozen=True)
class CampaignDoc:
    head: CampaignHead
    rows: list[CampaignRow]


def parse_head(data: Mapping[str, Any]) -> CampaignHead:
    """The campaign's name, jurisdiction and policy; raises CampaignError (row 0)."""
    try:
        return CampaignHead.model_validate(data)
    except ValidationError as exc:
        raise CampaignError(
            [
                (0, ".".join(str(p) for p in e["loc"]), e["msg"].removeprefix("Value error, "))
                for e in exc.errors()
            ]
        ) from None


def csv_rows(text: str) -> Iterator[dict[str, str]]:
    """The rows of a campaign CSV as column → value; raises CampaignError for a bad header."""
    reader = csv.DictReader(io.StringIO(text))
    header = [h.strip() for h in reader.fieldnames or []]
    errors = [(0, h or "(empty)", "unknown column; known: " + ", ".join(COLUMNS)) for h in header]
    errors = [e for e in errors if e[1] not in COLUMNS]
    missing = [c for c in REQUIRED if c not in header]
    errors += [(0, c, "required column missing from the header") for c in missing]
    if errors:
        raise CampaignError(errors)
    reader.fieldnames = header
    for raw in reader:
        yield {k: (v or "").strip() for k, v in raw.items() if k is not None}


def validate_rows(
    rows: Iterable[Mapping[str, Any]],
    *,
    today: date,
    progress: Any = None,
) -> list[CampaignRow]:
    """Check every row (``today``: the load's date in the campaign's zone); raises
    CampaignError listing every bad value when any row is bad. ``progress(n)`` is called every
    10,000 rows."""
    out: list[CampaignRow] = []
    errors: list[tuple[int, str, str]] = []
    for n, raw in enumerate(rows, start=1):
        if n > MAX_ROWS:
            errors.append((n, "(row)", f"a campaign holds at most {MAX_ROWS} rows; split the file"))
            break
        row, row_errors = _row(n, raw, today)
        errors += row_errors
        if row is not None:
            out.append(row)
        if progress is not None and n % 10_000 == 0:
            progress(n)
    if not out and not errors:
        errors.append((0, "requests", "no rows: a campaign needs at least one request"))
    if errors:
        raise CampaignError(errors)
    return out


def _row(
    n: int, raw: Mapping[str, Any], today: date
) -> tuple[CampaignRow | None, list[tuple[int, str, str]]]:
    if not isinstance(raw, Mapping):
        return None, [(n, "(row)", "must be an object of column: value")]
    errors: list[tuple[int, str, str]] = []
    v = {str(k): ("" if val is None else str(val).strip()) for k, val in raw.items()}
    for k in v:
        if k not in COLUMNS:
            errors.append((n, k, "unknown column; known: " + ", ".join(COLUMNS)))
    for k in REQUIRED:
        if not v.get(k):
            errors.append((n, k, "required"))
    for k, limit in (("member_id", 64), ("provider_id", 64), ("member_name", 256)):
        if len(v.get(k, "")) > limit:
            errors.append((n, k, f"at most {limit} characters"))
    if len(v.get("provider_name", "")) > 256 or len(v.get("request", "")) > 512:
        errors.append((n, "request", "at most 512 characters (provider_name: 256)"))
    birth = _date(v.get("birth_date", ""), n, "birth_date", errors)
    due = _date(v.get("due_date", ""), n, "due_date", errors)
    if due is not None and not today + MIN_LEAD <= due <= today + MAX_LEAD:
        errors.append((n, "due_date", f"must be between {today + MIN_LEAD} and {today + MAX_LEAD}"))
    dos: list[date] = []
    for part in filter(None, (p.strip() for p in v.get("dates_of_service", "").split(";"))):
        d = _date(part, n, "dates_of_service", errors)
        if d is not None:
            dos.append(d)
    npi = v.get("npi") or None
    if npi is not None and not _npi_ok(npi):
        errors.append((n, "npi", "must be 10 digits with a valid check digit"))
    channels: list[tuple[str, str]] = []
    fax, fhir = v.get("fax", ""), v.get("fhir", "")
    if fax:
        if E164.match(fax):
            channels.append(("fax", fax))
        else:
            errors.append((n, "fax", "must be E.164, e.g. +16175550101"))
    if fhir:
        if not fhir.startswith(("https://", "http://")):
            errors.append((n, "fhir", "must be the FHIR base URL (https://...)"))
        elif npi is None:
            errors.append((n, "npi", "required with a fhir channel (the Task owner)"))
        else:
            channels.append(("fhir", fhir))
    if not fax and not fhir:
        errors.append((n, "fax", "a row needs a fax number or a fhir base URL"))
    hours = None
    if v.get("business_hours"):
        m = _HOURS.match(v["business_hours"])
        if m is None or v["business_hours"][:5] >= v["business_hours"][6:]:
            errors.append((n, "business_hours", "must be HH:MM-HH:MM, e.g. 08:30-16:30"))
        else:
            hours = (v["business_hours"][:5], v["business_hours"][6:])
    if errors or birth is None or due is None:
        return None, errors
    return (
        CampaignRow(
            row=n,
            member_id=v["member_id"],
            member_name=v["member_name"],
            birth_date=birth,
            provider_id=v["provider_id"],
            provider_name=v["provider_name"],
            npi=npi,
            channels=tuple(channels),
            request=v["request"],
            dates_of_service=tuple(dos),
            due_date=due,
            business_hours=hours,
        ),
        [],
    )


def _date(text: str, n: int, column: str, errors: list[tuple[int, str, str]]) -> date | None:
    if not text:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        errors.append((n, column, f"{text!r} is not a date (YYYY-MM-DD)"))
        return None


def due_instant(due: date, tz: Any) -> datetime:
    """A row's due date as an instant: :data:`DUE_TIME` that day in the campaign's zone."""
    return datetime.combine(due, DUE_TIME, tzinfo=tz)


def parse_campaign(
    data: Any, *, today: Callable[[str], date], progress: Callable[[int], None] | None = None
) -> CampaignDoc:
    """A campaign document: ``{"name", "jurisdiction", "policy", "requests": [rows]}`` or
    ``"csv": "<the file's text>"`` instead of ``requests``. ``today(jurisdiction)`` is the
    load's date in that jurisdiction's zone. Raises CampaignError naming every bad value."""
    if not isinstance(data, Mapping):
        raise CampaignError([(0, "(document)", "must be a JSON object")])
    rows_in = data.get("requests")
    text = data.get("csv")
    if (rows_in is None) == (text is None):
        raise CampaignError([(0, "requests", "give either 'requests' (a list) or 'csv' (text)")])
    head = parse_head({k: v for k, v in data.items() if k not in ("requests", "csv")})
    if text is not None:
        if not isinstance(text, str):
            raise CampaignError([(0, "csv", "must be the CSV file's text")])
        rows: Iterable[Mapping[str, Any]] = csv_rows(text)
    elif isinstance(rows_in, list):
        rows = rows_in
    else:
        raise CampaignError([(0, "requests", "must be a list of rows")])
    return CampaignDoc(head, validate_rows(rows, today=today(head.jurisdiction), progress=progress))
