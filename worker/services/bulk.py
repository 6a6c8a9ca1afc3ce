"""The bulk lane's batches: a campaign's first attempts, many requests a transaction.

The scheduler opens a campaign's cases 500 a tick (``opening.open_in_bulk``). Their requests'
first attempts then go out in ``FirstAttempts`` messages of up to :data:`BATCH` requests
instead of one ``PlanOutreach`` → ``SendAttempt`` → ``PlanOutreach`` chain per request: five
transactions per batch (plan, read the letters, start the transmissions, write the answers,
plan what follows) instead of five per request.

Each step runs the one-request code of ``outreach.py`` for every member of the batch, so a
batched attempt is planned, audited, held while on the wire and recorded exactly as a single
one. A batch never holds a request back: a step that fails before anything went out splits
the batch into one message per request (``PlanOutreach`` or ``SendAttempt``), which then runs,
retries and dead-letters on its own. Once a transmission is counted, it is treated as a
single send's would be (an error the connector did not translate leaves the attempt held
until its send lease ends; it is then looked for at the far side, never sent blindly), and a
batch slowed by its vendor hands what it has not sent to single messages before those
attempts' send leases run out.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence

import structlog
from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session, sessionmaker

from connectors.base import RecordsRequester
from storage.db import transaction
from storage.models import Attempt, RecordRequest
from storage.objects import ObjectStore
from worker.commands import Command, FirstAttempts, PlanOutreach, SendAttempt
from worker.domain.clock import Clock
from worker.domain.lifecycle import SEND_LEASE, StatusChecks
from worker.domain.types import ChannelKind
from worker.services.coalescing import lock_first_plannings, members_alone
from worker.services.outreach import (
    REQUEST_STATE,
    WITH_CASE,
    Answer,
    Outgoing,
    letter_draft,
    look_first,
    plan_request,
    start_transmission,
    transmit,
    write_answer,
)

log = structlog.get_logger("goodfaith.services")

#: wall time a batch spends sending before it hands the rest to single messages: well inside
#: the send lease each of its attempts took when its transmission was started
SEND_BUDGET = SEND_LEASE / 2

#: requests a ``FirstAttempts`` message carries: a batch's five transactions cost about what
#: one request's did alone. Measured (3,000-request campaign, two cores): 25 → 110.7 first
#: attempts/s, 50 → 120.6/s, 100 → 120.1/s; 50 sends take well under a second
BATCH = 50


def batched(commands: Iterable[Command]) -> list[Command]:
    """The scheduler's bulk openings: each ``PlanOutreach`` (a campaign request's first
    planning) goes in a ``FirstAttempts`` of up to :data:`BATCH`; other commands as they are."""
    cmds = list(commands)
    plans = [cmd.request_id for cmd in cmds if isinstance(cmd, PlanOutreach)]
    batches: list[Command] = [
        FirstAttempts(",".join(plans[i : i + BATCH])) for i in range(0, len(plans), BATCH)
    ]
    return [cmd for cmd in cmds if not isinstance(cmd, PlanOutreach)] + batches


def first_attempts(
    cmd: FirstAttempts,
    *,
    sessions: sessionmaker[Session],
    clock: Clock,
    store: ObjectStore,
    requesters: Mapping[ChannelKind, RecordsRequester],
    media_url: Callable[[str], str],
    carrier_name: str,
    return_fax: str,
    status_checks: StatusChecks,
) -> list[Command]:
    """Plan the batch's requests; send the attempts due now; plan what follows each."""
    follow = plan_many(cmd.ids, sessions=sessions, clock=clock)
    sends = [c.attempt_id for c in follow if isinstance(c, SendAttempt)]
    rest: list[Command] = [c for c in follow if not isinstance(c, SendAttempt)]
    if not sends:
        return rest
    return rest + send_many(
        sends,
        sessions=sessions,
        clock=clock,
        store=store,
        requesters=requesters,
        media_url=media_url,
        carrier_name=carrier_name,
        return_fax=return_fax,
        status_checks=status_checks,
    )


#: the batch's requests, each with its case and attempts, locked in id order
_REQUESTS = (
    select(RecordRequest)
    .where(RecordRequest.id.in_(bindparam("ids", expanding=True)))
    .options(*REQUEST_STATE)
    .order_by(RecordRequest.id)
    .with_for_update(of=RecordRequest)
)
#: attempts with their request and case (locked in id order: ``_ATTEMPTS_LOCKED``)
_ATTEMPTS = (
    select(Attempt)
    .where(Attempt.id.in_(bindparam("ids", expanding=True)))
    .options(*WITH_CASE)
    .order_by(Attempt.id)
)
_ATTEMPTS_LOCKED = _ATTEMPTS.with_for_update(of=Attempt)


