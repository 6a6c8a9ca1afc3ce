"""CDex Task notifications (FHIR R4 Subscriptions Backport, the HRex Task topic): after a Task,
the requester asks for a Subscription; the provider's server notifies our endpoint when the Task
changes and we read it at once; polls become a safety net (connectors/fhir/subscriptions.py,
worker/domain/polling.py ``poll_delay``, ``POST /v1/webhooks/cdex/{key}``)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from starlette.responses import Response

from api.app import create_app
from connectors.base import RecordsRequest, TransientError, WebhookError
from connectors.fhir.cdex import CDexTaskRequester
from connectors.fhir.subscriptions import (
    BACKPORT,
    HREX_TASK_TOPIC,
    TaskNotifications,
    build_subscription,
    parse_notification,
    same_task,
)
from connectors.registry import task_notify_url
from connectors.retry import no_wait_retrying
from simulator.app import Simulator
from simulator.cdex import CDexFarSide
from simulator.events import Fired
from simulator.providers import ProviderBehaviour
from simulator.serving import asgi_client
from storage.db import transaction
from storage.models import Attempt, AuditEvent, Document, RecordRequest
from tests.conftest import at, notification
from tests.fakes import RecordedPolls, make_container
from worker import services
from worker.domain.clock import VirtualClock
from worker.domain.lifecycle import LEASE
from worker.domain.polling import NOTIFIED_EVERY, NOTIFIED_FIRST, poll_delay
from worker.domain.types import Channel, ChannelKind
from worker.scheduler import next_due, tick
from worker.wiring import Container, task_notify_token

NOW = at("2026-04-20T10:00:00-04:00")
MIN = timedelta(minutes=1)
H = timedelta(hours=1)
BASE = "https://fhir.provider.example/r4"
TASK = f"{BASE}/Task/t-1"


# --- the wire: Subscription and notifications --------------------------------------------------


def test_the_subscription_asks_for_one_tasks_changes_id_only_with_our_token() -> None:
    end = at("2026-06-01T00:00:00+00:00")
    sub = build_subscription(
        "t-1", "https://us.example/v1/webhooks/cdex/k1", "tok", end, reason="r"
    )
    assert sub["resourceType"] == "Subscription" and sub["status"] == "requested"
    assert sub["criteria"] == HREX_TASK_TOPIC
    assert sub["meta"]["profile"] == [f"{BACKPORT}/backport-subscription"]
    (criteria,) = sub["_criteria"]["extension"]
    assert criteria == {
        "url": f"{BACKPORT}/backport-filter-criteria",
        "valueString": "Task?_id=t-1",
    }
    channel = sub["channel"]
    assert channel["type"] == "rest-hook"
    assert channel["endpoint"] == "https://us.example/v1/webhooks/cdex/k1"
    assert channel["payload"] == "application/fhir+json"
    assert channel["_payload"]["extension"][0]["valueCode"] == "id-only"
    assert channel["header"] == ["Authorization: Bearer tok"]
    assert sub["end"] == "2026-06-01T00:00:00Z"


def _backport(kind: str, *focus: str) -> bytes:
    """A notification as the CDex IG's example shows it (R4 backport: Parameters)."""
    parameters: list[dict[str, Any]] = [
        {
            "name": "subscription",
            "valueReference": {"reference": "https://p.example/Subscription/s"},
        },
        {"name": "topic", "valueCanonical": HREX_TASK_TOPIC},
        {"name": "status", "valueCode": "active"},
        {"name": "type", "valueCode": kind},
        {"name": "events-since-subscription-start", "valueString": "17"},
    ]
    for number, reference in enumerate(focus, start=17):
        parameters.append(
            {
                "name": "notification-event",
                "part": [
                    {"name": "event-number", "valueString": str(number)},
                    {"name": "timestamp", "valueInstant": "2024-01-18T01:19:38Z"},
                    {"name": "focus", "valueReference": {"reference": reference}},
                ],
            }
        )
    status = {"resourceType": "Parameters", "parameter": parameters}
    bundle = {"resourceType": "Bundle", "type": "history", "entry": [{"resource": status}]}
    return json.dumps(bundle).encode()


