"""The scenario a simulation runs: notifications to take in, how each provider behaves on the
far side, and the span of virtual time.

Scenario file (JSON)::

    {"start": "2026-04-16T08:00:00-04:00",
     "notifications": [ <intake documents> ],
     "providers": {"prov-1": {"respond_after_attempts": 1, "reply_delay_minutes": 90, "pages": 12},
                   "prov-2": {"respond_after_attempts": null}, ...},
     "until": "2026-04-24T18:00:00-04:00",
     "drop_webhooks": 0.2, "duplicate_webhooks": 0.2, "throttle": 0.1}

An optional ``agencies`` map says how an agency (a notification's ``agency_id``) takes packets
on the far side; without it every agency takes HTTPS uploads::

     "agencies": {"agency-fax": {"transport": "fax", "fax_number": "+16175550199",
                                 "busy_first": 2, "name": "Fax-only Review Co"}}

``transport`` is ``"https"`` (the default) or ``"fax"``: a fax-only agency, given to our side as
``transport: "fax"`` with its ``fax_number`` (E.164, required), reached through whichever fax
vendor the run uses. An HTTPS agency may have ``"uploads": "refused"`` (every upload answered
403, as when our credentials are revoked) and a ``fallback_fax_number`` (given to our side as
the agency's fallback, and a fax line on the far side). ``busy_first`` (default 0; needs a fax
line) is how many calls the agency's line answers busy before it picks up; ``name`` is
optional. An agency id that no notification names is warned about, as a provider key is.

``start`` and ``until`` are ISO-8601 instants with an offset; ``until`` defaults to ``start``
plus :data:`DEFAULT_HORIZON` (14 calendar days). ``drop_webhooks`` (optional, 0–1) is the share
of outbound fax status webhooks the simulated carrier loses (seeded), to exercise our status
checks. ``duplicate_webhooks`` and ``throttle`` (optional, 0–1): callbacks delivered twice and
fax API requests answered 429 with ``Retry-After`` (duplicates: Telnyx and Sinch; 429: Sinch).
Each provider key is a
:class:`~simulator.providers.ProviderBehaviour` field; a relative ``document`` path is read from
the scenario file's folder. Unknown keys are refused by name.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

from config.settings import AgencySettings, AgencyTransportSettings, agency_settings
from simulator.agency_lines import AgencyLine
from simulator.providers import ProviderBehaviour

__all__ = [
    "DEFAULT_HORIZON",
    "AgencyBehaviour",
    "FarSideBook",
    "Scenario",
    "ScenarioError",
    "far_side_book",
    "load_scenario",
    "parse_scenario",
    "route_fhir_to",
    "unmatched_provider_keys",
]

DEFAULT_HORIZON = timedelta(days=14)
"""How long (calendar days of virtual time) a scenario without ``until`` runs."""


class ScenarioError(ValueError):
    """The scenario is malformed; the message names the key."""


class _ProviderSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    respond_after_attempts: int | None = Field(default=1, ge=1)
    reply_delay_minutes: float = Field(default=60, ge=0)
    pages: int = Field(default=5, ge=1, le=5000)
    fax: Literal["ok", "busy"] = "ok"
    fhir: Literal["ok", "rejects", "fails", "down"] = "ok"
    fhir_subscriptions: bool = True
    vendor: Literal["ok", "no_records", "down"] = "ok"
    reply: Literal["records", "no_records"] = "records"
    document: str | None = None


class _AgencySpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    transport: Literal["https", "fax"] = "https"
    name: str | None = None
    fax_number: str | None = Field(default=None, pattern=r"^\+[1-9]\d{1,14}$")
    busy_first: int = Field(default=0, ge=0)
    uploads: Literal["ok", "refused"] = "ok"
    fallback_fax_number: str | None = Field(default=None, pattern=r"^\+[1-9]\d{1,14}$")

    @model_validator(mode="after")
    def _fax_fields(self) -> _AgencySpec:
        if self.transport == "fax":
            if self.fax_number is None:
                raise ValueError("a fax agency needs fax_number (E.164)")
            if self.uploads != "ok" or self.fallback_fax_number is not None:
                raise ValueError("uploads and fallback_fax_number apply to transport 'https' only")
            return self
        if self.fax_number is not None:
            raise ValueError("fax_number applies to transport 'fax' only")
        if self.busy_first and self.fallback_fax_number is None:
            raise ValueError("busy_first needs a fax line: transport 'fax' or fallback_fax_number")
        return self


@dataclass(frozen=True)
class AgencyBehaviour:
    """How one agency takes packets on the far side (see the module docstring)."""

    transport: Literal["https", "fax"] = "https"
    name: str | None = None
    fax_number: str | None = None
    busy_first: int = 0
    uploads: Literal["ok", "refused"] = "ok"  # https: "refused" answers every upload 403
    fallback_fax_number: str | None = None  # https: given to our side; a line on the far side


class _ScenarioSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    start: AwareDatetime
    notifications: list[dict[str, Any]] = Field(min_length=1)
    providers: dict[str, _ProviderSpec] = Field(default_factory=dict)
    agencies: dict[str, _AgencySpec] = Field(default_factory=dict)
    until: AwareDatetime | None = None
    drop_webhooks: float = Field(default=0.0, ge=0, le=1)
    duplicate_webhooks: float = Field(default=0.0, ge=0, le=1)
    throttle: float = Field(default=0.0, ge=0, le=1)


@dataclass
class Scenario:
    """A validated scenario: ``start`` and ``until`` are timezone-aware instants."""

    start: datetime
    notifications: list[dict[str, Any]]
    providers: dict[str, ProviderBehaviour]
    until: datetime
    drop_webhooks: float = 0.0  # share of outbound fax status webhooks the carrier loses
    #: what would otherwise pass silently (a provider key matching no provider): printed when
    #: the scenario is loaded and kept in the run report's ``scenario_warnings``
    warnings: list[str] = field(default_factory=list)
    duplicate_webhooks: float = 0.0  # share of callbacks delivered twice (Telnyx, Sinch)
    throttle: float = 0.0  # share of fax API requests answered 429 (Sinch far side)
    #: how agencies take packets, by agency id (absent: HTTPS uploads)
    agencies: dict[str, AgencyBehaviour] = field(default_factory=dict)


def parse_scenario(data: Any, base_dir: Path | None = None) -> Scenario:
    """Validate a scenario document; ScenarioError names each bad key."""
    try:
        spec = _ScenarioSpec.model_validate(data)
    except ValidationError as exc:
        msgs = [
            f"{'.'.join(str(p) for p in e['loc']) or '(scenario)'}: "
            + ("unknown key" if e["type"] == "extra_forbidden" else e["msg"])
            for e in exc.errors()
        ]
        raise ScenarioError("invalid scenario: " + "; ".join(msgs)) from None
    providers = {}
    for pid, p in spec.providers.items():
        doc = None
        if p.document:
            doc = Path(p.document)
            if not doc.is_absolute() and base_dir is not None:
                doc = base_dir / doc
            if not doc.is_file():
                raise ScenarioError(f"providers.{pid}.document: no such file: {p.document}")
        providers[pid] = ProviderBehaviour(
            respond_after_attempts=p.respond_after_attempts,
            reply_delay_minutes=p.reply_delay_minutes,
            pages=p.pages,
            fax=p.fax,
            fhir=p.fhir,
            fhir_subscriptions=p.fhir_subscriptions,
            vendor=p.vendor,
            reply=p.reply,
            document=doc,
        )
    until = spec.until or spec.start + DEFAULT_HORIZON
    if until <= spec.start:
        raise ScenarioError("until: must be after start")
    agencies = {
        aid: AgencyBehaviour(
            a.transport, a.name, a.fax_number, a.busy_first, a.uploads, a.fallback_fax_number
        )
        for aid, a in spec.agencies.items()
    }
    named = {str(n.get("agency_id")) for n in spec.notifications if isinstance(n, dict)}
    warnings = unmatched_provider_keys(providers, spec.notifications) + [
        f"agencies.{aid}: no notification names this agency_id; its behaviour never applies"
        for aid in agencies
        if aid not in named
    ]
    return Scenario(
        spec.start,
        spec.notifications,
        providers,
        until,
        spec.drop_webhooks,
        warnings=warnings,
        duplicate_webhooks=spec.duplicate_webhooks,
        throttle=spec.throttle,
        agencies=agencies,
    )


def unmatched_provider_keys(providers: dict[str, Any], notifications: list[Any]) -> list[str]:
    """A warning for each ``providers`` key that names no provider (nor designee vendor) of any
    notification: its behaviour would silently never apply."""
    known: set[str] = set()
    for n in notifications:
        for p in (n.get("providers") or []) if isinstance(n, dict) else []:
            if isinstance(p, dict):
                known.add(str(p.get("provider_id")))
                designee = p.get("designee")
                if isinstance(designee, dict) and designee.get("vendor_id"):
                    known.add(str(designee["vendor_id"]))
    return [
        f"providers.{key}: matches no provider_id or designee vendor_id in the notifications; "
        "its behaviour never applies"
        for key in providers
        if key not in known
    ]


def load_scenario(path: Path) -> Scenario:
    """Read and validate the scenario file at ``path``; ScenarioError says what is wrong."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ScenarioError(f"no such scenario file: {path}") from None
    except json.JSONDecodeError as exc:
        raise ScenarioError(f"{path}: not valid JSON ({exc})") from None
    return parse_scenario(data, path.parent)


