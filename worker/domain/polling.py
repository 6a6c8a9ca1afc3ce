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
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

__all__ = ["LOOK_AHEAD", "MIN_GAP", "next_poll_at"]

#: How long before an instant that acts on the answer the last poll is made.
LOOK_AHEAD = timedelta(minutes=10)
#: The shortest interval between two polls that this bound may ask for.
MIN_GAP = timedelta(hours=1)


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
