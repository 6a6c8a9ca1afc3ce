"""Cancellation reaches the far side: a withdrawn or reversed case sets its open CDex Tasks to
``cancelled`` at the provider's FHIR server (the simulator's, here), retried on transient
errors, given up loudly on permanent ones; redials of a busy fax line stop."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from connectors.base import CancelsRequest, Rejected, TransientError
from connectors.fhir.cdex import CDexTaskRequester
from connectors.retry import no_wait_retrying
from simulator.app import Simulator
from simulator.providers import ProviderBehaviour
from simulator.serving import asgi_client
from storage.db import transaction
from storage.models import Attempt, AuditEvent, Case
from tests.conftest import at, notification
from tests.fakes import FakeRequester, fax_failed, make_container
from worker import services
from worker.domain.clock import VirtualClock
from worker.domain.types import ChannelKind
from worker.scheduler import tick
from worker.wiring import Container

START = at("2026-04-17T09:00:00-04:00")
NPI = "1234567893"
FHIR_BASE = "http://testserver/fhir"


def _fhir_notification() -> dict[str, Any]:
    provider = dict(notification()["providers"][0])
    provider["channels"] = [{"kind": "fhir", "base_url": FHIR_BASE}]
    return notification(providers=[provider])


def _attempt(c: Container) -> Attempt:
    with transaction(c.sessions) as s:
        a = s.scalars(select(Attempt)).one()
        s.expunge(a)
        return a


def _audit_kinds(c: Container) -> list[str]:
    with transaction(c.sessions) as s:
        return list(s.scalars(select(AuditEvent.kind).order_by(AuditEvent.at)))


@dataclass
class Env:
    c: Container
    clock: VirtualClock
    sim: Simulator
    client: httpx.Client

    def task(self, external_id: str) -> dict[str, Any]:
        body: dict[str, Any] = self.client.get(external_id).json()
        return body


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    """Our pipeline (inline) with the real CDex requester talking to the simulator's FHIR
    server, both on one virtual clock."""
    c, clock, _fax, _d = make_container(tmp_path, START)
    sim = Simulator(
        clock=clock,
        webhook_url="http://carrier.invalid/webhooks",
        behaviours={"ok-clinic": ProviderBehaviour(reply_delay_minutes=60)},
        directory={NPI: "ok-clinic"},
        http=httpx.Client(transport=httpx.MockTransport(lambda r: httpx.Response(404))),
        public_base_url="http://testserver",
    )
    client = asgi_client(sim.app)
    c.requesters = {
        **c.requesters,
        ChannelKind.FHIR: CDexTaskRequester(
            client,
            requester_name="Acme Health",
            requester_identifier="carrier-1",
            retrying=no_wait_retrying,
            clock=clock,
        ),
    }
    try:
        yield Env(c, clock, sim, client)
    finally:
        client.close()
        c.close()


def test_cdex_requester_can_withdraw() -> None:
    """CDexTaskRequester satisfies CancelsRequest; the fax fake does not."""
    cdex = CDexTaskRequester(httpx.Client(), requester_name="a", requester_identifier="b")
    assert isinstance(cdex, CancelsRequest)
    assert not isinstance(FakeRequester(), CancelsRequest)


def test_withdrawal_cancels_the_open_task_and_the_provider_never_answers(env: Env) -> None:
    """Case cancelled right after the Task went out: the Task reads ``cancelled`` with our
    reason at the FHIR server, the withdrawal is audited, and the provider, who had not yet
    seen it, never counts it nor answers; no poll or attempt follows."""
    c = env.c
    case_id = services.intake(c, _fhir_notification()).case_id
    a = _attempt(c)
    assert a.channel == "fhir" and a.external_id is not None
    assert env.task(a.external_id)["status"] == "requested"
    assert services.cancel_case(c, case_id, "withdrawn")
    task = env.task(a.external_id)
    assert task["status"] == "cancelled" and "withdrawn" in task["statusReason"]["text"]
    assert "attempt.withdrawn" in _audit_kinds(c)
    assert _attempt(c).cancel_at is None
    env.clock.advance(3 * 3600)
    env.sim.fire_due()
    tick(c)
    assert env.sim.delivered_count("ok-clinic") == 0
    assert env.task(a.external_id)["status"] == "cancelled"
    with transaction(c.sessions) as s:
        assert len(list(s.scalars(select(Attempt)))) == 1


def test_a_task_already_in_progress_is_cancelled_and_its_reply_never_comes(env: Env) -> None:
    """The provider accepted the Task (in-progress) before the case was reversed: it is still
    cancelled, and the records it had scheduled are not delivered."""
    c = env.c
    case_id = services.intake(c, _fhir_notification()).case_id
    a = _attempt(c)
    env.clock.advance(120)
    env.sim.fire_due()
    assert env.task(a.external_id or "")["status"] == "in-progress"
    assert services.cancel_case(c, case_id, "reversed")
    env.clock.advance(2 * 3600)
    task = env.task(a.external_id or "")
    assert task["status"] == "cancelled" and "output" not in task


def test_a_finished_task_is_left_alone(env: Env) -> None:
    """A Task the provider completed is not touched (nothing to withdraw), and this is
    audited as not needed."""
    c = env.c
    services.intake(c, _fhir_notification())
    a = _attempt(c)
    env.clock.advance(2 * 3600)
    assert env.task(a.external_id or "")["status"] == "completed"
    requester = c.requesters[ChannelKind.FHIR]
    assert isinstance(requester, CancelsRequest)
    assert requester.cancel(a.external_id or "", "x") is False
    assert env.task(a.external_id or "")["status"] == "completed"


@dataclass
class Flaky(FakeRequester):
    """A FHIR requester whose withdrawals fail as told."""

    kind: ChannelKind = ChannelKind.FHIR
    cancel_errors: list[Exception] = field(default_factory=list)
    cancelled: list[str] = field(default_factory=list)

    def cancel(self, external_id: str, reason: str) -> bool:
        if self.cancel_errors:
            raise self.cancel_errors.pop(0)
        self.cancelled.append(external_id)
        return True


def test_a_transient_failure_is_retried_by_the_cancel_timer(tmp_path: Path) -> None:
    """The FHIR server is down when the case is withdrawn: the withdrawal waits on
    ``attempts.cancel_at`` and the scheduler's timer runs it again until it succeeds."""
    c, clock, _fax, _d = make_container(tmp_path, START)
    flaky = Flaky(cancel_errors=[TransientError("503"), TransientError("timeout")])
    c.requesters = {**c.requesters, ChannelKind.FHIR: flaky}
    try:
        case_id = services.intake(c, _fhir_notification()).case_id
        external_id = _attempt(c).external_id
        assert services.cancel_case(c, case_id, "withdrawn")
        assert flaky.cancelled == [] and _attempt(c).cancel_at == START + timedelta(minutes=5)
        for _ in range(2):
            clock.advance(300)
            tick(c)
        assert flaky.cancelled == [external_id] and _attempt(c).cancel_at is None
    finally:
        c.close()


