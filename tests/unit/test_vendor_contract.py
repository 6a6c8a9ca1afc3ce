"""The retrieval-vendor order API contract (connectors/vendor/orders-v1.openapi.yaml): the
document is valid OpenAPI 3.1; what our connector sends matches its request schemas; the
same connector suite passes against the simulator's vendor and against the payloads recorded
in the document; every answer the simulator gives matches the response schemas."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate as validate_spec
from pydantic import SecretStr

from connectors.base import (
    PatientRef,
    ProviderRef,
    RecordsRequest,
    Rejected,
    WebhookError,
)
from connectors.retry import no_wait_retrying
from connectors.vendor.orders import (
    OrdersV1Vendor,
    RetrievalVendorSettings,
    order_body,
    sign,
)
from simulator.app import Simulator
from simulator.providers import ProviderBehaviour
from simulator.serving import asgi_client
from worker.domain.clock import VirtualClock
from worker.domain.types import AttemptOutcome, Channel, ChannelKind

SPEC_PATH = Path(__file__).parents[2] / "connectors" / "vendor" / "orders-v1.openapi.yaml"
SPEC: dict[str, Any] = yaml.safe_load(SPEC_PATH.read_text())
EXAMPLES = {k: v["value"] for k, v in SPEC["components"]["examples"].items()}
SECRET = "contract-secret-0123456789abcdef"
NOW = datetime(2026, 4, 17, 13, 0, tzinfo=UTC)
PDF = b"%PDF-1.4\n%recorded\n"


def schema(name: str) -> Draft202012Validator:
    """A validator for ``components.schemas[name]`` (its $refs resolve within the document)."""
    return Draft202012Validator(
        {"$ref": f"#/components/schemas/{name}", "components": SPEC["components"]}
    )


def request(key: str = "att-5b0c6a3e-1") -> RecordsRequest:
    return RecordsRequest(
        idempotency_key=key,
        reference="GF-7K3M9Q2X",
        channel=Channel(ChannelKind.VENDOR, "ciox"),
        document_url="https://carrier.example.com/v1/media/att-1?token=abc",
        member_id="M123456",
        requester="goodfaith Health Plan",
        purpose="External review (MA): records",
        attempt_number=1,
        respond_by=NOW,
        requested="All records 2026-01-01 to 2026-03-31",
        patient=PatientRef("Jane Q Public", "1970-05-01"),
        provider=ProviderRef("prov-1", "Springfield Orthopedics", "1234567893"),
    )


def test_the_document_is_valid_openapi_and_its_examples_match_their_schemas() -> None:
    validate_spec(SPEC)
    for name in ("OrderReceived", "OrderFulfilled", "OrderNoRecords", "OrderFailed"):
        schema("Order").validate(EXAMPLES[name])
    schema("Error").validate(EXAMPLES["AlreadyFinal"])
    create = SPEC["paths"]["/v1/orders"]["post"]["requestBody"]["content"]["application/json"]
    schema("OrderCreate").validate(create["example"])
    event = SPEC["webhooks"]["orderEvent"]["post"]["requestBody"]["content"]["application/json"]
    schema("OrderEvent").validate(event["example"])


def test_what_we_send_matches_the_order_create_schema() -> None:
    body = order_body(request(), "https://carrier.example.com/v1/webhooks/vendor?vendor_id=ciox")
    schema("OrderCreate").validate(body)
    bad = dict(body)
    del bad["patient"]
    assert list(schema("OrderCreate").iter_errors(bad))  # the schema really checks


def test_the_documented_callback_example_is_taken_when_signed_and_refused_otherwise() -> None:
    event = SPEC["webhooks"]["orderEvent"]["post"]["requestBody"]["content"]["application/json"]
    body = json.dumps(event["example"]).encode()
    vendor = _vendor(httpx.Client(), VirtualClock(NOW))
    parsed = vendor.parse_callback(body, {"Goodfaith-Signature": sign(SECRET, body, NOW)})
    assert (parsed.external_id, parsed.event_type) == ("ciox/ord_9f2c", "order.fulfilled")
    with pytest.raises(WebhookError):
        vendor.parse_callback(body, {"Goodfaith-Signature": sign("x" * 20, body, NOW)})
    with pytest.raises(WebhookError):
        vendor.parse_callback(body, {})
    with pytest.raises(WebhookError):
        vendor.parse_callback(
            b"{not json", {"Goodfaith-Signature": sign(SECRET, b"{not json", NOW)}
        )


def _vendor(
    client: httpx.Client, clock: VirtualClock, base: str = "http://testserver/vendor"
) -> OrdersV1Vendor:
    return OrdersV1Vendor(
        client,
        vendor_id="ciox",
        settings=RetrievalVendorSettings(
            name="Ciox",
            api_base=base,
            api_key=SecretStr("key"),
            webhook_secret=SecretStr(SECRET),
        ),
        callback_url="http://127.0.0.1:9/v1/webhooks/vendor?vendor_id=ciox",
        retrying=no_wait_retrying,
        clock=clock,
    )


# --- one suite, two far sides ------------------------------------------------------------------


class FarSide:
    """A vendor's far side for the suite: ``finish()`` brings the order to ``fulfilled``."""

    def __init__(
        self, vendor: OrdersV1Vendor, finish: Callable[[], None], responses: list[httpx.Response]
    ) -> None:
        self.vendor = vendor
        self.finish = finish
        self.responses = responses


