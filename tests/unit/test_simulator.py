"""The simulator: the far side of fax, FHIR and agency channels on a virtual clock, and the
contract that the real connectors and the simulator speak the same wire format."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from reportlab.pdfgen.canvas import Canvas

from connectors.agency_https import HttpsAgencyDeliverer
from connectors.base import FaxReceivedEvent, FaxStatusEvent, PacketSubmission, RecordsRequest
from connectors.fax_telnyx import TelnyxFax, public_key_b64
from connectors.fhir_cdex import CDexTaskRequester
from connectors.retry import no_wait_retrying
from simulator.app import Simulator
from simulator.documents import generate_records_pdf
from simulator.providers import ProviderBehaviour
from simulator.serving import asgi_client, run_in_thread
from worker.documents import extract_reference, is_no_records_reply
from worker.domain.clock import VirtualClock
from worker.domain.types import AttemptOutcome, Channel, ChannelKind

START = datetime(2026, 3, 2, 14, 0, tzinfo=UTC)
CARRIER = "https://carrier.example"
WEBHOOK = f"{CARRIER}/webhooks/telnyx"
SEED = bytes(range(32))
BUSY_FAX, SLOW_FAX, SILENT_FAX, NONE_FAX, OK_FAX = (
    "+16175550101",
    "+16175550102",
    "+16175550103",
    "+16175550104",
    "+16175550105",
)
NPI_OK, NPI_NONE = "1234567893", "1234567801"


def letter(reference: str) -> bytes:
    """A one-page request letter quoting ``reference``, as the worker would produce."""
    buffer = io.BytesIO()
    canvas = Canvas(buffer, invariant=True)
    canvas.drawString(72, 720, "Request for medical records")
    canvas.drawString(72, 700, f"Our reference: {reference}")
    canvas.showPage()
    canvas.save()
    return buffer.getvalue()


@dataclass
class Carrier:
    """Our side as the simulator sees it: serves letters, receives webhooks."""

    letters: dict[str, bytes] = field(default_factory=dict)
    webhooks: list[tuple[bytes, dict[str, str]]] = field(default_factory=list)
    fail_next_webhooks: int = 0

    def handler(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.startswith("/letters/"):
            name = request.url.path.removeprefix("/letters/")
            if name in self.letters:
                return httpx.Response(
                    200, content=self.letters[name], headers={"content-type": "application/pdf"}
                )
            return httpx.Response(404)
        if request.url.path == "/webhooks/telnyx":
            if self.fail_next_webhooks:
                self.fail_next_webhooks -= 1
                return httpx.Response(503)
            self.webhooks.append((request.content, dict(request.headers)))
            return httpx.Response(200)
        return httpx.Response(404)

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(body)["data"] for body, _ in self.webhooks]


@dataclass
class World:
    clock: VirtualClock
    carrier: Carrier
    sim: Simulator
    client: httpx.Client

    def send_fax(self, to: str, reference: str, key: str | None = None) -> str:
        name = f"{reference}.pdf"
        self.carrier.letters[name] = letter(reference)
        response = self.client.post(
            "/v2/faxes",
            json={
                "connection_id": "conn-1",
                "from": "+16175550000",
                "to": to,
                "media_url": f"{CARRIER}/letters/{name}",
                "client_state": base64.b64encode((key or reference).encode()).decode(),
            },
            headers={"Authorization": "Bearer k", "Idempotency-Key": key or reference},
        )
        assert response.status_code == 202, response.text
        return str(response.json()["data"]["id"])

    def run_until(self, until: datetime) -> None:
        """Advance the clock event by event up to ``until``, firing what is due."""
        while (at := self.sim.next_event_at()) is not None and at <= until:
            self.clock.advance_to(at)
            self.sim.fire_due()
        self.clock.advance_to(until)
        self.sim.fire_due()


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
    }
    directory = {
        BUSY_FAX: "busy-clinic",
        SLOW_FAX: "slow-clinic",
        SILENT_FAX: "silent-clinic",
        NONE_FAX: "empty-clinic",
        OK_FAX: "ok-clinic",
        NPI_OK: "ok-clinic",
        NPI_NONE: "empty-clinic",
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


# --- fax ---------------------------------------------------------------------------------------


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


def test_failed_webhooks_are_retried_on_the_next_fire(world: World) -> None:
    """A webhook our side refuses stays queued and is re-sent with meta.attempt 2."""
    world.carrier.fail_next_webhooks = 1
    world.send_fax(OK_FAX, "GF-HHHH0001")
    assert world.sim.fire_due() == 0
    assert world.sim.fire_due() == 1
    ((body, _),) = world.carrier.webhooks
    envelope = json.loads(body)
    assert envelope["data"]["event_type"] == "fax.queued"
    assert envelope["meta"] == {"attempt": 2, "delivered_to": WEBHOOK}


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


# --- FHIR --------------------------------------------------------------------------------------


def task_body(npi: str, reference: str) -> dict[str, Any]:
    return {
        "resourceType": "Task",
        "status": "requested",
        "intent": "order",
        "identifier": [{"system": "urn:goodfaith:request-reference", "value": reference}],
        "for": {"identifier": {"value": "M-1"}},
        "owner": {"identifier": {"system": "http://hl7.org/fhir/sid/us-npi", "value": npi}},
    }


def test_task_lifecycle_requested_in_progress_completed(world: World) -> None:
    """A Task is requested, in-progress after 1 min, completed with the records at +delay."""
    created = world.client.post("/fhir/Task", json=task_body(NPI_OK, "GF-JJJJ0001"))
    assert created.status_code == 201
    task_id = created.json()["id"]
    assert created.headers["location"].startswith(f"http://testserver/fhir/Task/{task_id}")

    def status() -> dict[str, Any]:
        return dict(world.client.get(f"/fhir/Task/{task_id}").json())

    assert status()["status"] == "requested"
    world.clock.advance(60)
    assert status()["status"] == "in-progress"
    world.clock.advance(60 * 60 - 1)
    assert status()["status"] == "in-progress"
    world.clock.advance(1)
    done = status()
    assert done["status"] == "completed"
    assert done["output"][0]["valueReference"]["reference"] == "#records"
    attachment = done["contained"][0]["content"][0]["attachment"]
    assert attachment["contentType"] == "application/pdf"
    assert extract_reference(base64.b64decode(attachment["data"])) == "GF-JJJJ0001"


def test_task_no_records_is_rejected_with_a_reason(world: World) -> None:
    """reply='no_records': the Task ends rejected with statusReason 'no records'."""
    task_id = world.client.post("/fhir/Task", json=task_body(NPI_NONE, "GF-KKKK0001")).json()["id"]
    world.clock.advance(60 * 12)
    task = world.client.get(f"/fhir/Task/{task_id}").json()
    assert task["status"] == "rejected"
    assert task["statusReason"]["text"] == "no records"


def test_task_create_is_conditional_on_if_none_exist(world: World) -> None:
    """A second POST with the same If-None-Exist identifier returns the first Task (200)."""
    headers = {"If-None-Exist": "identifier=urn:goodfaith:request-reference|GF-LLLL0001"}
    first = world.client.post("/fhir/Task", json=task_body(NPI_OK, "GF-LLLL0001"), headers=headers)
    second = world.client.post("/fhir/Task", json=task_body(NPI_OK, "GF-LLLL0001"), headers=headers)
    assert (first.status_code, second.status_code) == (201, 200)
    assert first.json()["id"] == second.json()["id"]


def test_task_without_owner_is_422_operation_outcome(world: World) -> None:
    """A Task without owner NPI is refused with an OperationOutcome pointing at Task.owner."""
    body = task_body(NPI_OK, "GF-MMMM0001")
    del body["owner"]
    response = world.client.post("/fhir/Task", json=body)
    assert response.status_code == 422
    assert response.json()["issue"][0]["expression"] == ["Task.owner"]
    assert world.client.get("/fhir/Task/nope").status_code == 404


# --- agency ------------------------------------------------------------------------------------

PACKET = generate_records_pdf("GF-NNNN0001", "Packet", "M-1", 2)


def submit(world: World, packet: bytes = PACKET, sha: str | None = None, key: str = "d-1") -> Any:
    metadata = {
        "notification_id": "N-1",
        "case_ref": "c-1",
        "supplemental": False,
        "sha256": sha or hashlib.sha256(packet).hexdigest(),
    }
    return world.client.post(
        "/agency/ma-ocha/submissions",
        files={
            "metadata": (None, json.dumps(metadata), "application/json"),
            "packet": ("packet.pdf", packet, "application/pdf"),
            "manifest": ("manifest.json", b"{}", "application/json"),
        },
        headers={"Idempotency-Key": key},
    )


def test_agency_accepts_a_packet_and_replays_on_the_same_key(world: World) -> None:
    """A submission gets a receipt; the same Idempotency-Key returns the same receipt only once."""
    first = submit(world)
    again = submit(world)
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json() == again.json()
    assert first.json()["sha256"] == hashlib.sha256(PACKET).hexdigest()
    assert first.json()["pages"] == 2
    (stored,) = world.sim.submissions
    assert stored.packet == PACKET
    receipt_id = first.json()["receipt_id"]
    fetched = world.client.get(f"/agency/ma-ocha/submissions/{receipt_id}")
    assert fetched.json()["receipt_id"] == receipt_id
    assert world.client.get("/agency/ma-ocha/submissions/R-NOPE").status_code == 404


def test_agency_checks_hash_and_pdf(world: World) -> None:
    """A wrong sha256 or a non-PDF packet is refused with 422; nothing is stored."""
    assert submit(world, sha="0" * 64, key="d-2").json()["errors"][0]["code"] == "sha256_mismatch"
    assert submit(world, packet=b"hello", key="d-3").json()["errors"][0]["code"] == "not_a_pdf"
    assert world.sim.submissions == []


# --- contract: real connectors against the simulator ---------------------------------------------


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
