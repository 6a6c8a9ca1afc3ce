"""The lane of each command, from its case's review type and whether the case is a campaign's
(the rule: ``worker/domain/lanes.py``): a campaign's work goes in the bulk lane.

Commands carry one id, of a case, request, attempt, delivery or inbound item. Lanes are looked
up when enqueuing, in one query per kind of id in the batch; messages stay id-only. A case's
review type never changes, so a command's lane is fixed once its row exists.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from storage.models import Attempt, Case, Delivery, RecordRequest
from worker.commands import (
    AssemblePacket,
    CancelAttempt,
    Command,
    DeliverPacket,
    FirstAttempts,
    OpenCase,
    PlanOutreach,
    PollTask,
    SendAttempt,
    entity_id,
)
from worker.domain.lanes import Lane, lane_for

#: For each command, the column holding its id and the one naming its case (None: no case).
_KEYS: dict[type, tuple[Any, Any]] = {
    OpenCase: (Case.id, None),
    AssemblePacket: (Case.id, None),
    PlanOutreach: (RecordRequest.id, RecordRequest.case_id),
    SendAttempt: (Attempt.id, Attempt.case_id),
    PollTask: (Attempt.id, Attempt.case_id),
    CancelAttempt: (Attempt.id, Attempt.case_id),
    DeliverPacket: (Delivery.id, Delivery.case_id),
}


#: Commands of a campaign's requests only, in batches (``services/bulk.py``): the bulk lane.
BULK_ONLY: frozenset[type] = frozenset({FirstAttempts})

#: Commands whose id names a row of one case (or, ``BULK_ONLY``, of campaign cases): the lane
#: of their case. Their follow-ups take that lane too (``actors.CaseLane``).
CASE_BOUND: frozenset[type] = frozenset(_KEYS) | BULK_ONLY


def lanes_of(commands: Sequence[Command], *, sessions: sessionmaker[Session]) -> list[Lane]:
    """The lane of each command, in order. Commands of no case (``IngestInbound``) and rows
    not found (a stale command) are standard."""
    ids: dict[tuple[Any, Any], set[str]] = defaultdict(set)
    for cmd in commands:
        key = _KEYS.get(type(cmd))
        if key is not None:
            ids[key].add(entity_id(cmd))
    review: dict[str, tuple[str, bool]] = {}
    if ids:
        with sessions() as s:
            for (id_col, case_col), wanted in ids.items():
                stmt = select(id_col, Case.review_type, Case.campaign_id).where(id_col.in_(wanted))
                if case_col is not None:
                    stmt = stmt.join(Case, Case.id == case_col)
                review.update(
                    (row_id, (rt, campaign is not None)) for row_id, rt, campaign in s.execute(stmt)
                )
    lanes = []
    for cmd in commands:
        if type(cmd) in BULK_ONLY:
            lanes.append(Lane.BULK)
            continue
        rt, bulk = review.get(entity_id(cmd), (None, False))
        lanes.append(lane_for(rt, bulk=bulk))
    return lanes
