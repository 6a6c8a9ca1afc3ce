"""Campaign progress and results: per campaign, its cases and requests by status, the
attempts documented and the records received. Aggregate queries only (grouped counts), so a
campaign of 100,000 requests reads in a few statements."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select

from storage.models import Attempt, Campaign, Case, Document, RecordRequest
from worker.domain.lifecycle import DocumentKind, DocumentStatus

if TYPE_CHECKING:
    from worker.wiring import Container

#: Campaigns listed per page, at most.
MAX_PAGE = 200


def _head(campaign: Campaign) -> dict[str, Any]:
    return {
        "id": campaign.id,
        "name": campaign.name,
        "jurisdiction": campaign.jurisdiction,
        "status": campaign.status,
        "requests": campaign.requests,
        "policy": {
            "attempts": campaign.attempts,
            "spacing_fraction": campaign.spacing_fraction,
            "first_channel": campaign.first_channel,
        },
        "created_at": campaign.created_at.isoformat(),
        "created_by": campaign.created_by,
        "cancelled_at": campaign.cancelled_at.isoformat() if campaign.cancelled_at else None,
    }


def list_campaigns(c: Container, limit: int = 50, offset: int = 0) -> dict[str, Any]:
    """Campaigns, newest first, each with its requests by status (one grouped query)."""
    limit = max(1, min(limit, MAX_PAGE))
    with c.sessions() as s:
        total = s.scalar(select(func.count()).select_from(Campaign)) or 0
        page = list(
            s.scalars(
                select(Campaign)
                .order_by(Campaign.created_at.desc(), Campaign.id)
                .limit(limit)
                .offset(max(0, offset))
            )
        )
        by_status = _request_counts(s, [x.id for x in page])
        return {
            "total": total,
            "campaigns": [{**_head(x), "by_status": by_status.get(x.id, {})} for x in page],
        }


def _request_counts(s: Any, ids: list[str]) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    if not ids:
        return out
    rows = s.execute(
        select(Case.campaign_id, RecordRequest.status, func.count())
        .join(RecordRequest, RecordRequest.case_id == Case.id)
        .where(Case.campaign_id.in_(ids))
        .group_by(Case.campaign_id, RecordRequest.status)
    )
    for campaign_id, status, n in rows:
        out.setdefault(campaign_id, {})[status] = int(n)
    return out


def campaign_detail(c: Container, campaign_id: str) -> dict[str, Any] | None:
    """One campaign's progress and results: requests and cases by status, attempts documented
    (sent) by outcome, coalesced attempts (documented for a request, sent for another of its
    chase), records received, and how many cases are still waiting to be opened."""
    with c.sessions() as s:
        campaign = s.get(Campaign, campaign_id)
        if campaign is None:
            return None
        in_campaign = Case.campaign_id == campaign_id
        cases = {
            status: int(n)
            for status, n in s.execute(
                select(Case.status, func.count()).where(in_campaign).group_by(Case.status)
            )
        }
        attempts = {
            outcome: int(n)
            for outcome, n in s.execute(
                select(Attempt.outcome, func.count())
                .join(Case, Case.id == Attempt.case_id)
                .where(in_campaign)
                .group_by(Attempt.outcome)
            )
        }
        coalesced = s.scalar(
            select(func.count())
            .select_from(Attempt)
            .join(Case, Case.id == Attempt.case_id)
            .where(in_campaign, Attempt.served_by.is_not(None), Attempt.served_by != Attempt.id)
        )
        records = s.execute(
            select(func.count(), func.count(func.distinct(Document.request_id)))
            .join(Case, Case.id == Document.case_id)
            .where(
                in_campaign,
                Document.status == DocumentStatus.ACCEPTED.value,
                Document.kind == DocumentKind.RECORDS.value,
            )
        ).one()
        waiting = s.scalar(
            select(func.count()).select_from(Case).where(in_campaign, Case.open_at.is_not(None))
        )
        return {
            **_head(campaign),
            "by_status": _request_counts(s, [campaign_id]).get(campaign_id, {}),
            "cases": cases,
            "attempts": attempts,
            "attempts_total": sum(attempts.values()),
            "attempts_coalesced": int(coalesced or 0),
            "records_received": {"documents": int(records[0]), "requests": int(records[1])},
            "waiting_to_open": int(waiting or 0),
        }
