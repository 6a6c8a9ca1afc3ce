"""The simulator as a whole: firing on a thread, serving on a port, the far-side registry."""

from __future__ import annotations

import time

import httpx
import pytest

from simulator.app import Simulator
from simulator.serving import run_in_thread
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