def plan_many(
    request_ids: Sequence[str], *, sessions: sessionmaker[Session], clock: Clock
) -> list[Command]:
    """``plan_outreach`` for every request, in one transaction; on any error, one
    ``PlanOutreach`` per request instead (nothing of the batch is written)."""
    now = clock.now()
    try:
        with transaction(sessions) as s:
            lock_first_plannings(s, request_ids)  # before the row locks: see coalescing.py
            requests = s.scalars(_REQUESTS, {"ids": list(request_ids)}).unique().all()
            alone = members_alone(s, requests)
            follow: list[Command] = []
            for r in requests:
                follow += plan_request(s, r, now, alone=r.id in alone)
            return follow
    except Exception as exc:
        log.warning("batch.split", step="plan", requests=len(request_ids), error=_name(exc))
        return [PlanOutreach(request_id) for request_id in request_ids]


def send_many(
    attempt_ids: Sequence[str],
    *,
    sessions: sessionmaker[Session],
    clock: Clock,
    store: ObjectStore,
    requesters: Mapping[ChannelKind, RecordsRequester],
    media_url: Callable[[str], str],
    carrier_name: str,
    return_fax: str,
    status_checks: StatusChecks,
) -> list[Command]:
    """``send_attempt`` for every attempt: their letters read in one transaction and their
    transmissions started in one, each sent, the answers written in one, and their requests
    planned again in one. Until the transmissions are counted, any error splits the batch
    into one ``SendAttempt`` each."""
    ids = {"ids": list(attempt_ids)}
    try:
        with transaction(sessions) as s:
            drafts = [
                (a.id, letter_draft(s, a, carrier_name, return_fax))
                for a in s.scalars(_ATTEMPTS, ids).unique()
            ]
        letters = {attempt_id: d.write(store) for attempt_id, d in drafts if d is not None}
        now = clock.now()
        with transaction(sessions) as s:
            outgoing: dict[str, Outgoing] = {}
            for a in s.scalars(_ATTEMPTS_LOCKED, ids).unique():
                out = start_transmission(
                    a, letters.get(a.id), now, requesters, media_url, carrier_name
                )
                if out is not None:
                    outgoing[a.id] = out
    except Exception as exc:
        log.warning("batch.split", step="send", attempts=len(attempt_ids), error=_name(exc))
        return [SendAttempt(attempt_id) for attempt_id in attempt_ids]
    answers, unanswered = _transmit_all(outgoing, requesters)
    try:
        now = clock.now()
        with transaction(sessions) as s:
            for a in s.scalars(_ATTEMPTS_LOCKED, {"ids": [*answers, *unanswered]}).unique():
                if a.id in answers:
                    out = outgoing[a.id]
                    requester = requesters[out.request.channel.kind]
                    write_answer(s, a, out.case_id, answers[a.id], requester, now, status_checks)
                else:  # not sent, or its look got no answer: free it, and try it alone
                    a.sending_until = None
    except Exception as exc:
        # As a crash after the sends: each attempt is held until its lease ends, then looked
        # for at the far side and its answer adopted (never sent twice); timers re-drive it.
        log.error("batch.unrecorded", attempts=len(answers), error=_name(exc))
        return []
    retry: list[Command] = [SendAttempt(attempt_id) for attempt_id in unanswered]
    answered = [outgoing[attempt_id].request_id for attempt_id in answers]
    return retry + (plan_many(answered, sessions=sessions, clock=clock) if answered else [])


def _transmit_all(
    outgoing: Mapping[str, Outgoing], requesters: Mapping[ChannelKind, RecordsRequester]
) -> tuple[dict[str, Answer], list[str]]:
    """Send each transmission (or look for it first: left mid-send). Returns the answers by
    attempt id, and the attempts not sent: their look got no answer, or the batch has been
    sending for :data:`SEND_BUDGET` (a slow vendor) and their send leases must not run out
    while they wait. An attempt whose send raised what the connector did not translate has
    neither: it stays held (see the module docstring)."""
    answers: dict[str, Answer] = {}
    unanswered: list[str] = []
    started = time.monotonic()
    for tried, (attempt_id, out) in enumerate(outgoing.items()):
        if tried and time.monotonic() - started > SEND_BUDGET.total_seconds():
            unanswered.append(attempt_id)  # freed, then sent alone: looked for first
            continue
        requester = requesters[out.request.channel.kind]
        answer = None
        if out.look_since is not None:
            try:
                answer = look_first(requester, out, attempt_id)
            except Exception as exc:
                log.warning("attempt.look_unanswered", attempt_id=attempt_id, error=_name(exc))
                unanswered.append(attempt_id)
                continue
        try:
            answers[attempt_id] = answer or transmit(requester, out)
        except Exception as exc:
            log.error("attempt.send_unanswered", attempt_id=attempt_id, error=_name(exc))
    return answers, unanswered


def _name(exc: BaseException) -> str:
    return type(exc).__name__