def test_a_permanent_failure_is_given_up_and_flagged(tmp_path: Path) -> None:
    """The server refuses the withdrawal: no more tries, audited, the case flagged for ops
    (someone must tell the provider)."""
    c, _clock, _fax, _d = make_container(tmp_path, START)
    c.requesters = {
        **c.requesters,
        ChannelKind.FHIR: Flaky(cancel_errors=[Rejected("HTTP 409 the Task is already completed")]),
    }
    try:
        case_id = services.intake(c, _fhir_notification()).case_id
        assert services.cancel_case(c, case_id, "withdrawn")
        assert _attempt(c).cancel_at is None
        assert "attempt.withdraw_failed" in _audit_kinds(c)
        with transaction(c.sessions) as s:
            case = s.get(Case, case_id)
            assert case is not None and "Task" in (case.attention or "")
    finally:
        c.close()


def test_a_withdrawal_refused_joins_the_case_s_other_reasons(tmp_path: Path) -> None:
    """Ops must both tell the agency (set before) and tell the provider: the refused withdrawal
    adds its reason instead of replacing the one already there."""
    c, _clock, _fax, _d = make_container(tmp_path, START)
    c.requesters = {
        **c.requesters,
        ChannelKind.FHIR: Flaky(cancel_errors=[Rejected("HTTP 409 the Task is already completed")]),
    }
    earlier = "the packet's fax was under way when the case was withdrawn: tell the agency"
    try:
        case_id = services.intake(c, _fhir_notification()).case_id
        with transaction(c.sessions) as s:
            s.get(Case, case_id).attention = earlier  # type: ignore[union-attr]
        assert services.cancel_case(c, case_id, "withdrawn")
        with transaction(c.sessions) as s:
            reasons = (s.get(Case, case_id).attention or "").split("; ")  # type: ignore[union-attr]
        assert reasons[0] == earlier and len(reasons) == 2 and "Task" in reasons[1]
    finally:
        c.close()


def test_cancel_stops_a_pending_redial(tmp_path: Path) -> None:
    """A busy line left a redial pending; the case is withdrawn: the line is never dialled
    again, and a fax attempt (which cannot be called back) is not 'withdrawn'."""
    c, clock, fax, _d = make_container(tmp_path, START)
    try:
        case_id = services.intake(c, notification()).case_id
        a = _attempt(c)
        services.record_fax_status(c, fax_failed(a.external_id or "", clock.now()))
        assert _attempt(c).redial_at is not None
        assert services.cancel_case(c, case_id, "withdrawn")
        assert _attempt(c).redial_at is None and _attempt(c).cancel_at is None
        clock.advance(3 * 86400)
        tick(c)
        assert len(fax.sent) == 1
    finally:
        c.close()


def test_cdex_cancel_is_conditional_on_the_version_read() -> None:
    """The PUT carries If-Match on the version read and our reason; a 412 (the provider changed
    the Task meanwhile) is transient; a Task the server no longer has is nothing to do."""
    seen: list[httpx.Request] = []
    task = {"resourceType": "Task", "id": "t1", "status": "in-progress", "meta": {"versionId": "3"}}

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.method == "GET":
            return httpx.Response(200, json=task)
        return httpx.Response(412 if len(seen) > 2 else 200, json=json.loads(request.content))

    cdex = CDexTaskRequester(
        httpx.Client(transport=httpx.MockTransport(handler)),
        requester_name="a",
        requester_identifier="b",
        retrying=lambda: no_wait_retrying(1),
    )
    assert cdex.cancel("https://fhir.example/Task/t1", "records no longer needed") is True
    put = seen[1]
    assert (put.method, put.headers["if-match"]) == ("PUT", 'W/"3"')
    sent = json.loads(put.content)
    assert sent["status"] == "cancelled"
    assert sent["statusReason"]["text"] == "records no longer needed"
    with pytest.raises(TransientError):
        cdex.cancel("https://fhir.example/Task/t1", "x")
    gone = CDexTaskRequester(
        httpx.Client(transport=httpx.MockTransport(lambda r: httpx.Response(404))),
        requester_name="a",
        requester_identifier="b",
        retrying=no_wait_retrying,
    )
    assert gone.cancel("https://fhir.example/Task/t1", "x") is False
