"""The ``world`` fixture: a simulator with one provider of each behaviour, on a virtual clock."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from simulator.app import Simulator
from simulator.providers import ProviderBehaviour
from simulator.serving import asgi_client
from tests.unit.simulator.world import (
    BUSY_FAX,
    NONE_FAX,
    NPI_NONE,
    NPI_OK,
    NPI_PLAIN,
    OK_FAX,
    SEED,
    SILENT_FAX,
    SLOW_FAX,
    START,
    WEBHOOK,
    Carrier,
    World,
)
from worker.domain.clock import VirtualClock


@pytest.fixture
def world() -> Iterator[World]:
    clock = VirtualClock(START)
    carrier = Carrier()
    http = httpx.Client(transport=httpx.MockTransport(carrier.handler))
    behaviours = {
        "busy-clinic": ProviderBehaviour(fax="busy"),
        "slow-clinic": ProviderBehaviour(respond_after_attempts=2, reply_delay_minutes=30),
        "silent-clinic": ProviderBehaviour(respond_after_attempts=None),
        "empty-clinic": ProviderBehaviour(reply="no_records", reply_delay_minutes=10),
        "ok-clinic": ProviderBehaviour(reply_delay_minutes=60, pages=3),
        "plain-clinic": ProviderBehaviour(fhir_subscriptions=False),
    }
    directory = {
        BUSY_FAX: "busy-clinic",
        SLOW_FAX: "slow-clinic",
        SILENT_FAX: "silent-clinic",
        NONE_FAX: "empty-clinic",
        OK_FAX: "ok-clinic",
        NPI_OK: "ok-clinic",
        NPI_NONE: "empty-clinic",
        NPI_PLAIN: "plain-clinic",
    }
    sim = Simulator(
        clock=clock,
        webhook_url=WEBHOOK,
        behaviours=behaviours,
        directory=directory,
        http=http,
        public_base_url="http://testserver",
        signing_key=SEED,
    )
    with asgi_client(sim.app) as client:
        yield World(clock, carrier, sim, client)
    http.close()
