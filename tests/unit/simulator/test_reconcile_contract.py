"""The reads reconciliation relies on, real connectors against the simulator: a fax's status as
of the clock, the fax list filtered as Telnyx filters it, CDex Task search by identifier, and
webhooks lost on purpose."""

from __future__ import annotations

from datetime import timedelta

import httpx

from connectors.fax.telnyx import TelnyxFax
from connectors.fax.telnyx_events import decode_client_state
from connectors.fhir.cdex import CDexTaskRequester
from connectors.retry import no_wait_retrying
from simulator.app import Simulator
from simulator.serving import asgi_client
from simulator.telnyx import TelnyxFarSide
from tests.unit.simulator.test_contract import records_request
from tests.unit.simulator.world import (
    BUSY_FAX,
    NPI_OK,
    OK_FAX,
    START,
    WEBHOOK,
    Carrier,
    World,
    letter,
)
from worker.domain.clock import VirtualClock
from worker.domain.types import AttemptOutcome, Channel, ChannelKind


def telnyx(world: World) -> TelnyxFax:
    return TelnyxFax(
        world.client,
        api_key="KEY",
        connection_id="conn-1",
        from_number="+16175550000",
        webhook_url=WEBHOOK,
        base_url="http://testserver",
        retrying=no_wait_retrying,
        clock=world.clock,
    )


def test_a_faxs_status_follows_the_clock(world: World) -> None:
    """GET /v2/faxes/{id}: queued, then sending, then delivered (or failed for a busy line);
    an unknown id is None (Telnyx's 404)."""
    fax = telnyx(world)
    world.carrier.letters["GF-RRRR0001.pdf"] = letter("GF-RRRR0001")
    request = records_request(Channel(ChannelKind.FAX, OK_FAX), "GF-RRRR0001", "att-20")
    fax_id = fax.send(request).external_id
    first = fax.status(fax_id)
    assert first is not None and (first.event_type, first.outcome) == ("fax.queued", None)
    world.run_until(START + timedelta(seconds=40))
    sending = fax.status(fax_id)
    assert sending is not None and (sending.event_type, sending.outcome) == ("fax.sending", None)
    world.run_until(START + timedelta(minutes=3))
    done = fax.status(fax_id)
    assert done is not None and done.outcome is AttemptOutcome.DELIVERED
    assert done.client_state == "att-20"

    busy = fax.send(records_request(Channel(ChannelKind.FAX, BUSY_FAX), "GF-RRRR0002", "att-21"))
    world.run_until(START + timedelta(minutes=5))
    failed = fax.status(busy.external_id)
    assert failed is not None and failed.outcome is AttemptOutcome.FAILED
    assert fax.status("00000000-0000-0000-0000-000000000000") is None


def test_the_fax_list_finds_a_fax_by_number_time_and_client_state(world: World) -> None:
    """GET /v2/faxes with filter[to][eq] and filter[created_at][gte]: our key is found among
    other faxes to the same number; before the fax existed, or to another number, it is not."""
    fax = telnyx(world)
    for n in range(3):  # other faxes to the same number
        fax.send(records_request(Channel(ChannelKind.FAX, OK_FAX), f"GF-SSSS000{n}", f"x-{n}"))
    mine = records_request(Channel(ChannelKind.FAX, OK_FAX), "GF-SSSS0009", "att-30")
    fax_id = fax.send(mine).external_id
    found = fax.find_sent(mine, START - timedelta(minutes=5))
    assert found is not None and found.external_id == fax_id
    assert fax.find_sent(mine, START + timedelta(seconds=1)) is None  # created before `since`
    elsewhere = records_request(Channel(ChannelKind.FAX, BUSY_FAX), "GF-SSSS0009", "att-30")
    assert fax.find_sent(elsewhere, START - timedelta(minutes=5)) is None
    page = world.client.get(
        "/v2/faxes",
        params={"filter[to][eq]": OK_FAX, "page[size]": "2", "page[number]": "2"},
        headers={"Authorization": "Bearer k"},
    ).json()
    assert page["meta"] == {
        "page_number": 2,
        "page_size": 2,
        "total_pages": 2,
        "total_results": 4,
    }
    assert all(decode_client_state(f["client_state"]) for f in page["data"])


