"""The Telnyx fax far side: outbound faxes, webhooks, inbound replies and Telnyx errors."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from simulator.app import Simulator
from simulator.providers import ProviderBehaviour
from simulator.serving import asgi_client
from tests.unit.simulator.world import (
    BUSY_FAX,
    CARRIER,
    NONE_FAX,
    OK_FAX,
    SILENT_FAX,
    SLOW_FAX,
    START,
    WEBHOOK,
    Carrier,
    World,
    letter,
)
from worker.documents import extract_reference, is_no_records_reply
from worker.domain.clock import VirtualClock


def test_fax_is_delivered_and_the_provider_replies_after_the_delay(world: World) -> None:
    """queued → sending → delivered at +2 min, then fax.received 60 min after delivery, quoting our reference."""
    fax_id = world.send_fax(OK_FAX, "GF-AAAA0001")
    world.run_until(START + timedelta(minutes=62))
    events = world.carrier.events()
    types = [e["event_type"] for e in events]
    assert types == [
        "fax.queued",
        "fax.media.processed",
        "fax.sending.started",
        "fax.delivered",
        "fax.received",
    ]
    delivered, received = events[3], events[4]
    assert delivered["payload"]["fax_id"] == fax_id
    assert delivered["occurred_at"] == "2026-03-02T14:02:00Z"
    assert received["occurred_at"] == "2026-03-02T15:02:00Z"
    payload = received["payload"]
    assert (payload["from"], payload["to"], payload["direction"]) == (
        OK_FAX,
        "+16175550000",
        "inbound",
    )
    media = world.client.get(payload["media_url"].removeprefix("http://testserver"))
    assert media.headers["content-type"] == "application/pdf"
    assert extract_reference(media.content) == "GF-AAAA0001"
    assert payload["page_count"] == 3
    assert world.sim.delivered_count("ok-clinic") == 1


def test_reply_does_not_come_before_the_delay(world: World) -> None:
    """A second before delivery + reply_delay the provider has not answered yet."""
    world.send_fax(OK_FAX, "GF-AAAA0002")
    world.run_until(START + timedelta(minutes=62) - timedelta(seconds=1))
    assert "fax.received" not in [e["event_type"] for e in world.carrier.events()]
    assert world.sim.next_event_at() == START + timedelta(minutes=62)


def test_busy_line_fails_every_transmission(world: World) -> None:
    """A busy provider's faxes fail with user_busy and never count as delivered."""
    world.send_fax(BUSY_FAX, "GF-BBBB0001")
    world.send_fax(BUSY_FAX, "GF-BBBB0002")
    world.run_until(START + timedelta(hours=5))
    failed = [e for e in world.carrier.events() if e["event_type"] == "fax.failed"]
    assert [e["payload"]["failure_reason"] for e in failed] == ["user_busy", "user_busy"]
    assert "fax.delivered" not in [e["event_type"] for e in world.carrier.events()]
    assert world.sim.delivered_count("busy-clinic") == 0


def test_provider_answers_only_after_the_configured_number_of_requests(world: World) -> None:
    """respond_after_attempts=2 counts per request: its second delivered fax is answered, once."""
    world.send_fax(SLOW_FAX, "GF-CCCC0001")
    world.run_until(START + timedelta(hours=3))
    assert "fax.received" not in [e["event_type"] for e in world.carrier.events()]
    world.send_fax(SLOW_FAX, "GF-CCCC0002")  # another request's first fax: its own count
    world.run_until(START + timedelta(hours=6))
    assert "fax.received" not in [e["event_type"] for e in world.carrier.events()]
    world.send_fax(SLOW_FAX, "GF-CCCC0001", key="attempt-2")  # the same request, attempt 2
    world.run_until(START + timedelta(hours=9))
    (received,) = [e for e in world.carrier.events() if e["event_type"] == "fax.received"]
    media = world.client.get(received["payload"]["media_url"])
    assert extract_reference(media.content) == "GF-CCCC0001"
    world.send_fax(SLOW_FAX, "GF-CCCC0001", key="attempt-3")
    world.run_until(START + timedelta(hours=15))
    assert [e["event_type"] for e in world.carrier.events()].count("fax.received") == 1


