"""The scenario a simulation runs: notifications to take in, how each provider behaves on the
far side, and the span of virtual time.

Scenario file (JSON)::

    {"start": "2026-04-16T08:00:00-04:00",
     "notifications": [ <intake documents> ],
     "providers": {"prov-1": {"respond_after_attempts": 1, "reply_delay_minutes": 90, "pages": 12},
                   "prov-2": {"respond_after_attempts": null}, ...},
     "until": "2026-04-24T18:00:00-04:00",
     "drop_webhooks": 0.2, "duplicate_webhooks": 0.2, "throttle": 0.1}

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
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

from config.settings import AgencySettings
from simulator.providers import ProviderBehaviour

__all__ = [
    "DEFAULT_HORIZON",
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
    vendor: Literal["ok", "no_records", "down"] = "ok"
    reply: Literal["records", "no_records"] = "records"
    document: str | None = None


class _ScenarioSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    start: AwareDatetime
    notifications: list[dict[str, Any]] = Field(min_length=1)
    providers: dict[str, _ProviderSpec] = Field(default_factory=dict)
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
            vendor=p.vendor,
            reply=p.reply,
            document=doc,
        )
    until = spec.until or spec.start + DEFAULT_HORIZON
    if until <= spec.start:
        raise ScenarioError("until: must be after start")
    return Scenario(
        spec.start,
        spec.notifications,
        providers,
        until,
        spec.drop_webhooks,
        warnings=unmatched_provider_keys(providers, spec.notifications),
        duplicate_webhooks=spec.duplicate_webhooks,
        throttle=spec.throttle,
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
    agencies: dict[str, AgencySettings] = field(default_factory=dict)
    vendor_ids: set[str] = field(default_factory=set)


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


def far_side_book(simulator_url: str, notifications: list[dict[str, Any]]) -> FarSideBook:
    """Who is who on the far side of ``notifications``, agencies submitting to ``simulator_url``."""
    book = FarSideBook()
    for n in notifications:
        if not isinstance(n, dict):
            continue
        aid = str(n.get("agency_id", ""))
        if aid:
            book.agencies[aid] = AgencySettings(
                name=f"External review agency {aid}",
                submit_url=f"{simulator_url}/agency/{aid}/submissions",
            )
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
