"""The contract: the real connectors and the simulator speak the same wire format."""

from __future__ import annotations

import hashlib
from datetime import timedelta

import pytest

from connectors.base import FaxReceivedEvent, FaxStatusEvent, PacketSubmission, RecordsRequest
from connectors.delivery.https import HttpsAgencyDeliverer
from connectors.fax.telnyx import TelnyxFax, public_key_b64
from connectors.fhir.cdex import CDexTaskRequester
from connectors.retry import no_wait_retrying
from tests.unit.simulator.world import (
    CARRIER,
    NPI_NONE,
    NPI_OK,
    OK_FAX,
    PACKET,
    SEED,
    START,
    WEBHOOK,
    World,
    letter,
)
from worker.documents import extract_reference
from worker.domain.types import AttemptOutcome, Channel, ChannelKind


def records_request(channel: Channel, reference: str, key: str) -> RecordsRequest:
    return RecordsRequest(
        idempotency_key=key,
        reference=reference,
        channel=channel,
        document_url=f"{CARRIER}/letters/{reference}.pdf",
        member_id="M-1",
        requester="Acme Health",
        purpose="External review",
    )


def test_contract_telnyx_connector_against_the_simulator(world: World) -> None:
    """TelnyxFax sends to the simulator, verifies its signed webhooks and fetches the reply."""
    fax = TelnyxFax(
        world.client,
        api_key="KEY",
        connection_id="conn-1",
        from_number="+16175550000",
        webhook_url=WEBHOOK,
        base_url="http://testserver",
        public_key=public_key_b64(SEED),
        retrying=no_wait_retrying,
        clock=world.clock,
    )
    world.carrier.letters["GF-OOOO0001.pdf"] = letter("GF-OOOO0001")
    request = records_request(Channel(ChannelKind.FAX, OK_FAX), "GF-OOOO0001", "att-9")
    receipt = fax.send(request)
    assert fax.send(request).external_id == receipt.external_id  # idempotent re-send
    events: list[FaxStatusEvent | FaxReceivedEvent | None] = []
    while (at := world.sim.next_event_at()) is not None:
        world.clock.advance_to(at)
        world.sim.fire_due()
        # Verify as they arrive: the signature timestamp is checked against the same clock.
        events += [fax.parse_webhook(b, h) for b, h in world.carrier.webhooks[len(events) :]]
    assert world.clock.now() == START + timedelta(minutes=62)
    statuses = [e for e in events if isinstance(e, FaxStatusEvent)]
    assert {e.fax_id for e in statuses} == {receipt.external_id}
    assert {e.client_state for e in statuses} == {"att-9"}
    assert statuses[-1].outcome is AttemptOutcome.DELIVERED
    (received,) = [e for e in events if isinstance(e, FaxReceivedEvent)]
    document = fax.fetch_media(received.media_url)
    assert document.content_type == "application/pdf"
    assert extract_reference(document.data) == "GF-OOOO0001"


def test_contract_invalid_number_is_invalid_destination(world: World) -> None:
    """The simulator's 422 for a bad number reaches the connector as InvalidDestination."""
    from connectors.base import InvalidDestination

    fax = TelnyxFax(
        world.client,
        api_key="KEY",
        connection_id="c",
        from_number="+16175550000",
        webhook_url=None,
        base_url="http://testserver",
        retrying=no_wait_retrying,
    )
    with pytest.raises(InvalidDestination):
        fax.send(records_request(Channel(ChannelKind.FAX, "617-555"), "GF-PPPP0001", "att-10"))


def test_contract_cdex_connector_against_the_simulator(world: World) -> None:
    """CDexTaskRequester creates, polls and reads the completed Task's PDF from the simulator."""
    cdex = CDexTaskRequester(
        world.client,
        requester_name="Acme Health",
        requester_identifier="PAYER-1",
        retrying=no_wait_retrying,
        clock=world.clock,
    )
    channel = Channel(ChannelKind.FHIR, "http://testserver/fhir", owner_id=NPI_OK)
    request = records_request(channel, "GF-QQQQ0001", "att-11")
    receipt = cdex.send(request)
    assert cdex.send(request).external_id == receipt.external_id  # conditional create
    assert cdex.poll(receipt.external_id).outcome is AttemptOutcome.SENT
    world.clock.advance(60)
    assert cdex.poll(receipt.external_id).outcome is AttemptOutcome.DELIVERED
    world.clock.advance(3600)
    result = cdex.poll(receipt.external_id)
    assert result.status == "completed"
    (document,) = result.documents
    assert extract_reference(document.data) == "GF-QQQQ0001"

    empty = records_request(
        Channel(ChannelKind.FHIR, "http://testserver/fhir", owner_id=NPI_NONE),
        "GF-QQQQ0002",
        "att-12",
    )
    none_receipt = cdex.send(empty)
    world.clock.advance(3600)
    assert cdex.poll(none_receipt.external_id).no_records is True


def test_contract_agency_connector_against_the_simulator(world: World) -> None:
    """HttpsAgencyDeliverer's upload is accepted by the simulated agency, receipt hash matching."""
    deliverer = HttpsAgencyDeliverer(
        world.client,
        submit_urls={"ma-ocha": "http://testserver/agency/ma-ocha/submissions"},
        retrying=no_wait_retrying,
    )
    submission = PacketSubmission(
        idempotency_key="dlv-9",
        agency_id="ma-ocha",
        case_ref="c-9",
        notification_id="N-9",
        packet_pdf=PACKET,
        manifest={"documents": []},
        sha256=hashlib.sha256(PACKET).hexdigest(),
    )
    first = deliverer.deliver(submission)
    again = deliverer.deliver(submission)
    assert first.receipt_id == again.receipt_id
    assert first.sha256 == submission.sha256
    assert first.received_at == START
    (stored,) = world.sim.submissions
    assert stored.metadata["notification_id"] == "N-9"