def test_cdex_task_search_by_identifier(world: World) -> None:
    """GET /fhir/Task?identifier=<attempt system>|<key> finds the Task made with that key."""
    cdex = CDexTaskRequester(
        world.client,
        requester_name="Acme Health",
        requester_identifier="PAYER-1",
        retrying=no_wait_retrying,
        clock=world.clock,
    )
    channel = Channel(ChannelKind.FHIR, "http://testserver/fhir", owner_id=NPI_OK)
    request = records_request(channel, "GF-TTTT0001", "att-40")
    assert cdex.find_sent(request, START) is None
    receipt = cdex.send(request)
    found = cdex.find_sent(request, START)
    assert found is not None and found.external_id == receipt.external_id
    other = records_request(channel, "GF-TTTT0001", "att-41")
    assert cdex.find_sent(other, START) is None


def test_a_share_of_outbound_status_webhooks_is_lost_seeded() -> None:
    """drop_webhooks=0.5 loses about half of the outbound status webhooks, the same ones for
    the same seed; inbound faxes (providers' answers) are never lost."""

    def run(seed: int) -> tuple[list[str], int, int]:
        clock, carrier = VirtualClock(START), Carrier()
        http = httpx.Client(transport=httpx.MockTransport(carrier.handler))
        sim = Simulator(
            clock=clock,
            webhook_url=WEBHOOK,
            behaviours={},
            directory={},
            http=http,
            public_base_url="http://testserver",
            drop_webhooks=0.5,
            seed=seed,
        )
        with asgi_client(sim.app) as client:
            world = World(clock, carrier, sim, client)
            for n in range(10):
                world.send_fax(OK_FAX, f"GF-UUUU00{n:02d}")
            world.run_until(START + timedelta(hours=3))
        events = carrier.events()
        inbound = sum(e["event_type"] == "fax.received" for e in events)
        kept = [e["event_type"] for e in events if e["event_type"] != "fax.received"]
        return kept, len(sim.far_side(TelnyxFarSide).dropped), inbound

    kept, dropped, inbound = run(seed=7)
    assert len(kept) + dropped == 10 * 4  # queued, media.processed, sending.started, delivered
    assert 10 <= dropped <= 30 and inbound == 10
    assert run(seed=7) == (kept, dropped, inbound)


def test_lost_answers_are_listed_as_received_faxes_from_their_arrival() -> None:
    """drop_inbound_webhooks=1 loses every fax.received webhook; GET /v2/faxes with
    filter[direction][eq]=inbound lists each answer once it has arrived (not before), and the
    real connector reads it back as the webhook would have reported it."""
    clock, carrier = VirtualClock(START), Carrier()
    http = httpx.Client(transport=httpx.MockTransport(carrier.handler))
    sim = Simulator(
        clock=clock,
        webhook_url=WEBHOOK,
        behaviours={},
        directory={},
        http=http,
        public_base_url="http://testserver",
        drop_inbound_webhooks=1.0,
    )
    with asgi_client(sim.app) as client:
        world = World(clock, carrier, sim, client)
        for n in range(3):
            world.send_fax(OK_FAX, f"GF-VVVV00{n:02d}")
        fax = telnyx(world)
        world.run_until(START + timedelta(minutes=5))  # delivered; answers not yet arrived
        assert fax.list_received(START) == []
        world.run_until(START + timedelta(hours=3))
        received = fax.list_received(START)
        assert not [e for e in carrier.events() if e["event_type"] == "fax.received"]
        assert len(received) == 3 == len(sim.far_side(TelnyxFarSide).received_ids(clock.now()))
        assert all(e.from_number == OK_FAX and e.page_count for e in received)
        media = client.get(received[0].media_url.removeprefix("http://testserver"))
        assert media.status_code == 200 and media.content.startswith(b"%PDF")
        assert fax.list_received(clock.now() + timedelta(seconds=1)) == []
