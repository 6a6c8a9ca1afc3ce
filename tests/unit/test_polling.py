"""When an open CDex Task is polled: HRex's cadence (1 minute, every 5 minutes for half an
hour, hourly), every 4 hours once a Task has been open for a working day, and always one
poll shortly before anything acts on the answer: the request's next attempt and the packet's
assembly (worker/domain/polling.py)."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from connectors.base import PollResult
from connectors.fhir.cdex import SLOW_AFTER, SLOW_POLL, CDexTaskRequester
from connectors.retry import no_wait_retrying
from simulator.app import Simulator
from simulator.providers import ProviderBehaviour
from simulator.serving import asgi_client
from storage.db import transaction
from storage.models import Attempt, Case, RecordRequest
from tests.conftest import at, notification
from tests.fakes import RecordedPolls, make_container
from worker import services
from worker.domain.clock import VirtualClock
from worker.domain.polling import LOOK_AHEAD, MIN_GAP, next_poll_at
from worker.domain.types import ChannelKind
from worker.scheduler import next_due, tick
from worker.wiring import Container

NOW = at("2026-04-20T10:00:00-04:00")
H = timedelta(hours=1)


def test_the_cadence_alone_when_nothing_acts_before_it() -> None:
    assert next_poll_at(NOW, 4 * H, []) == NOW + 4 * H
    assert next_poll_at(NOW, 4 * H, [None, NOW + 9 * H]) == NOW + 4 * H


def test_the_poll_is_brought_forward_to_just_before_what_acts_on_it() -> None:
    """The next attempt in 2½ hours: read at 2h20, not at 4 hours (after the attempt)."""
    attempt = NOW + 2.5 * H
    assert next_poll_at(NOW, 4 * H, [attempt]) == attempt - LOOK_AHEAD
    assert next_poll_at(NOW, 4 * H, [NOW + 3 * H, attempt]) == attempt - LOOK_AHEAD


def test_never_sooner_than_the_gap_after_this_poll() -> None:
    """An assembly 40 minutes away is served by this poll and the next one an hour on."""
    assert next_poll_at(NOW, 4 * H, [NOW + 40 * timedelta(minutes=1)]) == NOW + MIN_GAP


def test_an_instant_this_poll_already_serves_is_passed_over() -> None:
    assert next_poll_at(NOW, 4 * H, [NOW + LOOK_AHEAD, NOW - H]) == NOW + 4 * H


def test_the_first_quick_polls_are_kept() -> None:
    """The cadence's 5-minute polls of the first half hour are not stretched to the gap."""
    minutes = timedelta(minutes=1)
    assert next_poll_at(NOW, 5 * minutes, [NOW + 30 * minutes]) == NOW + 5 * minutes


# --- the pipeline: a provider whose FHIR server takes every Task and never answers ------------

START = at("2026-04-20T09:00:00-04:00")  # a Monday
NPI = "1234567893"


@dataclass
class Run:
    c: Container
    polls: RecordedPolls
    attempts: list[Attempt]
    assemble_at: datetime


def _silent_provider(clock: VirtualClock) -> tuple[Simulator, httpx.Client, CDexTaskRequester]:
    """The simulated FHIR server of a provider that takes every Task and never answers, and
    the real CDex requester talking to it in-process (close the client)."""
    sim = Simulator(
        clock=clock,
        webhook_url="http://carrier.invalid/webhooks",
        behaviours={"silent": ProviderBehaviour(respond_after_attempts=None)},
        directory={NPI: "silent"},
        http=httpx.Client(transport=httpx.MockTransport(lambda r: httpx.Response(404))),
        public_base_url="http://testserver",
    )
    client = asgi_client(sim.app)
    cdex = CDexTaskRequester(
        client,
        requester_name="Acme Health",
        requester_identifier="carrier-1",
        retrying=no_wait_retrying,
        clock=clock,
    )
    return sim, client, cdex