def test_silent_provider_never_answers(world: World) -> None:
    """respond_after_attempts=None: faxes are delivered, no reply ever comes."""
    for n in range(3):
        world.send_fax(SILENT_FAX, f"GF-DDDD000{n}")
    world.run_until(START + timedelta(days=3))
    types = [e["event_type"] for e in world.carrier.events()]
    assert types.count("fax.delivered") == 3
    assert "fax.received" not in types
    assert world.sim.next_event_at() is None


def test_no_records_provider_faxes_a_no_records_letter(world: World) -> None:
    """reply='no_records': the inbound fax is a written no-records answer quoting the reference."""
    world.send_fax(NONE_FAX, "GF-EEEE0001")
    world.run_until(START + timedelta(minutes=15))
    (received,) = [e for e in world.carrier.events() if e["event_type"] == "fax.received"]
    media = world.client.get(received["payload"]["media_url"]).content
    assert is_no_records_reply(media)
    assert extract_reference(media) == "GF-EEEE0001"


def test_custom_document_is_sent_as_is(tmp_path: Path) -> None:
    """ProviderBehaviour.document bytes are the reply, unchanged."""
    broken = tmp_path / "broken.pdf"
    broken.write_bytes(b"%PDF-1.4 truncated")
    clock = VirtualClock(START)
    carrier = Carrier(letters={"l.pdf": letter("GF-FFFF0001")})
    sim = Simulator(
        clock=clock,
        webhook_url=WEBHOOK,
        behaviours={},
        directory={},
        default=ProviderBehaviour(document=broken, reply_delay_minutes=1),
        http=httpx.Client(transport=httpx.MockTransport(carrier.handler)),
        public_base_url="http://testserver",
    )
    with asgi_client(sim.app) as client:
        client.post(
            "/v2/faxes",
            json={
                "connection_id": "c",
                "from": "+16175550000",
                "to": OK_FAX,
                "media_url": f"{CARRIER}/letters/l.pdf",
            },
            headers={"Authorization": "Bearer k"},
        )
        World(clock, carrier, sim, client).run_until(START + timedelta(minutes=5))
        (received,) = [e for e in carrier.events() if e["event_type"] == "fax.received"]
        assert client.get(received["payload"]["media_url"]).content == b"%PDF-1.4 truncated"
        assert "telnyx-signature-ed25519" not in carrier.webhooks[0][1]


def test_unfetchable_letter_fails_with_file_download_failed(world: World) -> None:
    """When the letter URL does not answer 2xx the fax fails as Telnyx reports it."""
    response = world.client.post(
        "/v2/faxes",
        json={
            "connection_id": "c",
            "from": "+16175550000",
            "to": OK_FAX,
            "media_url": f"{CARRIER}/letters/missing.pdf",
        },
        headers={"Authorization": "Bearer k"},
    )
    assert response.status_code == 202
    world.run_until(START + timedelta(hours=2))
    failed = [e for e in world.carrier.events() if e["event_type"] == "fax.failed"]
    assert [e["payload"]["failure_reason"] for e in failed] == ["file_download_failed"]
    assert world.sim.delivered_count("ok-clinic") == 0


def test_send_fax_requires_bearer_auth(world: World) -> None:
    """No Authorization header: 401 with a Telnyx-style error body."""
    response = world.client.post("/v2/faxes", json={})
    assert response.status_code == 401
    assert response.json()["errors"][0]["code"] == "10009"


