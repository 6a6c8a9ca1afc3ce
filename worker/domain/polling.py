"""When to poll a pull-style request (a CDex Task, a retrieval-vendor order) next.

Pure. A requester's cadence (``PollingRequester.poll_delay``) says how often to read an open
request: often at first, then hourly, then less often once it has been open for a working day
(connectors/fhir/cdex.py). An answer read late matters only when something acts on it, so the
cadence is bounded by those instants: the request's next attempt (a provider who already
answered must not be asked again) and the case's packet assembly (records that came must be
in the packet). The next poll is therefore the cadence's instant or :data:`LOOK_AHEAD` before
the next of those, whichever is earlier, but never sooner than :data:`MIN_GAP` after this
poll (HRex: no more often than hourly once the first half hour is over); a cadence shorter
than that gap (the first polls) is kept as it is.

A request whose far side notifies us of its changes (a CDex Subscription, a vendor's callback)
is read when told; its polls are only a safety net for a notification lost on the way, so
:func:`poll_delay` stretches the cadence (:data:`NOTIFIED_FIRST`, then every
:data:`NOTIFIED_EVERY`). The bound above still applies: the request is read shortly before
anything acts on it, notified or not.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

__all__ = [
    "LOOK_AHEAD",
    "MIN_GAP",
    "NOTIFIED_EVERY",
    "NOTIFIED_FIRST",
    "next_poll_at",
    "poll_delay",
]

#: How long before an instant that acts on the answer the last poll is made.
LOOK_AHEAD = timedelta(minutes=10)
#: The shortest interval between two polls that this bound may ask for.
MIN_GAP = timedelta(hours=1)
#: A notified request's first safety-net poll, counted from sending: a far side that accepted
#: the subscription but cannot reach us is found out within the first half hour.
NOTIFIED_FIRST = timedelta(minutes=30)
#: The interval between a notified request's later safety-net polls.
NOTIFIED_EVERY = timedelta(hours=8)


def next_poll_at(now: datetime, cadence: timedelta, acts_at: Iterable[datetime | None]) -> datetime:
    """The instant of the next poll after one made at ``now``: ``now + cadence``, brought
    forward to :data:`LOOK_AHEAD` before the earliest of ``acts_at`` still to come (None:
    nothing scheduled), but not to less than :data:`MIN_GAP` after ``now``."""
    at = now + cadence
    for acts in acts_at:
        if acts is None or acts - LOOK_AHEAD <= now:
            continue  # nothing scheduled, or too close to read before it: this poll served it
        at = min(at, max(acts - LOOK_AHEAD, now + MIN_GAP))
    return at


def poll_delay(
    cadence: timedelta, since_sent: timedelta, notified_until: datetime | None, now: datetime
) -> timedelta:
    """The delay before the next poll of a request sent ``since_sent`` ago whose channel's
    cadence asks for ``cadence``. While its far side notifies us of changes (``now`` before
    ``notified_until``), the polls are a safety net: the first at :data:`NOTIFIED_FIRST` after
    sending, then every :data:`NOTIFIED_EVERY`, never sooner than ``cadence``."""
    if notified_until is None or now >= notified_until:
        return cadence
    if since_sent < NOTIFIED_FIRST:
        return max(cadence, NOTIFIED_FIRST - since_sent)
    return max(cadence, NOTIFIED_EVERY)
