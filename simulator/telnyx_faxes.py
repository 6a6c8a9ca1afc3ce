"""The simulated carrier's book of faxes: the fax object as Telnyx returns it
(``GET /v2/faxes/{id}``) and the filtered, paged list (``GET /v2/faxes``)."""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from simulator.events import iso

__all__ = ["Fax", "fax_resource", "list_page"]


@dataclass
class Fax:
    """One fax on the carrier's books."""

    id: str
    connection_id: str
    from_number: str
    to_number: str
    media_url: str
    client_state: str | None
    webhook_url: str
    created_at: datetime
    status: str = "queued"
    direction: str = "outbound"  # or "inbound": a provider's answer, "received" from created_at
    page_count: int | None = None
    timeline: list[tuple[datetime, str]] = field(default_factory=list)  # (at, status)
    media_name: str | None = None  # stored media (``POST /v2/media``) sent instead of a URL
    webhook_failover_url: str | None = None  # where refused webhooks are re-attempted

    def status_at(self, now: datetime) -> str:
        """The fax's status as of ``now`` (its events are scheduled ahead of time)."""
        reached = [status for at, status in self.timeline if at <= now]
        return reached[-1] if reached else "queued"

    def updated_at(self, now: datetime) -> datetime:
        reached = [at for at, _ in self.timeline if at <= now]
        return reached[-1] if reached else self.created_at


def fax_resource(fax: Fax, now: datetime) -> dict[str, Any]:
    """The fax object as Telnyx returns it (status as of ``now``)."""
    resource = {
        "record_type": "fax",
        "id": fax.id,
        "connection_id": fax.connection_id,
        "direction": fax.direction,
        "from": fax.from_number,
        "to": fax.to_number,
        "media_url": fax.media_url,
        "status": fax.status_at(now),
        "store_media": False,
        "webhook_url": fax.webhook_url,
        "created_at": iso(fax.created_at),
        "updated_at": iso(fax.updated_at(now)),
    }
    if fax.client_state:
        resource["client_state"] = fax.client_state
    if fax.media_name:
        resource["media_name"] = fax.media_name
    if fax.webhook_failover_url:
        resource["webhook_failover_url"] = fax.webhook_failover_url
    if fax.page_count is not None:
        resource["page_count"] = fax.page_count
    return resource


def list_page(faxes: list[Fax], q: Mapping[str, str], now: datetime) -> dict[str, Any]:
    """One page of ``faxes`` matching Telnyx's ``filter[...]`` parameters, newest first.
    ValueError for an unreadable parameter, LookupError for a page out of range."""
    number = int(q.get("page[number]", "1"))
    size = int(q.get("page[size]", "20"))
    bounds = {
        op: _instant(q[f"filter[created_at][{op}]"])
        for op in ("gte", "gt", "lte", "lt")
        if f"filter[created_at][{op}]" in q
    }
    if number < 1 or not 1 <= size <= 250:
        raise LookupError("page[number] >= 1 and 1 <= page[size] <= 250")
    direction = q.get("filter[direction][eq]", "outbound")
    to, sender = q.get("filter[to][eq]"), q.get("filter[from][eq]")
    tests = [(_COMPARE[op], at) for op, at in bounds.items()]
    chosen = [
        f
        for f in faxes
        if f.direction == direction  # first: it alone sets most faxes aside (a sweep's list)
        and (to is None or to == f.to_number)
        and (sender is None or sender == f.from_number)
        and (f.direction == "outbound" or f.created_at <= now)  # an answer exists once arrived
        and all(test(f.created_at, at) for test, at in tests)
    ]
    chosen.sort(key=lambda f: f.created_at, reverse=True)
    page = chosen[(number - 1) * size : number * size]
    meta = {
        "page_number": number,
        "page_size": size,
        "total_pages": (len(chosen) + size - 1) // size,
        "total_results": len(chosen),
    }
    return {"data": [fax_resource(f, now) for f in page], "meta": meta}


def _instant(text: str) -> datetime:
    instant = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if instant.tzinfo is None:
        raise ValueError("filter[created_at] needs an offset or Z")
    return instant


_COMPARE: dict[str, Callable[[datetime, datetime], bool]] = {
    "gte": operator.ge,
    "gt": operator.gt,
    "lte": operator.le,
    "lt": operator.lt,
}