def test_a_backport_event_names_its_task() -> None:
    note = parse_notification(_backport("event-notification", TASK))
    assert note.is_event and note.focus == (TASK,)


def test_a_handshake_and_a_heartbeat_are_not_events() -> None:
    for kind in ("handshake", "heartbeat", "query-status"):
        note = parse_notification(_backport(kind))
        assert not note.is_event and note.focus == ()


def test_an_r4b_subscription_status_is_read_too() -> None:
    status = {
        "resourceType": "SubscriptionStatus",
        "type": "event-notification",
        "notificationEvent": [{"eventNumber": "3", "focus": {"reference": "Task/t-1"}}],
    }
    body = json.dumps(
        {"resourceType": "Bundle", "type": "history", "entry": [{"resource": status}]}
    )
    note = parse_notification(body.encode())
    assert note.is_event and note.focus == ("Task/t-1",)


def test_a_full_resource_notification_names_the_task_by_its_entry() -> None:
    bundle = json.loads(_backport("event-notification"))
    bundle["entry"].append({"fullUrl": TASK, "resource": {"resourceType": "Task", "id": "t-1"}})
    assert parse_notification(json.dumps(bundle).encode()).focus == (TASK,)


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[]",
        b'{"resourceType": "Task"}',
        b'{"resourceType": "Bundle", "type": "history", "entry": []}',
        b'{"resourceType": "Bundle", "entry": [{"resource": {"resourceType": "Task"}}]}',
        _backport("no-such-type"),
    ],
)
def test_anything_else_is_refused(body: bytes) -> None:
    with pytest.raises(WebhookError):
        parse_notification(body)


def test_a_reference_names_the_task_absolute_relative_or_versioned() -> None:
    assert same_task(TASK, TASK)
    assert same_task(TASK + "/_history/3", TASK)
    assert same_task("Task/t-1", TASK)
    assert not same_task("Task/t-2", TASK)
    assert not same_task("https://other.example/r4/Task/t-1", TASK)
    assert not same_task("Patient/t-1", TASK)


# --- the requester asks for the Subscription ----------------------------------------------------


@dataclass
class FhirServer:
    """A provider's FHIR server over MockTransport: makes Tasks; answers Subscriptions with
    ``subscription`` (status, body) — or raises ``error`` — and records every request."""

    subscription: tuple[int, dict[str, Any]] = (201, {})
    error: Exception | None = None
    seen: list[httpx.Request] = field(default_factory=list)

    deleted: int = 204  # the answer to DELETE [base]/Subscription/<id>

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.seen.append(request)
        if request.url.path.endswith("/Task"):
            return httpx.Response(201, json={"resourceType": "Task", "id": "t-1"})
        if request.method == "DELETE":
            return httpx.Response(self.deleted)
        if self.error is not None:
            raise self.error
        status, extra = self.subscription
        body = {**json.loads(request.content), "id": "s-1", "status": "active", **extra}
        return httpx.Response(status, json=body)


def _send(server: FhirServer, notifications: TaskNotifications | None) -> Any:
    return _requester(server, notifications).send(REQUEST)


def _requester(server: FhirServer, notifications: TaskNotifications | None) -> CDexTaskRequester:
    clock = VirtualClock(NOW)
    return CDexTaskRequester(
        httpx.Client(transport=httpx.MockTransport(server)),
        requester_name="Acme Health",
        requester_identifier="carrier-1",
        retrying=no_wait_retrying,
        clock=clock,
        notifications=notifications,
    )


REQUEST = RecordsRequest(
    idempotency_key="key-1",
    reference="GF-REQ-0001",
    channel=Channel(ChannelKind.FHIR, "https://fhir.provider.example/r4", owner_id="1234567893"),
    document_url="https://carrier.example/letters/a.pdf",
    member_id="M1",
    requester="Acme Health",
    purpose="External review (958 CMR 3.409)",
)


