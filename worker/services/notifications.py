"""Intake: a notification becomes a case with one open request per provider."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import structlog
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from config.jurisdictions import UnknownJurisdiction, get_jurisdiction
from config.providers import ProviderDirectory
from connectors.vendor.router import RetrievalVendors
from storage.db import transaction
from storage.models import Case
from worker.commands import Command, OpenCase
from worker.domain.clock import Clock
from worker.domain.deadlines import DeadlineError, timeline
from worker.domain.jurisdiction import Jurisdiction
from worker.domain.lifecycle import LEASE
from worker.domain.notices import received_late, short_window, unknown_vendor
from worker.domain.outreach import DEFAULT_SETTINGS, business_windows
from worker.domain.types import ChannelKind, ReviewType
from worker.notification import IntakeError, parse_notification
from worker.services.audit import audit
from worker.services.mapping import flag_case, new_case, provider_hours

log = structlog.get_logger("goodfaith.services")


@dataclass(frozen=True)
class IntakeResult:
    case_id: str
    created: bool  # False: the notification was already taken in (idempotent on its id)
    follow: list[Command] = field(default_factory=list)
    #: what ops must know from the start (worker/domain/notices.py); also in Case.attention
    warnings: list[str] = field(default_factory=list)


def intake(
    data: Any,
    *,
    sessions: sessionmaker[Session],
    clock: Clock,
    agencies: Mapping[str, object],
    open_agencies: bool,
    directory: ProviderDirectory | None = None,
    vendors: RetrievalVendors | None = None,
) -> IntakeResult:
    """Open a case from a notification document. Idempotent on ``notification_id``.

    Raises IntakeError (naming every bad field) and stores nothing when the document is invalid.
    A provider the notification names no designee for gets the one ``directory`` knows by its
    NPI; a retrieval vendor ``vendors`` cannot reach is flagged (that channel will fail).
    """
    n = parse_notification(data)
    errors: list[tuple[str, str]] = []
    try:
        jurisdiction = get_jurisdiction(n.jurisdiction)
    except UnknownJurisdiction as exc:
        errors.append(("jurisdiction", str(exc).strip("'\"")))
        jurisdiction = None
    if not open_agencies and n.agency_id not in agencies:
        known = ", ".join(sorted(agencies)) or "none configured (GOODFAITH_AGENCIES)"
        errors.append(("agency_id", f"unknown agency {n.agency_id!r}; known: {known}"))
    if errors or jurisdiction is None:
        raise IntakeError(errors)
    try:
        tl = timeline(jurisdiction, n.review_type, n.received_at)
    except DeadlineError as exc:
        raise IntakeError([("received_at", str(exc))]) from None

    with transaction(sessions) as s:
        existing = s.scalar(select(Case.id).where(Case.notification_id == n.notification_id))
        if existing:
            return IntakeResult(existing, created=False)
        now = clock.now()
        case = new_case(n, tl, now, directory.designee if directory else None)
        case.open_at = now + LEASE  # re-driven by the ``opening`` timer if OpenCase is lost
        s.add(case)
        try:
            s.flush()
        except IntegrityError:  # the same notification taken in twice at once
            s.rollback()
            found = s.scalar(select(Case.id).where(Case.notification_id == n.notification_id))
            assert found is not None
            return IntakeResult(found, created=False)
        warnings = _plan_windows(case, jurisdiction) + _unreachable_vendors(case, vendors)
        if warnings:
            for text in warnings:
                flag_case(case, text)
            audit(s, now, "case.attention", case.id, reasons=warnings)
        audit(s, now, "case.opened", case.id, requests=len(case.requests))
        case_id = case.id
    log.info("case.opened", case_id=case_id, review_type=n.review_type.value)
    if warnings:
        log.warning("case.intake_warning", case_id=case_id, reasons=warnings)
    return IntakeResult(case_id, created=True, follow=[OpenCase(case_id)], warnings=warnings)


def _unreachable_vendors(case: Case, vendors: RetrievalVendors | None) -> list[str]:
    """A notice per vendor channel whose vendor id is not configured (ids only, no PHI)."""
    if vendors is None:
        return []
    missing = sorted(
        {
            str(ch["destination"])
            for r in case.requests
            for ch in r.channels
            if ch["kind"] == ChannelKind.VENDOR and not vendors.configured(str(ch["destination"]))
        }
    )
    return [unknown_vendor(vendor_id) for vendor_id in missing]


def _plan_windows(case: Case, jurisdiction: Jurisdiction) -> list[str]:
    """Count each request's business windows and say what ops must know from the start: a
    case received too late for its window, a standard request with too few windows."""
    warnings = []
    late = received_late(case.opened_at, case.assemble_at, case.due_at)
    if late:
        warnings.append(late)
    required = DEFAULT_SETTINGS.min_attempts
    for r in case.requests:
        r.business_windows = business_windows(
            opened_at=case.opened_at,
            cutoff=case.assemble_at,
            jurisdiction=jurisdiction,
            hours=provider_hours(r),
        )
        if late is None and case.review_type == ReviewType.STANDARD:
            short = short_window(r.provider_id, r.business_windows, required)
            if short:
                warnings.append(short)
    return warnings