def _run(tmp_path: Path, review_type: str) -> Run:
    c, clock, _fax, _d = make_container(tmp_path, START)
    sim, client, cdex = _silent_provider(clock)
    polls = RecordedPolls(cdex, clock)
    c.requesters = {**c.requesters, ChannelKind.FHIR: polls}  # type: ignore[dict-item]
    provider = dict(notification()["providers"][0], npi=NPI)
    provider["channels"] = [{"kind": "fhir", "base_url": "http://testserver/fhir"}]
    doc = notification(providers=[provider], received_at=START.isoformat(), review_type=review_type)
    try:
        case_id = services.intake(c, doc).case_id
        with transaction(c.sessions) as s:
            case = s.get(Case, case_id)
            assert case is not None
            assemble_at = case.assemble_at
        while clock.now() < assemble_at + H:
            clock.advance(300)
            sim.fire_due()
            tick(c)
        with transaction(c.sessions) as s:
            attempts = list(s.scalars(select(Attempt).order_by(Attempt.number)))
            (request,) = s.scalars(select(RecordRequest)).all()
            assert request.status == "unresponsive"
            s.expunge_all()
        return Run(c, polls, attempts, assemble_at)
    finally:
        client.close()
        c.close()


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Run]:
    """The run of each review type, made once for the module's tests (three days of
    five-minute steps each)."""
    made: dict[str, Run] = {}

    def run_of(review_type: str) -> Run:
        if review_type not in made:
            made[review_type] = _run(tmp_path_factory.mktemp(review_type), review_type)
        return made[review_type]

    return run_of


@pytest.mark.parametrize("review_type", ["standard", "expedited"])
def test_a_silent_provider_is_read_just_before_each_attempt_and_the_assembly(
    runs: Callable[[str], Run], review_type: str
) -> None:
    run = runs(review_type)
    assert len(run.attempts) >= 3  # the policy's three attempts, each a Task
    every = run.polls.every()
    step = timedelta(seconds=300)  # the test's clock moves in 5-minute steps
    later = [a.sent_at for a in run.attempts[1:]] + [run.assemble_at]
    for instant in later:  # what the pipeline acts on is at most an hour old, as when hourly
        assert instant is not None
        freshest = max(t for t in every if t <= instant)
        assert instant - freshest <= MIN_GAP, instant
    assert run.assemble_at - max(every) <= LOOK_AHEAD + step  # the assembly's own last read
    for a in run.attempts:  # HRex's limits on each Task's polls
        times = run.polls.at[a.external_id or ""]
        assert a.sent_at is not None
        assert times[0] - a.sent_at <= timedelta(minutes=1) + step
        gaps = [(t - a.sent_at, b - t) for t, b in itertools.pairwise(times)]
        assert all(gap >= timedelta(minutes=5) for _, gap in gaps)
        assert all(gap >= MIN_GAP - step for since, gap in gaps if since >= timedelta(minutes=30))
        assert all(gap <= SLOW_POLL + step for _, gap in gaps)


def test_a_task_open_for_a_working_day_is_read_every_four_hours(
    runs: Callable[[str], Run],
) -> None:
    """A standard review's first Task, left open over three business days: after the first
    working day it is read every 4 hours, besides the reads before the next attempts."""
    run = runs("standard")
    first = run.attempts[0]
    assert first.sent_at is not None
    times = run.polls.at[first.external_id or ""]
    slow = [b - t for t, b in itertools.pairwise(times) if t - first.sent_at >= SLOW_AFTER]
    assert slow and sum(gap >= SLOW_POLL - timedelta(seconds=300) for gap in slow) >= len(slow) // 2
    hourly = (run.assemble_at - first.sent_at) / H  # what hourly polling would have made
    assert len(times) < hourly / 2


# --- a poll that finds nothing new, and what may change while it is in flight ----------------


@dataclass
class Interfering:
    """A CDex requester that, while a poll is in flight, lets ``meanwhile`` change the
    database (what another worker may do between the poll's read and its write)."""

    cdex: CDexTaskRequester
    meanwhile: Callable[[], None] | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.cdex, name)

    def poll(self, external_id: str) -> PollResult:
        result = self.cdex.poll(external_id)
        if self.meanwhile is not None:
            self.meanwhile()
        return result


def _interfered(
    tmp_path: Path,
) -> tuple[Container, VirtualClock, httpx.Client, Interfering, dict[str, Any]]:
    """A container whose FHIR requester is the silent provider's, interfered with, and a
    notification naming that provider (close the client and the container)."""
    c, clock, _fax, _d = make_container(tmp_path, START)
    _sim, client, cdex = _silent_provider(clock)
    requester = Interfering(cdex)
    c.requesters = {**c.requesters, ChannelKind.FHIR: requester}  # type: ignore[dict-item]
    provider = dict(notification()["providers"][0], npi=NPI)
    provider["channels"] = [{"kind": "fhir", "base_url": "http://testserver/fhir"}]
    return (
        c,
        clock,
        client,
        requester,
        notification(providers=[provider], received_at=START.isoformat()),
    )


