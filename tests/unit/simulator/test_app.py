"""The simulator as a whole: firing on a thread, serving on a port, the far-side registry."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timedelta

import httpx
import pytest
from fastapi import APIRouter, Request

from simulator.agency import AgencyFarSide
from simulator.app import FAR_SIDES, Simulator
from simulator.base import Context, FarSide
from simulator.cdex import CDexFarSide
from simulator.events import Fired
from simulator.serving import asgi_client, run_in_thread
from simulator.sinch import SinchFarSide
from simulator.telnyx import TelnyxFarSide
from simulator.vendor import VendorFarSide
from tests.unit.simulator.world import OK_FAX, START, WEBHOOK, World
from worker.domain.clock import VirtualClock


def test_background_thread_fires_due_webhooks(world: World) -> None:
    """start_background calls fire_due on a thread until stop()."""
    world.send_fax(OK_FAX, "GF-IIII0001")
    world.sim.start_background(0.01)
    try:
        deadline = time.monotonic() + 5
        while not world.carrier.webhooks and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        world.sim.stop()
    assert world.carrier.events()[0]["event_type"] == "fax.queued"


def test_run_in_thread_serves_on_a_free_port_and_stops() -> None:
    """run_in_thread starts uvicorn on a free loopback port, answers, and stops cleanly."""
    sim = Simulator(
        clock=VirtualClock(START),
        webhook_url=WEBHOOK,
        behaviours={},
        directory={},
        http=httpx.Client(transport=httpx.MockTransport(lambda r: httpx.Response(200))),
        public_base_url="http://127.0.0.1",
    )
    base_url, stop = run_in_thread(sim.app)
    try:
        assert httpx.get(f"{base_url}/fhir/Task/none").status_code == 404
    finally:
        stop()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{base_url}/fhir/Task/none")


class _ToyFax(FarSide):
    """A toy fax vendor: ``POST /toy/faxes`` schedules delivery 5 minutes later on the shared
    event heap, counted for the provider the number reaches."""

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self.advanced_to: datetime | None = None

    def router(self) -> APIRouter:
        router = APIRouter()

        @router.post("/toy/faxes")
        async def send(request: Request) -> dict[str, str]:
            to = (await request.json())["to"]
            self.ctx.events.push(
                self.ctx.clock.now() + timedelta(minutes=5), _ToyDelivery(self, to)
            )
            return {"status": "queued", "to": to}

        return router

    def advance(self, now: datetime) -> None:
        self.advanced_to = now


@dataclass
class _ToyDelivery:
    side: _ToyFax
    to: str

    def fire(self, due: datetime, now: datetime) -> Fired:
        provider_id, behaviour = self.side.ctx.providers.lookup(self.to)
        self.side.ctx.providers.count_delivery(provider_id, behaviour, "GF-TOY00001")
        return Fired.DONE


def _simulator(
    far_sides: tuple[type[FarSide], ...], clock: VirtualClock | None = None
) -> Simulator:
    return Simulator(
        clock=clock or VirtualClock(START),
        webhook_url=WEBHOOK,
        behaviours={},
        directory={OK_FAX: "ok-clinic"},
        http=httpx.Client(transport=httpx.MockTransport(lambda r: httpx.Response(200))),
        public_base_url="http://testserver",
        far_sides=far_sides,
    )


def test_a_far_side_listed_in_the_registry_is_served_by_the_app() -> None:
    """A FarSide class added to the list is built with the shared context, its routes served
    beside the built-in vendors', its events fired on the shared clock."""
    clock = VirtualClock(START)
    sim = _simulator((*FAR_SIDES, _ToyFax), clock)
    toy = sim.far_side(_ToyFax)
    with asgi_client(sim.app) as client:
        assert client.post("/toy/faxes", json={"to": OK_FAX}).json() == {
            "status": "queued",
            "to": OK_FAX,
        }
        assert client.post("/v2/faxes", json={}).status_code == 401  # Telnyx still served
        assert client.get("/fhir/Task/none").status_code == 404
    assert sim.next_event_at() == START + timedelta(minutes=5)
    clock.advance_to(START + timedelta(minutes=5))
    sim.fire_due()
    assert toy.advanced_to == START + timedelta(minutes=5)
    assert sim.delivered_count("ok-clinic") == 1


def test_the_default_registry_serves_every_built_in_vendor() -> None:
    """FAR_SIDES holds the Telnyx, Sinch, CDex and agency far sides, and the app routes to
    each."""
    assert (TelnyxFarSide, SinchFarSide, CDexFarSide, AgencyFarSide, VendorFarSide) == FAR_SIDES
    sim = _simulator(FAR_SIDES)
    with asgi_client(sim.app) as client:
        assert client.post("/v2/faxes", json={}).json()["errors"][0]["code"] == "10009"
        assert client.get("/v2/media/none").json()["errors"][0]["code"] == "10005"
        assert client.get("/fhir/Task/none").json()["resourceType"] == "OperationOutcome"
        sinch = client.post("/v3/projects/p/faxes", json={}).json()
        assert sinch["status"] == "UNAUTHENTICATED"
        missing = client.get("/agency/a/submissions/R-1").json()
        assert missing["errors"][0]["code"] == "not_found"


def test_a_far_side_left_out_is_not_served() -> None:
    """Without the agency far side its routes are 404 and asking for its submissions says what
    to add."""
    sim = _simulator((TelnyxFarSide,))
    with asgi_client(sim.app) as client:
        assert client.get("/agency/a/submissions/R-1").status_code == 404
    with pytest.raises(LookupError, match="AgencyFarSide is not served"):
        _ = sim.submissions
