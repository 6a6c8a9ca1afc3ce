"""Provider profiles: per provider, what past outreach measured — the retrieval rate (records
obtained of requests closed), the time to reply (hours from the first attempt sent to the
answer: records or a "no records" statement) and each channel's success (attempts delivered
of those completed). Three aggregate queries (the reply times streamed); only attempts that
went out count, never the rows documenting a chase's attempt for its other requests.

``first_channel = profile`` campaigns choose a request's first channel by the same channel
figures (``worker/services/campaigns.py::channel_profile``, ``worker/domain/outreach.py``).
"""

from __future__ import annotations

import csv
import io
import json
from collections import defaultdict
from collections.abc import Iterator
from statistics import median
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, or_, select

from storage.models import Attempt, RecordRequest
from worker.domain.lifecycle import RequestStatus

if TYPE_CHECKING:
    from worker.wiring import Container

#: Columns of the CSV export, in order.
PROFILE_FIELDS = (
    "provider_id",
    "provider_name",
    "requests",
    "open",
    "fulfilled",
    "no_records",
    "unresponsive",
    "cancelled",
    "retrieval_rate",
    "replies",
    "reply_hours_median",
    "reply_hours_mean",
    "attempts",
    "channels",
)
_ANSWERED = (RequestStatus.FULFILLED.value, RequestStatus.NO_RECORDS.value)


def provider_profiles(c: Container, provider_id: str | None = None) -> list[dict[str, Any]]:
    """Every provider's profile (or one), by provider id."""
    sending = or_(Attempt.served_by.is_(None), Attempt.served_by == Attempt.id)
    with c.sessions() as s:
        by_status = select(
            RecordRequest.provider_id,
            func.max(RecordRequest.provider_name),
            RecordRequest.status,
            func.count(),
        ).group_by(RecordRequest.provider_id, RecordRequest.status)
        channels = (
            select(RecordRequest.provider_id, Attempt.channel, Attempt.outcome, func.count())
            .join(RecordRequest, RecordRequest.id == Attempt.request_id)
            .where(sending)
            .group_by(RecordRequest.provider_id, Attempt.channel, Attempt.outcome)
        )
        replies = (
            select(RecordRequest.provider_id, RecordRequest.closed_at, func.min(Attempt.sent_at))
            .join(Attempt, Attempt.request_id == RecordRequest.id)
            .where(RecordRequest.status.in_(_ANSWERED), Attempt.sent_at.is_not(None))
            .group_by(RecordRequest.id, RecordRequest.provider_id, RecordRequest.closed_at)
            .execution_options(yield_per=1000)
        )
        if provider_id is not None:
            by_status = by_status.where(RecordRequest.provider_id == provider_id)
            channels = channels.where(RecordRequest.provider_id == provider_id)
            replies = replies.where(RecordRequest.provider_id == provider_id)
        profiles: dict[str, dict[str, Any]] = {}
        for pid, name, status, n in s.execute(by_status):
            p = profiles.setdefault(pid, _empty(pid, name))
            p[status] = p.get(status, 0) + int(n)
            p["requests"] += int(n)
        for pid, channel, outcome, n in s.execute(channels):
            if pid not in profiles:
                continue
            ch = profiles[pid]["channels"].setdefault(
                channel, {"attempts": 0, "delivered": 0, "failed": 0, "success_rate": None}
            )
            ch["attempts"] += int(n)
            profiles[pid]["attempts"] += int(n)
            if outcome in ("delivered", "failed"):
                ch[outcome] += int(n)
        hours: dict[str, list[float]] = defaultdict(list)
        for pid, closed_at, first_sent in s.execute(replies):
            if closed_at is not None and first_sent is not None and pid in profiles:
                hours[pid].append(max(0.0, (closed_at - first_sent).total_seconds() / 3600))
    for pid, p in profiles.items():
        closed = p["fulfilled"] + p["no_records"] + p["unresponsive"]
        p["retrieval_rate"] = round(p["fulfilled"] / closed, 4) if closed else None
        times = hours.get(pid, [])
        p["replies"] = len(times)
        p["reply_hours_median"] = round(median(times), 2) if times else None
        p["reply_hours_mean"] = round(sum(times) / len(times), 2) if times else None
        for ch in p["channels"].values():
            done = ch["delivered"] + ch["failed"]
            ch["success_rate"] = round(ch["delivered"] / done, 4) if done else None
    return [profiles[k] for k in sorted(profiles)]


def _empty(pid: str, name: str) -> dict[str, Any]:
    return {
        "provider_id": pid,
        "provider_name": name,
        "requests": 0,
        "open": 0,
        "fulfilled": 0,
        "no_records": 0,
        "unresponsive": 0,
        "cancelled": 0,
        "attempts": 0,
        "channels": {},
    }


def render_profiles(profiles: list[dict[str, Any]], fmt: str) -> Iterator[str]:
    """The profiles as JSON (one document) or CSV (``channels`` as compact JSON per row)."""
    if fmt == "json":
        yield json.dumps({"profiles": profiles}, indent=2, sort_keys=True)
        return
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=PROFILE_FIELDS, extrasaction="ignore")
    writer.writeheader()
    for p in profiles:
        writer.writerow({**p, "channels": json.dumps(p["channels"], sort_keys=True)})
    yield buf.getvalue()
