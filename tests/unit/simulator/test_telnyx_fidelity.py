"""The Telnyx far side behaves as Telnyx does where goodfaith's code meets it: refused webhooks
re-attempted with exponential backoff up to a cap (at the failover URL when one is set),
Telnyx-format errors on every route (unknown ones and wrong methods too; other vendors' paths
in their own formats), ``DELETE /v2/faxes/{id}``, and ``media_name`` (Media Storage) instead of
``media_url``."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest

from simulator.app import Simulator
from simulator.events import Backoff
from simulator.providers import ProviderBehaviour
from simulator.serving import asgi_client
from tests.unit.simulator.world import CARRIER, OK_FAX, START, WEBHOOK, World, letter
from worker.documents import extract_reference
from worker.domain.clock import VirtualClock

AUTH = {"Authorization": "Bearer k"}
FAILOVER = f"{CARRIER}/webhooks/failover"


@dataclass
class Refusing:
    """Our side refusing every webhook (503), noting when and where each try came."""

    clock: VirtualClock
    tries: list[tuple[datetime, str, dict[str, Any]]] = field(default_factory=list)

    def handler(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.startswith("/letters/"):
            return httpx.Response(200, content=letter("GF-ZZZZ0001"))
        self.tries.append((self.clock.now(), str(request.url), json.loads(request.content)))
        return httpx.Response(503)


def _refused_run(**fax: Any) -> tuple[Refusing, Simulator]:
    clock = VirtualClock(START)
    ours = Refusing(clock)
    sim = Simulator(
        clock=clock,
        webhook_url=WEBHOOK,
        behaviours={},
        directory={},
        default=ProviderBehaviour(respond_after_attempts=None),
        http=httpx.Client(transport=httpx.MockTransport(ours.handler)),
        public_base_url="http://testserver",
        webhook_backoff=Backoff(first_s=5, factor=2, max_delay_s=30, max_attempts=5),
    )
    body = {
        "connection_id": "c",
        "from": "+16175550000",
        "to": OK_FAX,
        "media_url": f"{CARRIER}/letters/l.pdf",
        **fax,
    }
    with asgi_client(sim.app) as client:
        assert client.post("/v2/faxes", json=body, headers=AUTH).status_code == 202
        World(clock, None, sim, client).run_until(START + timedelta(hours=2))  # type: ignore[arg-type]
    return ours, sim


def test_a_refused_webhook_backs_off_exponentially_then_is_given_up() -> None:
    """Every try refused: fax.queued comes at 0, +5, +15, +35, +65 s (waits 5, 10, 20, then
    capped at 30), meta.attempt 1..5, then never again; every webhook is abandoned."""
    ours, sim = _refused_run()
    queued = [
        (at, body) for at, _, body in ours.tries if body["data"]["event_type"] == "fax.queued"
    ]
    assert [(at - START).total_seconds() for at, _ in queued] == [0, 5, 15, 35, 65]
    assert [body["meta"]["attempt"] for _, body in queued] == [1, 2, 3, 4, 5]
    assert len({body["data"]["id"] for _, body in queued}) == 1
    events = {body["data"]["id"] for _, _, body in ours.tries}
    assert sim.abandoned_webhooks == len(events) >= 4
    assert sim.next_event_at() is None


def test_retries_go_to_the_failover_url() -> None:
    """With webhook_failover_url the first try goes to webhook_url, the re-attempts to the
    failover URL (meta.delivered_to says which)."""
    ours, _ = _refused_run(webhook_url=WEBHOOK, webhook_failover_url=FAILOVER)
    queued = [
        (url, body) for _, url, body in ours.tries if body["data"]["event_type"] == "fax.queued"
    ]
    assert [url for url, _ in queued] == [WEBHOOK] + [FAILOVER] * 4
    assert [body["meta"]["delivered_to"] for _, body in queued] == [url for url, _ in queued]


def test_backoff_refuses_nonsense() -> None:
    """A backoff that would not back off (or never try) is a ValueError naming the fix."""
    with pytest.raises(ValueError, match="first_s"):
        Backoff(first_s=0)
    with pytest.raises(ValueError, match="factor"):
        Backoff(factor=0.5)
    assert Backoff(first_s=1, factor=3, max_delay_s=100, max_attempts=3).delay(3) is None
    assert Backoff(first_s=1, factor=3, max_delay_s=100, max_attempts=9).delay(3) == timedelta(
        seconds=9
    )


def _telnyx_error(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    (error,) = response.json()["errors"]
    assert {"code", "title", "detail"} <= set(error) and error["code"].isdigit()
    return dict(error)


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/v2/nothing-here", 404),
        ("PUT", "/v2/faxes", 405),
        ("PATCH", "/v2/faxes/abc", 405),
        ("GET", "/v2/faxes?page[number]=x", 400),
        ("GET", "/v2/faxes?page[size]=1000", 422),
        ("GET", "/v2/faxes/unknown-id", 404),
        ("DELETE", "/v2/faxes/unknown-id", 404),
        ("GET", "/not-a-vendor-route", 404),
        ("POST", "/v2/media", 422),
    ],
)
def test_every_telnyx_route_errs_in_telnyxs_format(
    world: World, method: str, path: str, status: int
) -> None:
    """Unknown routes, wrong methods, bad parameters and unknown ids answer
    {"errors": [{"code", "title", "detail"}]}, never FastAPI's {"detail": ...}."""
    response = world.client.request(method, path, headers=AUTH, json={})
    error = _telnyx_error(response, status)
    assert set(response.json()) == {"errors"}
    if status == 405:
        assert "allow" in response.headers and error["title"] == "Method not allowed"