NOTIFY = TaskNotifications(
    endpoint=partial(task_notify_url, "https://carrier.example"),
    token=partial(task_notify_token, "secret"),
    lifetime=timedelta(days=45),
)


def test_send_subscribes_to_the_task_it_made() -> None:
    server = FhirServer()
    receipt = _send(server, NOTIFY)
    assert receipt.external_id == TASK
    assert receipt.notified_until == NOW + timedelta(days=45)
    post = server.seen[-1]
    assert str(post.url) == "https://fhir.provider.example/r4/Subscription"
    sub = json.loads(post.content)
    assert sub["_criteria"]["extension"][0]["valueString"] == "Task?_id=t-1"
    assert sub["channel"]["endpoint"] == "https://carrier.example/v1/webhooks/cdex/key-1"
    token = task_notify_token("secret", "key-1")
    assert sub["channel"]["header"] == [f"Authorization: Bearer {token}"]
    assert "M1" not in post.content.decode()  # no PHI: the Task's id and our endpoint only


def test_the_receipt_names_the_subscription_to_end_later() -> None:
    assert _send(FhirServer(), NOTIFY).subscription == f"{BASE}/Subscription/s-1"
    odd = _send(FhirServer(subscription=(201, {"id": "../Task/t-1"})), NOTIFY)
    assert odd.subscription is None and odd.notified_until is not None  # it ends by itself


@pytest.mark.parametrize(
    ("status", "ended"), [(204, True), (200, True), (404, False), (410, False)]
)
def test_ending_a_subscription_deletes_it(status: int, ended: bool) -> None:
    server = FhirServer(deleted=status)
    assert _requester(server, NOTIFY).end_notifications(f"{BASE}/Subscription/s-1") is ended
    (delete,) = server.seen
    assert delete.method == "DELETE" and str(delete.url) == f"{BASE}/Subscription/s-1"


def test_a_subscription_that_cannot_be_ended_says_so() -> None:
    with pytest.raises(TransientError):
        _requester(FhirServer(deleted=503), NOTIFY).end_notifications(f"{BASE}/Subscription/s-1")


def test_a_server_that_ends_the_subscription_sooner_is_taken_at_its_word() -> None:
    server = FhirServer(subscription=(201, {"end": "2026-04-25T00:00:00Z"}))
    assert _send(server, NOTIFY).notified_until == at("2026-04-25T00:00:00+00:00")


@pytest.mark.parametrize(
    "server",
    [
        FhirServer(subscription=(404, {"resourceType": "OperationOutcome"})),
        FhirServer(subscription=(422, {"resourceType": "OperationOutcome"})),
        FhirServer(subscription=(503, {})),
        FhirServer(subscription=(201, {"status": "error"})),
        FhirServer(subscription=(201, {"resourceType": "OperationOutcome"})),
        FhirServer(error=httpx.ConnectTimeout("slow")),
    ],
    ids=["not-supported", "refused", "down", "status-error", "not-a-subscription", "timeout"],
)
def test_a_refused_subscription_leaves_the_task_sent_and_polled(server: FhirServer) -> None:
    receipt = _send(server, NOTIFY)
    assert receipt.external_id == TASK and receipt.notified_until is None


def test_an_https_server_is_not_asked_to_notify_a_plain_http_endpoint() -> None:
    """Our bearer token would cross the internet in clear: the Task is polled instead."""
    server = FhirServer()
    plain = TaskNotifications(
        endpoint=partial(task_notify_url, "http://127.0.0.1:8000"),
        token=partial(task_notify_token, "secret"),
    )
    assert _send(server, plain).notified_until is None
    assert [r.url.path for r in server.seen] == ["/r4/Task"]


def test_without_notifications_no_subscription_is_asked_for() -> None:
    server = FhirServer()
    assert _send(server, None).notified_until is None
    assert [r.url.path for r in server.seen] == ["/r4/Task"]


# --- the cadence of a notified Task -------------------------------------------------------------


