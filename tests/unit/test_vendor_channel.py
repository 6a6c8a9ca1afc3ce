"""The retrieval-vendor channel end to end, in process: our pipeline (inline) orders records from
the simulator's vendor (order API v1), the vendor's signed callbacks come to our API, and what
the order returns closes the request; forged callbacks are refused; a withdrawn case cancels
its open order at the vendor; a crash between "ordered" and "answered" adopts the order."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from sqlalchemy import select

from api.app import create_app
from connectors.base import (
    CancelsRequest,
    FindsSent,
    PollingRequester,
    RecordsRequest,
    TransientError,
)
from connectors.retry import no_wait_retrying
from connectors.vendor.orders import OrdersV1Vendor, RetrievalVendorSettings
from connectors.vendor.router import RetrievalVendors
from simulator.app import Simulator
from simulator.providers import ProviderBehaviour
from simulator.serving import asgi_client
from simulator.vendor import VendorFarSide
from storage.db import transaction
from storage.models import Attempt, AuditEvent, Document, RecordRequest
from tests.conftest import at, notification
from tests.fakes import make_container
from worker import services
from worker.domain.clock import VirtualClock
from worker.domain.types import AttemptOutcome, Channel, ChannelKind
from worker.scheduler import tick
from worker.wiring import Container

START = at("2026-04-17T09:00:00-04:00")
SECRET = "vendor-secret-for-tests-0123456789"
CALLBACK = "http://testserver/v1/webhooks/vendor?vendor_id=ciox"


def _vendor_notification(*, fax_too: bool = False) -> dict[str, Any]:
    provider = dict(notification()["providers"][0])
    provider["channels"] = [{"kind": "vendor", "vendor_id": "ciox"}]
    if fax_too:
        provider["channels"].append({"kind": "fax", "number": "+16175550101"})
    return notification(providers=[provider])


@dataclass
class Env:
    c: Container
    clock: VirtualClock
    sim: Simulator
    vendor: OrdersV1Vendor

    def step(self, seconds: float) -> None:
        """Move the clock, let the vendor work and call back, and run our timers."""
        self.clock.advance(seconds)
        self.sim.fire_due()
        tick(self.c)

    def attempts(self) -> list[Attempt]:
        with transaction(self.c.sessions) as s:
            found = list(s.scalars(select(Attempt).order_by(Attempt.number)))
            for a in found:
                s.expunge(a)
            return found

    def request(self) -> RecordRequest:
        with transaction(self.c.sessions) as s:
            r = s.scalars(select(RecordRequest)).one()
            s.expunge(r)
            return r

    def audit_kinds(self) -> list[str]:
        with transaction(self.c.sessions) as s:
            return list(s.scalars(select(AuditEvent.kind).order_by(AuditEvent.at)))


def _env(tmp_path: Path, behaviour: ProviderBehaviour, **sim: Any) -> Iterator[Env]:
    c, clock, _fax, _d = make_container(tmp_path, START)
    our_api = asgi_client(create_app(lambda: c))
    simulator = Simulator(
        clock=clock,
        webhook_url="http://testserver/v1/webhooks/telnyx",
        behaviours={"prov-1": behaviour},
        directory={},
        http=our_api,
        public_base_url="http://testserver",
        vendor_webhook_secret=SECRET,
        **sim,
    )
    vendor_client = asgi_client(simulator.app)
    vendor = OrdersV1Vendor(
        vendor_client,
        vendor_id="ciox",
        settings=RetrievalVendorSettings(
            name="Ciox",
            api_base="http://testserver/vendor",
            api_key=SecretStr("k"),
            webhook_secret=SecretStr(SECRET),
        ),
        callback_url=CALLBACK,
        retrying=no_wait_retrying,
        clock=clock,
    )
    vendors = RetrievalVendors({"ciox": vendor})
    c.vendors = vendors
    c.requesters = {**c.requesters, ChannelKind.VENDOR: vendors}
    try:
        yield Env(c, clock, simulator, vendor)
    finally:
        vendor_client.close()
        our_api.close()
        c.close()


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    yield from _env(tmp_path, ProviderBehaviour(reply_delay_minutes=60, pages=3))


def test_the_router_is_a_polling_requester_that_finds_and_cancels() -> None:
    vendors = RetrievalVendors({})
    assert isinstance(vendors, PollingRequester)
    assert isinstance(vendors, FindsSent) and isinstance(vendors, CancelsRequest)
    assert vendors.kind is ChannelKind.VENDOR and vendors.vendor == "vendor"


def test_an_order_is_worked_and_its_records_close_the_request(env: Env) -> None:
    """Ordered at once; the vendor's callbacks (received, in progress, fulfilled) each make us
    read the order; the records come back through it and fulfil the request."""
    services.intake(env.c, _vendor_notification())
    (a,) = env.attempts()
    assert (a.channel, a.destination, a.outcome) == ("vendor", "ciox", "sent")
    assert a.external_id is not None and a.external_id.startswith("ciox/ord_")
    (order,) = env.sim.far_side(VendorFarSide).orders()
    assert order["request_reference"] == env.request().reference
    assert order["patient"] == {
        "member_id": "M1001",
        "name": "Jane Roe",
        "birth_date": "1971-02-03",
    }
    assert order["provider"]["npi"] == "1234567893" and order["attempt_number"] == 1
    assert order["authorization"]["url"].startswith("http://127.0.0.1:8000/v1/media/")
    env.step(120)  # in progress: the order reached the provider
    assert env.attempts()[0].outcome == AttemptOutcome.DELIVERED
    assert env.request().status == "open"
    env.step(3600)  # fulfilled
    assert env.request().status == "fulfilled"
    with transaction(env.c.sessions) as s:
        (doc,) = s.scalars(select(Document)).all()
        assert (doc.source, doc.status, doc.kind, doc.pages) == ("vendor", "accepted", "records", 3)
    assert env.attempts()[0].poll_at is None  # nothing more to read
    assert len(env.attempts()) == 1


def test_a_no_records_certificate_is_a_terminal_answer_kept_as_evidence(tmp_path: Path) -> None:
    for env in _env(tmp_path, ProviderBehaviour(vendor="no_records", reply_delay_minutes=30)):
        services.intake(env.c, _vendor_notification())
        env.step(120)
        env.step(1800)
        assert env.request().status == "no_records"
        with transaction(env.c.sessions) as s:
            (doc,) = s.scalars(select(Document)).all()
            assert (doc.source, doc.kind, doc.status) == ("vendor", "no_records", "accepted")
            assert doc.external_id.endswith("/certificate")


def test_lost_callbacks_are_covered_by_polls(tmp_path: Path) -> None:
    """Every callback lost: the order is still read on the poll timer (15 min, then hourly)
    and its records taken, about an hour later at most."""
    for env in _env(tmp_path, ProviderBehaviour(reply_delay_minutes=60), drop_webhooks=1.0):
        services.intake(env.c, _vendor_notification())
        for _ in range(12):
            env.step(900)
        assert env.sim.far_side(VendorFarSide).dropped  # callbacks really were lost
        assert env.request().status == "fulfilled"


def test_a_vendor_that_is_down_fails_the_attempt_and_the_policy_escalates(tmp_path: Path) -> None:
    for env in _env(tmp_path, ProviderBehaviour(vendor="down")):
        services.intake(env.c, _vendor_notification(fax_too=True))
        for _ in range(8):
            env.step(900)
        first, second = env.attempts()
        assert (first.channel, first.outcome) == ("vendor", "failed")
        assert "transient" in (first.failure_reason or "")
        assert (second.channel, second.reason) == ("fax", "escalation")


def test_withdrawal_cancels_the_open_order_and_it_is_never_answered(env: Env) -> None:
    case_id = services.intake(env.c, _vendor_notification()).case_id
    env.step(120)
    assert services.cancel_case(env.c, case_id, "withdrawn")
    (order,) = env.sim.far_side(VendorFarSide).orders()
    assert order["status"] == "cancelled"
    assert "attempt.withdrawn" in env.audit_kinds()
    env.step(3 * 3600)
    with transaction(env.c.sessions) as s:
        assert s.scalars(select(Document)).all() == []
    assert env.sim.far_side(VendorFarSide).orders()[0]["status"] == "cancelled"


def test_a_finished_order_is_not_cancelled(env: Env) -> None:
    services.intake(env.c, _vendor_notification())
    env.step(120)
    env.step(3600)
    (a,) = env.attempts()
    assert env.c.vendors.cancel(a.external_id or "", "x") is False


def test_an_order_made_before_a_crash_is_found_by_its_key(env: Env) -> None:
    """The order went out but our side crashed before writing it: find_sent finds it by its
    client reference (the attempt key), so it is adopted rather than ordered twice."""
    services.intake(env.c, _vendor_notification())
    (a,) = env.attempts()
    request = RecordsRequest(
        idempotency_key=a.idempotency_key,
        reference="GF-X",
        channel=Channel(ChannelKind.VENDOR, "ciox"),
        document_url="http://x",
        member_id="M1001",
        requester="Acme",
        purpose="p",
    )
    found = env.c.vendors.find_sent(request, START)
    assert found is not None and found.external_id == a.external_id
    other = RecordsRequest(**{**request.__dict__, "idempotency_key": "att-unknown-1"})
    assert env.c.vendors.find_sent(other, START) is None


def test_a_repeated_order_with_the_same_key_is_one_order(env: Env) -> None:
    services.intake(env.c, _vendor_notification())
    (a,) = env.attempts()
    (order,) = env.sim.far_side(VendorFarSide).orders()
    again = env.vendor._client.post(
        "http://testserver/vendor/v1/orders",
        json={k: v for k, v in order.items() if k not in ("id", "status")},
        headers={"Authorization": "Bearer k", "Idempotency-Key": order["client_reference"]},
    )
    assert again.status_code == 200 and again.json()["id"] == (a.external_id or "").split("/")[1]
    assert len(env.sim.far_side(VendorFarSide).orders()) == 1


def test_an_unconfigured_vendor_fails_its_attempt_and_is_flagged_at_intake(
    tmp_path: Path,
) -> None:
    for env in _env(tmp_path, ProviderBehaviour()):
        env.c.vendors = RetrievalVendors({})
        env.c.requesters = {**env.c.requesters, ChannelKind.VENDOR: env.c.vendors}
        result = services.intake(env.c, _vendor_notification(fax_too=True))
        assert any("ciox is not configured" in w for w in result.warnings)
        for _ in range(8):
            env.step(900)
        first, second = env.attempts()
        assert (first.channel, first.outcome) == ("vendor", "failed")
        assert "not configured" in (first.failure_reason or "")
        assert second.channel == "fax"


# --- callbacks: only signed ones are taken -----------------------------------------------------


def _signed(body: bytes, secret: str, t: int) -> str:
    mac = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def _callback(order_id: str) -> bytes:
    return json.dumps(
        {
            "id": "evt_1",
            "type": "order.fulfilled",
            "created_at": "2026-04-17T13:00:00Z",
            "data": {"order": {"id": order_id, "status": "fulfilled"}},
        }
    ).encode()


def test_forged_and_unsigned_callbacks_are_refused(env: Env) -> None:
    services.intake(env.c, _vendor_notification())
    order_id = (env.attempts()[0].external_id or "").split("/")[1]
    body = _callback(order_id)
    now = int(env.clock.now().timestamp())
    api = asgi_client(create_app(lambda: env.c))
    with api:
        post = api.post
        url = "/v1/webhooks/vendor?vendor_id=ciox"
        assert post(url, content=body).status_code == 401  # unsigned
        wrong = _signed(body, "another-secret-0123456789", now)
        assert post(url, content=body, headers={"Goodfaith-Signature": wrong}).status_code == 401
        stale = _signed(body, SECRET, now - 3600)
        assert post(url, content=body, headers={"Goodfaith-Signature": stale}).status_code == 401
        good = _signed(body, SECRET, now)
        tampered = body.replace(b"fulfilled", b"cancelled")
        assert post(url, content=tampered, headers={"Goodfaith-Signature": good}).status_code == 401
        other = "/v1/webhooks/vendor?vendor_id=nobody"
        assert post(other, content=body, headers={"Goodfaith-Signature": good}).status_code == 401
        assert post("/v1/webhooks/vendor", content=body).status_code == 401
        ok = post(url, content=body, headers={"Goodfaith-Signature": good})
        assert ok.status_code == 200
    assert env.attempts()[0].poll_at is None or env.attempts()[0].poll_at >= env.clock.now()


def test_a_callback_makes_us_read_the_order_at_once(env: Env) -> None:
    """A (verified) callback is only a nudge: the order is read now, whatever the callback
    says; a duplicate only reads it again."""
    services.intake(env.c, _vendor_notification())
    env.clock.advance(120)  # in progress at the vendor; no callback fired yet
    order_id = (env.attempts()[0].external_id or "").split("/")[1]
    body = _callback(order_id)  # says "fulfilled": not believed, the order is read
    header = _signed(body, SECRET, int(env.clock.now().timestamp()))
    api = asgi_client(create_app(lambda: env.c))
    with api:
        for _ in range(2):
            response = api.post(
                "/v1/webhooks/vendor?vendor_id=ciox",
                content=body,
                headers={"Goodfaith-Signature": header},
            )
            assert response.status_code == 200
    assert env.attempts()[0].outcome == AttemptOutcome.DELIVERED
    assert env.request().status == "open"


def test_the_simulator_retries_a_refused_callback_with_backoff(tmp_path: Path) -> None:
    """Our API refuses every callback (wrong secret on the vendor's side): the vendor tries
    again with backoff (5 s, 10 s, 20 s...), then gives up; polls still find the answer."""
    for env in _env(tmp_path, ProviderBehaviour(reply_delay_minutes=30)):
        env.sim._ctx.vendor_webhook_secret = "not-the-agreed-secret-00000"
        services.intake(env.c, _vendor_notification())
        env.sim.fire_due()
        first = env.sim.next_event_at()
        assert first is not None and first - env.clock.now() <= timedelta(seconds=60)
        for _ in range(30):
            env.step(900)
        assert env.request().status == "fulfilled"
        assert env.sim.next_event_at() is None  # every retry given up, none left forever


def test_a_poll_that_meets_a_transient_error_is_tried_again(env: Env) -> None:
    services.intake(env.c, _vendor_notification())

    def broken(order_id: str) -> Any:
        raise TransientError("503")

    real = env.vendor.poll
    env.vendor.poll = broken  # type: ignore[method-assign]
    env.step(120)
    assert env.attempts()[0].poll_at is not None
    env.vendor.poll = real  # type: ignore[method-assign]
    for _ in range(8):
        env.step(900)
    assert env.request().status == "fulfilled"