def test_without_a_key_every_telnyx_route_is_401_in_telnyxs_format(world: World) -> None:
    """No Bearer key: create, read, list, delete and media upload all answer Telnyx's 401."""
    for method, path in [
        ("POST", "/v2/faxes"),
        ("GET", "/v2/faxes/x"),
        ("GET", "/v2/faxes"),
        ("DELETE", "/v2/faxes/x"),
        ("POST", "/v2/media"),
    ]:
        assert _telnyx_error(world.client.request(method, path, json={}), 401)["code"] == "10009"


def test_other_vendors_paths_err_in_their_own_format(world: World) -> None:
    """The FHIR server answers OperationOutcome, Sinch its google.rpc-style body."""
    fhir = world.client.delete("/fhir/Task/1")
    assert fhir.status_code == 405 and fhir.json()["resourceType"] == "OperationOutcome"
    assert world.client.get("/fhir/Nothing").json()["issue"][0]["code"] == "not-found"
    sinch = world.client.get("/v3/nothing")
    assert sinch.status_code == 404 and sinch.json()["status"] == "NOT_FOUND"


def test_a_deleted_fax_is_gone_from_reads_and_lists_but_its_transmission_goes_on(
    world: World,
) -> None:
    """DELETE answers 204; the fax then reads 404 and is not listed; deleting again is 404;
    the webhooks of the transmission under way still come."""
    fax_id = world.send_fax(OK_FAX, "GF-DDDD0001")
    assert world.client.delete(f"/v2/faxes/{fax_id}", headers=AUTH).status_code == 204
    _telnyx_error(world.client.get(f"/v2/faxes/{fax_id}", headers=AUTH), 404)
    assert world.client.get("/v2/faxes", headers=AUTH).json()["data"] == []
    _telnyx_error(world.client.delete(f"/v2/faxes/{fax_id}", headers=AUTH), 404)
    world.run_until(START + timedelta(minutes=3))
    assert "fax.delivered" in [e["event_type"] for e in world.carrier.events()]


def test_a_fax_can_name_stored_media_instead_of_a_url(world: World) -> None:
    """POST /v2/media stores a letter under a name; a fax naming it (no media_url) is sent,
    shows its media_name, and the provider reads that letter; an unknown name is 422."""
    world.carrier.letters["stored.pdf"] = letter("GF-MEDI0001")
    stored = world.client.post(
        "/v2/media",
        json={"media_url": f"{CARRIER}/letters/stored.pdf", "media_name": "letter-1"},
        headers=AUTH,
    )
    assert stored.status_code == 201 and stored.json()["data"]["media_name"] == "letter-1"
    download = world.client.get("/v2/media/letter-1/download", headers=AUTH)
    assert download.content == world.carrier.letters["stored.pdf"]
    body = {"connection_id": "c", "from": "+16175550000", "to": OK_FAX, "media_name": "letter-1"}
    created = world.client.post("/v2/faxes", json=body, headers=AUTH)
    assert created.status_code == 202, created.text
    assert created.json()["data"]["media_name"] == "letter-1"
    world.run_until(START + timedelta(minutes=70))
    types = [e["event_type"] for e in world.carrier.events()]
    assert "fax.delivered" in types and "fax.received" in types
    unknown = world.client.post("/v2/faxes", json={**body, "media_name": "nope"}, headers=AUTH)
    assert _telnyx_error(unknown, 422)["source"] == {"pointer": "/media_name"}


def test_the_reply_to_a_stored_media_fax_quotes_its_letter(world: World) -> None:
    """The provider's answer to a media_name fax quotes the stored letter's reference."""
    world.carrier.letters["stored.pdf"] = letter("GF-MEDI0002")
    world.client.post(
        "/v2/media",
        json={"media_url": f"{CARRIER}/letters/stored.pdf", "media_name": "letter-2"},
        headers=AUTH,
    )
    body = {"connection_id": "c", "from": "+16175550000", "to": OK_FAX, "media_name": "letter-2"}
    world.client.post("/v2/faxes", json=body, headers=AUTH)
    world.run_until(START + timedelta(minutes=70))
    (received,) = [e for e in world.carrier.events() if e["event_type"] == "fax.received"]
    path = httpx.URL(received["payload"]["media_url"]).path
    assert extract_reference(world.client.get(path).content) == "GF-MEDI0002"