@pytest.mark.parametrize(
    ("change", "pointer", "code"),
    [
        ({"to": "6175551234"}, "/to", "10016"),
        ({"from": "+0123"}, "/from", "10016"),
        ({"to": None}, "/to", "10004"),
        ({"connection_id": None}, "/connection_id", "10004"),
        ({"media_url": None}, "/media_url", "10004"),
        ({"media_url": "ftp://x/y.pdf"}, "/media_url", "10003"),
    ],
)
def test_send_fax_validates_like_telnyx(
    world: World, change: dict[str, Any], pointer: str, code: str
) -> None:
    """Missing fields and non-E.164 numbers are 422 with the code and a pointer to the field."""
    body: dict[str, Any] = {
        "connection_id": "c",
        "from": "+16175550000",
        "to": OK_FAX,
        "media_url": f"{CARRIER}/letters/x.pdf",
    }
    body.update(change)
    body = {k: v for k, v in body.items() if v is not None}
    response = world.client.post("/v2/faxes", json=body, headers={"Authorization": "Bearer k"})
    assert response.status_code == 422
    (error,) = response.json()["errors"]
    assert (error["code"], error["source"]["pointer"]) == (code, pointer)


def test_send_fax_is_idempotent_on_the_key(world: World) -> None:
    """The same Idempotency-Key returns the same fax id and sends one fax only."""
    first = world.send_fax(OK_FAX, "GF-GGGG0001", key="att-1")
    second = world.send_fax(OK_FAX, "GF-GGGG0001", key="att-1")
    assert first == second
    world.run_until(START + timedelta(minutes=5))
    assert [e["event_type"] for e in world.carrier.events()].count("fax.queued") == 1


def test_failed_webhooks_are_retried_after_the_backoff(world: World) -> None:
    """A webhook our side refuses is not re-sent at once but 5 s later (the default backoff's
    first wait), with meta.attempt 2."""
    world.carrier.fail_next_webhooks = 1
    world.send_fax(OK_FAX, "GF-HHHH0001")
    assert world.sim.fire_due() == 0
    assert world.sim.fire_due() == 0
    assert world.sim.next_event_at() == START + timedelta(seconds=5)
    world.clock.advance(5)
    assert world.sim.fire_due() == 1
    ((body, _),) = world.carrier.webhooks
    envelope = json.loads(body)
    assert envelope["data"]["event_type"] == "fax.queued"
    assert envelope["meta"] == {"attempt": 2, "delivered_to": WEBHOOK}


def test_duplicate_webhooks_come_again_a_minute_later_with_the_same_event_id() -> None:
    """With duplicate_webhooks=1 every delivered webhook is delivered a second time a minute
    later, same event id, meta.attempt counted on, after later events (out of order)."""
    clock = VirtualClock(START)
    carrier = Carrier(letters={"l.pdf": letter("GF-FFFF0002")})
    sim = Simulator(
        clock=clock,
        webhook_url=WEBHOOK,
        behaviours={},
        directory={},
        default=ProviderBehaviour(reply_delay_minutes=1),
        http=httpx.Client(transport=httpx.MockTransport(carrier.handler)),
        public_base_url="http://testserver",
        duplicate_webhooks=1.0,
    )
    with asgi_client(sim.app) as client:
        client.post(
            "/v2/faxes",
            json={
                "connection_id": "c",
                "from": "+16175550000",
                "to": OK_FAX,
                "media_url": f"{CARRIER}/letters/l.pdf",
            },
            headers={"Authorization": "Bearer k"},
        )
        World(clock, carrier, sim, client).run_until(START + timedelta(minutes=10))
    ids = [e["id"] for e in carrier.events()]
    assert len(ids) == 2 * len(set(ids)) and len(set(ids)) >= 5
    types = [e["event_type"] for e in carrier.events()]
    # fax.queued's copy arrives after fax.media.processed and fax.sending.started
    assert types.index("fax.sending.started") < len(types) - 1 - types[::-1].index("fax.queued")
    attempts = [json.loads(body)["meta"]["attempt"] for body, _ in carrier.webhooks]
    assert sorted(set(attempts)) == [1, 2]