def test_a_notified_task_is_polled_only_as_a_safety_net() -> None:
    until = NOW + 30 * 24 * H
    assert poll_delay(MIN, timedelta(0), until, NOW) == NOTIFIED_FIRST
    assert poll_delay(5 * MIN, 10 * MIN, until, NOW) == NOTIFIED_FIRST - 10 * MIN
    assert poll_delay(H, 2 * H, until, NOW) == NOTIFIED_EVERY
    assert poll_delay(24 * H, 2 * H, until, NOW) == 24 * H  # never sooner than the cadence


def test_without_notifications_or_once_they_end_the_cadence_is_the_channels() -> None:
    assert poll_delay(5 * MIN, 10 * MIN, None, NOW) == 5 * MIN
    assert poll_delay(5 * MIN, 10 * MIN, NOW, NOW) == 5 * MIN
    assert poll_delay(H, 2 * H, NOW - MIN, NOW) == H


# --- the pipeline: our endpoint, the simulated server, the polls ---------------------------------

START = at("2026-04-20T09:00:00-04:00")  # a Monday
NPI = "1234567893"


@dataclass
class Pipeline:
    c: Container
    clock: VirtualClock
    sim: Simulator
    side: CDexFarSide
    polls: RecordedPolls
    case_id: str


@pytest.fixture
def pipeline(tmp_path: Path) -> Any:
    """Our container and API, and the simulated FHIR server of a provider answering 3 hours
    after it takes a Task up; the server's notifications reach our API in-process."""
    c, clock, _fax, _d = make_container(tmp_path, START)
    api = asgi_client(create_app(lambda: c))
    behaviour = ProviderBehaviour(respond_after_attempts=1, reply_delay_minutes=180)
    sim = Simulator(
        clock=clock,
        webhook_url="http://carrier.invalid/webhooks",
        behaviours={"clinic": behaviour},
        directory={NPI: "clinic"},
        http=api,
        public_base_url="http://testserver",
    )
    fhir = asgi_client(sim.app)
    notify = TaskNotifications(
        endpoint=partial(task_notify_url, "http://testserver"), token=c.task_notify_token
    )
    cdex = CDexTaskRequester(
        fhir,
        requester_name="Acme Health",
        requester_identifier="carrier-1",
        retrying=no_wait_retrying,
        clock=clock,
        notifications=notify,
    )
    polls = RecordedPolls(cdex, clock)
    c.requesters = {**c.requesters, ChannelKind.FHIR: polls}  # type: ignore[dict-item]
    (side,) = [f for f in sim.far_sides if isinstance(f, CDexFarSide)]
    provider = dict(notification()["providers"][0], npi=NPI)
    provider["channels"] = [{"kind": "fhir", "base_url": "http://testserver/fhir"}]
    doc = notification(providers=[provider], received_at=START.isoformat())
    try:
        yield Pipeline(c, clock, sim, side, polls, services.intake(c, doc).case_id)
    finally:
        fhir.close()
        api.close()
        c.close()


def _run_until_answered(p: Pipeline, limit: timedelta = 3 * 24 * H) -> None:
    """Move the clock from one due instant to the next (a timer, a far-side event), as the
    simulation driver does, until the records are in."""

    def answered() -> bool:
        with transaction(p.c.sessions) as s:
            return s.scalar(select(Document.id).where(Document.case_id == p.case_id)) is not None

    _run_until(p, answered, limit, "the records never came in")


def _run_until(p: Pipeline, done: Any, limit: timedelta, never: str) -> None:
    end = p.clock.now() + limit
    while p.clock.now() < end:
        due = [t for t in (next_due(p.c), p.sim.next_event_at()) if t is not None]
        p.clock.advance_to(max(min(due, default=end), p.clock.now()))
        p.sim.fire_due()
        tick(p.c)
        if done():
            return
    raise AssertionError(never)