def _recorded() -> FarSide:
    """The payloads recorded in the document, replayed."""
    state = {"order": EXAMPLES["OrderReceived"]}
    responses: list[httpx.Response] = []

    def handle(req: httpx.Request) -> httpx.Response:
        path = req.url.path.removeprefix("/api")
        if req.method == "POST" and path == "/v1/orders":
            response = httpx.Response(201, json=state["order"])
        elif req.method == "GET" and path == "/v1/orders":
            key = req.url.params.get("client_reference")
            found = [state["order"]] if key == state["order"]["client_reference"] else []
            response = httpx.Response(200, json={"orders": found})
        elif req.method == "GET" and path == "/v1/orders/ord_9f2c":
            response = httpx.Response(200, json=state["order"])
        elif req.method == "GET" and path.startswith("/v1/orders/ord_9f2c/documents/"):
            response = httpx.Response(200, content=PDF, headers={"content-type": "application/pdf"})
        elif req.method == "POST" and path == "/v1/orders/ord_9f2c/cancel":
            response = httpx.Response(409, json=EXAMPLES["AlreadyFinal"])
        else:
            response = httpx.Response(404, json={"error": {"code": "not_found", "message": "-"}})
        responses.append(response)
        return response

    def finish() -> None:
        state["order"] = EXAMPLES["OrderFulfilled"]

    client = httpx.Client(transport=httpx.MockTransport(handle))
    vendor = _vendor(client, VirtualClock(NOW), base="https://vendor.example.com/api")
    return FarSide(vendor, finish, responses)


def _simulated() -> Iterator[FarSide]:
    clock = VirtualClock(NOW)
    sim = Simulator(
        clock=clock,
        webhook_url="http://127.0.0.1:9/unused",
        behaviours={"prov-1": ProviderBehaviour(reply_delay_minutes=30, pages=2)},
        directory={},
        http=httpx.Client(transport=httpx.MockTransport(lambda r: httpx.Response(200))),
        public_base_url="http://testserver",
        vendor_webhook_secret=SECRET,
    )
    responses: list[httpx.Response] = []
    client = asgi_client(sim.app)
    client.event_hooks["response"] = [lambda r: (r.read(), responses.append(r))[0]]

    def finish() -> None:
        clock.advance(3600)
        sim.fire_due()

    try:
        yield FarSide(_vendor(client, clock), finish, responses)
    finally:
        client.close()


@pytest.fixture(params=["recorded", "simulator"])
def far(request: pytest.FixtureRequest) -> Iterator[FarSide]:
    if request.param == "recorded":
        yield _recorded()
    else:
        yield from _simulated()


def test_an_order_is_created_found_polled_and_its_records_fetched(far: FarSide) -> None:
    receipt = far.vendor.send(request())
    vendor_id, order_id = receipt.external_id.split("/")
    assert vendor_id == "ciox" and order_id.startswith("ord_")
    found = far.vendor.find_sent(request(), NOW)
    assert found is not None and found.external_id == receipt.external_id
    assert far.vendor.find_sent(request("att-other-1"), NOW) is None
    first = far.vendor.poll(order_id)
    assert first.outcome in (AttemptOutcome.SENT, AttemptOutcome.DELIVERED) and not first.documents
    far.finish()
    done = far.vendor.poll(order_id)
    assert done.status == "completed" and done.outcome is AttemptOutcome.DELIVERED
    assert len(done.documents) == 1 and done.documents[0].data.startswith(b"%PDF")
    assert done.documents[0].source is ChannelKind.VENDOR and not done.no_records
    assert far.vendor.cancel(order_id, "withdrawn") is False  # finished: nothing to withdraw


def test_every_answer_matches_the_documented_schemas(far: FarSide) -> None:
    receipt = far.vendor.send(request())
    order_id = receipt.external_id.split("/")[1]
    far.vendor.find_sent(request(), NOW)
    far.finish()
    far.vendor.poll(order_id)
    far.vendor.cancel(order_id, "withdrawn")
    checked = 0
    for response in far.responses:
        ctype = response.headers.get("content-type", "")
        if not ctype.startswith("application/json"):
            assert ctype.startswith("application/pdf")
            continue
        body = response.json()
        if response.status_code >= 400:
            schema("Error").validate(body)
        elif "orders" in body:
            for order in body["orders"]:
                schema("Order").validate(order)
        else:
            schema("Order").validate(body)
        checked += 1
    assert checked >= 4


# --- the recorded terminal states --------------------------------------------------------------


def _replaying(order: dict[str, Any]) -> OrdersV1Vendor:
    def handle(req: httpx.Request) -> httpx.Response:
        if "/documents/" in req.url.path:
            return httpx.Response(200, content=PDF, headers={"content-type": "application/pdf"})
        return httpx.Response(200, json=order)

    client = httpx.Client(transport=httpx.MockTransport(handle))
    return _vendor(client, VirtualClock(NOW), base="https://vendor.example.com/api")


def test_a_no_records_order_yields_its_certificate_as_a_no_records_document() -> None:
    result = _replaying(EXAMPLES["OrderNoRecords"]).poll("ord_77ab")
    assert result.no_records and result.outcome is AttemptOutcome.DELIVERED
    (certificate,) = result.documents
    assert certificate.no_records and certificate.external_id == "ciox/ord_77ab/cert_1"


def test_a_failed_order_fails_the_attempt_with_its_reason() -> None:
    result = _replaying(EXAMPLES["OrderFailed"]).poll("ord_5e5e")
    assert result.outcome is AttemptOutcome.FAILED
    assert result.reason == "provider refused the authorization"


def test_a_document_on_another_host_is_never_fetched_with_our_key() -> None:
    order = json.loads(json.dumps(EXAMPLES["OrderFulfilled"]))
    order["documents"][0]["url"] = "https://attacker.example.net/steal"
    with pytest.raises(Rejected):
        _replaying(order).poll("ord_9f2c")