def _first_task_posted(c: Container, clock: VirtualClock, doc: dict[str, Any]) -> str:
    """Take in ``doc`` and move the clock timer to timer until its first attempt's Task is
    posted; returns that attempt's id."""
    services.intake(c, doc)
    for _ in range(20):  # timer to timer, until the first attempt's Task is posted
        with transaction(c.sessions) as s:
            if s.scalar(select(Attempt.poll_at)) is not None:
                break
        due = next_due(c)
        assert due is not None
        clock.advance_to(max(due, clock.now()))
        tick(c)
    with transaction(c.sessions) as s:
        (attempt_id,) = s.scalars(select(Attempt.id)).all()
    return str(attempt_id)


@pytest.mark.parametrize("meanwhile", [None, "request_closed", "attempt_failed"])
def test_a_poll_that_finds_nothing_new_sets_only_the_next_poll_unless_something_changed(
    tmp_path: Path, meanwhile: str | None
) -> None:
    """A silent provider's Task is still 'requested': the poll sets the next poll by the
    cadence and changes nothing else. If, while it was in flight, the request was closed (a
    faxed reply came) or the attempt failed, the poll is not rescheduled: its answer is taken
    whole, and nothing is polled again."""
    from worker.commands import PollTask

    c, clock, client, requester, doc = _interfered(tmp_path)
    try:
        attempt_id = _first_task_posted(c, clock, doc)
        for _ in range(2):  # the first poll reads the Task accepted; the second, nothing new
            with transaction(c.sessions) as s:
                a = s.get(Attempt, attempt_id)
                assert a is not None and a.poll_at is not None
                clock.advance_to(a.poll_at)
                before = (a.outcome, a.completed_at, a.failure_reason)
            if before[0] == "delivered":
                break
            services.run_command(c, PollTask(attempt_id))
        assert before[0] == "delivered"

        def change() -> None:
            with transaction(c.sessions) as s:
                a = s.get(Attempt, attempt_id)
                assert a is not None
                if meanwhile == "request_closed":
                    a.request.status = "received"
                else:
                    a.outcome = "failed"

        requester.meanwhile = change if meanwhile else None
        follow = services.run_command(c, PollTask(attempt_id))
        with transaction(c.sessions) as s:
            a = s.get(Attempt, attempt_id)
            assert a is not None
            if meanwhile is None:
                assert list(follow) == []
                assert a.poll_at == clock.now() + timedelta(minutes=5)  # the cadence's next
                assert (a.outcome, a.completed_at, a.failure_reason) == before
            else:
                assert a.poll_at is None  # the whole answer was taken: no more polls
    finally:
        client.close()
        c.close()


def test_a_chase_joined_while_a_poll_is_in_flight_bounds_the_next_poll(tmp_path: Path) -> None:
    """A Task open for a working day is read every 4 hours. If, while a poll is in flight, the
    same member's review at the same provider joins this request's chase (its planning gives
    the polled request a chase), the next poll is set before that review's packet assembly,
    not 4 hours on: the poll reads the request's chase again when it writes."""
    from worker.commands import PollTask
    from worker.services.coalescing import join_chase

    c, clock, client, requester, first = _interfered(tmp_path)
    try:
        attempt_id = _first_task_posted(c, clock, first)
        while True:  # poll as the cadence says until the Task has been open a working day
            with transaction(c.sessions) as s:
                a = s.get(Attempt, attempt_id)
                assert a is not None and a.poll_at is not None and a.sent_at is not None
                polled_request, sent_at = a.request_id, a.sent_at
                clock.advance_to(a.poll_at)
            if clock.now() - sent_at >= SLOW_AFTER:
                break
            services.run_command(c, PollTask(attempt_id))
        later = dict(first, notification_id="OPP-2026-000999", review_type="expedited")
        later["received_at"] = clock.now().isoformat()
        review = services.intake(c, later).case_id
        assembly = clock.now() + 2 * H

        def join() -> None:  # the review's first planning, as plan_outreach runs it
            with transaction(c.sessions) as s:
                (r,) = s.scalars(select(RecordRequest).where(RecordRequest.case_id == review))
                r.case.assemble_at = assembly
                join_chase(s, r, clock.now())
                assert r.chase_id == polled_request

        requester.meanwhile = join
        services.run_command(c, PollTask(attempt_id))
        with transaction(c.sessions) as s:
            a = s.get(Attempt, attempt_id)
            assert a is not None and a.request.chase_id == polled_request
            assert a.poll_at == assembly - LOOK_AHEAD  # not clock.now() + SLOW_POLL
    finally:
        client.close()
        c.close()