def test_a_notification_brings_the_records_in_at_once_with_few_polls(pipeline: Pipeline) -> None:
    p = pipeline
    _run_until_answered(p)
    with transaction(p.c.sessions) as s:
        (a,) = s.scalars(select(Attempt)).all()
        request = s.scalars(select(RecordRequest)).one()
        arrived = s.scalar(select(Document.received_at).where(Document.case_id == p.case_id))
        assert a.notified_until is not None and a.sent_at is not None
        assert a.outcome == "delivered" and a.poll_at is None  # answered: no more polls
        assert request.status != "open"
        # taken up at +1 min, answered 3 hours later: both notified, the records read then
        assert arrived is not None and arrived - a.sent_at <= 3 * H + MIN
    assert p.side.notifications == 2
    # the polls: the two the notifications asked for, and the first safety-net poll (30 min);
    # hourly polling would have made 1 + 6 + 3 polls over those three hours
    assert len(p.polls.every()) == 3
    # answered: nothing more is awaited, and the provider's server keeps no Subscription
    assert a.subscription is None and p.side.live_subscriptions() == {}


def test_lost_notifications_are_found_out_and_the_task_polled_again(pipeline: Pipeline) -> None:
    """A server that takes the Subscription but whose notifications never reach us: the first
    safety-net poll (30 minutes) finds the Task taken up with nothing told, so the attempt is
    polled at the CDex cadence again (audited), and the records come in within the hour."""
    p = pipeline
    p.side.notify = lambda item, now: Fired.DONE  # type: ignore[method-assign]
    _run_until_answered(p)
    with transaction(p.c.sessions) as s:
        (a,) = s.scalars(select(Attempt)).all()
        arrived = s.scalar(select(Document.received_at).where(Document.case_id == p.case_id))
        lost = s.scalars(select(AuditEvent).where(AuditEvent.kind == "attempt.notifications_lost"))
        assert a.sent_at is not None and arrived is not None
        assert a.notified_until is None and a.told_at is None
        assert len(lost.all()) == 1
        assert arrived - a.sent_at <= 3 * H + MIN + H  # answered at +3 h 1 min, read hourly
    assert p.side.notifications == 0
    assert p.polls.every()[0] - a.sent_at == NOTIFIED_FIRST  # the first poll: the safety net's
    # a Subscription whose notifications never reach us is ended as soon as that is known
    assert a.subscription is None and p.side.live_subscriptions() == {}


def test_a_request_closed_otherwise_ends_its_subscription_without_a_poll(
    pipeline: Pipeline,
) -> None:
    """The case is withdrawn while its Task waits: the attempt's poll timer gets one last
    turn, which reads no Task and deletes the Subscription (and the Task is cancelled)."""
    p = pipeline
    _run_until(p, p.side.live_subscriptions, H, "no Subscription was made")
    polls = len(p.polls.every())
    assert services.cancel_case(p.c, p.case_id, "withdrawn by the insured")
    tick(p.c)
    with transaction(p.c.sessions) as s:
        (a,) = s.scalars(select(Attempt)).all()
        assert a.subscription is None and a.poll_at is None
    assert p.side.live_subscriptions() == {}
    assert len(p.polls.every()) == polls  # no Task read for it


def test_a_subscription_the_server_will_not_delete_is_left_to_its_end_date(
    pipeline: Pipeline,
) -> None:
    """Best effort: a DELETE that fails is logged, never retried; the server ends it at the
    end date it was given."""
    p = pipeline
    p.side._delete_subscription = lambda _id: Response(status_code=503)  # type: ignore[method-assign]
    _run_until_answered(p)
    with transaction(p.c.sessions) as s:
        (a,) = s.scalars(select(Attempt)).all()
        assert a.subscription is None and a.poll_at is None
    assert list(p.side.live_subscriptions().values()) == ["completed"]


def test_a_server_without_subscriptions_is_polled_at_the_cdex_cadence(pipeline: Pipeline) -> None:
    p = pipeline
    p.side.subscriptions = False
    _run_until_answered(p)
    with transaction(p.c.sessions) as s:
        (a,) = s.scalars(select(Attempt)).all()
        assert a.notified_until is None
    assert len(p.polls.every()) >= 1 + 6 + 2  # 1 minute, every 5 minutes, then hourly


