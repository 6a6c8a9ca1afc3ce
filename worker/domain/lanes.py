"""Lanes: which queue a piece of work waits in, so urgent cases never queue behind routine ones.

Three lanes, most urgent first. An expedited external review (MA 958 CMR 3.409: 24 hours;
NAIC #76: "immediately") goes ahead of a standard one (3–7 business days), and both go ahead
of bulk work (campaigns: many cases opened at once, none individually urgent). Each lane is
its own queue with its own workers (``goodfaith worker --lanes``), so a backlog in one lane
never delays another. Work that belongs to no case yet (an inbound fax before it is matched)
travels in the standard lane; what follows from it goes in its case's lane.
"""

from __future__ import annotations

from enum import StrEnum

from worker.domain.types import ReviewType


class Lane(StrEnum):
    EXPEDITED = "expedited"
    STANDARD = "standard"
    BULK = "bulk"


#: Every lane, most urgent first.
LANES: tuple[Lane, ...] = (Lane.EXPEDITED, Lane.STANDARD, Lane.BULK)


def lane_for(review_type: str | None, *, bulk: bool = False) -> Lane:
    """The lane of a case's work: expedited reviews always go first, even in a bulk campaign;
    other work of a campaign (``bulk``) goes last; the rest, and work with no case
    (``review_type`` None), is standard."""
    if review_type == ReviewType.EXPEDITED:
        return Lane.EXPEDITED
    return Lane.BULK if bulk else Lane.STANDARD


def parse_lanes(text: str) -> tuple[Lane, ...]:
    """``"expedited,standard"`` → the lanes named, most urgent first, without repeats.

    Raises ValueError naming the unknown lane and the known ones."""
    names = [part.strip().lower() for part in text.split(",") if part.strip()]
    if not names:
        raise ValueError("no lane named; known lanes: " + ", ".join(LANES))
    for name in names:
        if name not in {lane.value for lane in LANES}:
            raise ValueError(f"unknown lane {name!r}; known lanes: " + ", ".join(LANES))
    return tuple(lane for lane in LANES if lane.value in names)