# --- what the far side learns from the notifications ----------------------------------------


@dataclass
class FarSideBook:
    """Who is who on the far side, read from the notifications: fax numbers and NPIs to provider
    (or designee vendor) ids, display names, one agency per agency id, and the retrieval
    vendor ids that ``vendor`` channels name (the simulator serves each of them)."""

    directory: dict[str, str] = field(default_factory=dict)
    names: dict[str, str] = field(default_factory=dict)
    vendor_ids: set[str] = field(default_factory=set)
    agencies: dict[str, AgencyTransportSettings] = field(default_factory=dict)
    #: the fax lines of agencies (fax-only ones, and fallbacks), by agency id
    agency_lines: dict[str, AgencyLine] = field(default_factory=dict)
    #: agencies whose upload endpoint refuses every packet (403)
    refused_uploads: set[str] = field(default_factory=set)


def route_fhir_to(simulator_url: str, notifications: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Point every FHIR channel at the simulator's FHIR server (it serves every provider)."""
    out: list[dict[str, Any]] = json.loads(json.dumps(notifications))
    for n in out:
        for p in n.get("providers", []) if isinstance(n, dict) else []:
            chans = list(p.get("channels", [])) + list(
                (p.get("designee") or {}).get("channels", [])
            )
            for ch in chans:
                if isinstance(ch, dict) and ch.get("kind") == "fhir":
                    ch["base_url"] = f"{simulator_url}/fhir"
    return out


def far_side_book(
    simulator_url: str,
    notifications: list[dict[str, Any]],
    agencies: Mapping[str, AgencyBehaviour] | None = None,
) -> FarSideBook:
    """Who is who on the far side of ``notifications``: agencies submitting to
    ``simulator_url``, or, when ``agencies`` says so, taking packets by fax on their line."""
    book = FarSideBook()
    for n in notifications:
        if not isinstance(n, dict):
            continue
        aid = str(n.get("agency_id", ""))
        if aid:
            behaviour = (agencies or {}).get(aid, AgencyBehaviour())
            name = behaviour.name or f"External review agency {aid}"
            if behaviour.transport == "fax" and behaviour.fax_number:
                book.agencies[aid] = agency_settings(
                    aid, {"transport": "fax", "name": name, "fax_number": behaviour.fax_number}
                )
                book.agency_lines[aid] = AgencyLine(aid, behaviour.fax_number, behaviour.busy_first)
            else:
                book.agencies[aid] = AgencySettings(
                    name=name,
                    submit_url=f"{simulator_url}/agency/{aid}/submissions",
                    fallback_fax_number=behaviour.fallback_fax_number,
                )
                if behaviour.fallback_fax_number:
                    book.agency_lines[aid] = AgencyLine(
                        aid, behaviour.fallback_fax_number, behaviour.busy_first
                    )
                if behaviour.uploads == "refused":
                    book.refused_uploads.add(aid)
        for p in n.get("providers", []) or []:
            pid = p.get("provider_id")
            book.names[pid] = p.get("name", pid)
            if p.get("npi"):
                book.directory[p["npi"]] = pid
            for ch in p.get("channels", []):
                if ch.get("kind") == "fax" and ch.get("number"):
                    book.directory[ch["number"]] = pid
                if ch.get("kind") == "vendor" and ch.get("vendor_id"):
                    book.vendor_ids.add(str(ch["vendor_id"]))
            designee = p.get("designee") or {}
            vendor = designee.get("vendor_id")
            if vendor:  # the designee is its own party on the far side, keyed by vendor_id
                book.names[vendor] = designee.get("name", vendor)
                if not designee.get("channels"):  # reached by an order to the vendor
                    book.vendor_ids.add(str(vendor))
                for ch in designee.get("channels", []):
                    if ch.get("kind") == "fax" and ch.get("number"):
                        book.directory[ch["number"]] = vendor
                    if ch.get("kind") == "vendor" and ch.get("vendor_id"):
                        book.vendor_ids.add(str(ch["vendor_id"]))
    return book