# --- the endpoint -------------------------------------------------------------------------------


@pytest.fixture
def sent(tmp_path: Path) -> Any:
    """A container with one FHIR attempt sent (Task ``TASK``) and polled hourly, and our API."""
    c, _clock, _fax, _d = make_container(tmp_path, START)
    provider = dict(notification()["providers"][0], npi=NPI)
    provider["channels"] = [{"kind": "fhir", "base_url": "https://fhir.provider.example/r4"}]
    services.intake(c, notification(providers=[provider], received_at=START.isoformat()))
    for _ in range(50):  # to the first attempt (the provider's next business morning)
        with transaction(c.sessions) as s:
            if s.scalar(select(Attempt.id)) is not None:
                break
        due = next_due(c)
        assert due is not None
        c.clock.advance_to(max(due, c.clock.now()))  # type: ignore[attr-defined]
        tick(c)
    with transaction(c.sessions) as s:
        a = s.scalars(select(Attempt)).one()
        a.external_id, a.outcome, a.poll_at = TASK, "delivered", START + 4 * H
        key = a.idempotency_key
    api = asgi_client(create_app(lambda: c))
    try:
        yield c, api, key
    finally:
        api.close()
        c.close()


def _poll_at(c: Container) -> datetime | None:
    with transaction(c.sessions) as s:
        return s.scalars(select(Attempt.poll_at)).one()


def test_a_verified_event_reads_the_task_now(sent: Any) -> None:
    c, api, key = sent
    headers = {"Authorization": f"Bearer {c.task_notify_token(key)}"}
    enqueued: list[Any] = []
    c.dispatcher = Recorder(enqueued)
    body = _backport("event-notification", TASK)
    assert api.post(f"/v1/webhooks/cdex/{key}", content=body, headers=headers).status_code == 200
    assert [type(cmd).__name__ for cmd in enqueued] == ["PollTask"]
    assert _poll_at(c) == c.clock.now() + LEASE  # leased: a lost command is polled again


@dataclass
class Recorder:
    """A dispatcher that keeps what it is given."""

    commands: list[Any]

    def enqueue(self, commands: Any) -> None:
        self.commands.extend(commands)


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer wrong", "Basic abc", "Bearer "],
    ids=["none", "wrong-token", "not-bearer", "empty"],
)
def test_an_unverified_notification_is_refused(sent: Any, authorization: str | None) -> None:
    c, api, key = sent
    headers = {"Authorization": authorization} if authorization else {}
    body = _backport("event-notification", TASK)
    assert api.post(f"/v1/webhooks/cdex/{key}", content=body, headers=headers).status_code == 401
    # another attempt's token does not open this one's endpoint
    other = {"Authorization": f"Bearer {c.task_notify_token('another-key')}"}
    assert api.post(f"/v1/webhooks/cdex/{key}", content=body, headers=other).status_code == 401
    assert _poll_at(c) == START + 4 * H


def test_a_handshake_another_task_or_a_bad_body_changes_nothing(sent: Any) -> None:
    c, api, key = sent
    headers = {"Authorization": f"Bearer {c.task_notify_token(key)}"}
    url = f"/v1/webhooks/cdex/{key}"
    assert api.post(url, content=_backport("handshake"), headers=headers).status_code == 200
    other = _backport("event-notification", "https://fhir.provider.example/r4/Task/t-9")
    assert api.post(url, content=other, headers=headers).status_code == 200
    assert api.post(url, content=b"{}", headers=headers).status_code == 422
    assert _poll_at(c) == START + 4 * H


def test_an_event_for_a_finished_attempt_is_ignored(sent: Any) -> None:
    c, api, key = sent
    with transaction(c.sessions) as s:
        s.scalars(select(Attempt)).one().poll_at = None
    headers = {"Authorization": f"Bearer {c.task_notify_token(key)}"}
    body = _backport("event-notification", TASK)
    assert api.post(f"/v1/webhooks/cdex/{key}", content=body, headers=headers).status_code == 200
    assert _poll_at(c) is None
