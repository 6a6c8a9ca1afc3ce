"""TelnyxFax: the request it sends, the errors it raises, the webhooks it decodes and verifies."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from connectors.base import (
    AuthError,
    FaxChannel,
    FaxReceivedEvent,
    FaxStatusEvent,
    InvalidDestination,
    RecordsRequest,
    Rejected,
    TransientError,
    WebhookError,
)
from connectors.fax.telnyx import TelnyxFax, public_key_b64, sign_webhook
from connectors.retry import no_wait_retrying
from worker.domain.clock import VirtualClock
from worker.domain.types import AttemptOutcome, Channel, ChannelKind

NOW = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
SEED = bytes(range(32))
Handler = Any


def make_fax(handler: Handler, **kwargs: Any) -> TelnyxFax:
    options: dict[str, Any] = {
        "api_key": "KEY123",
        "connection_id": "conn-1",
        "from_number": "+16175550000",
        "webhook_url": "https://carrier.example/webhooks/telnyx",
        "retrying": no_wait_retrying,
        "clock": VirtualClock(NOW),
        "public_key": public_key_b64(SEED),
        "media_hosts": ["media.example"],
    }
    options.update(kwargs)
    return TelnyxFax(httpx.Client(transport=httpx.MockTransport(handler)), **options)


def fax_request(to: str = "+16175551234") -> RecordsRequest:
    return RecordsRequest(
        idempotency_key="att-0001",
        reference="GF-ABCD1234",
        channel=Channel(kind=ChannelKind.FAX, destination=to),
        document_url="https://carrier.example/letters/att-0001.pdf",
        member_id="M-SECRET-1",
        requester="Acme Health",
        purpose="External review",
    )


def accepted(request: httpx.Request) -> httpx.Response:
    return httpx.Response(202, json={"data": {"id": "fax-42", "status": "queued"}})


def test_telnyx_fax_is_a_fax_channel() -> None:
    """TelnyxFax satisfies the FaxChannel protocol and declares the fax kind."""
    fax: FaxChannel = make_fax(accepted)
    assert fax.kind is ChannelKind.FAX


def test_send_posts_the_documented_body_with_auth_and_idempotency_key() -> None:
    """send() POSTs /v2/faxes with Bearer auth, Idempotency-Key and the Telnyx JSON fields."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return accepted(request)

    receipt = make_fax(handler).send(fax_request())
    assert receipt.external_id == "fax-42"
    assert receipt.outcome is AttemptOutcome.SENT
    (request,) = seen
    assert request.method == "POST"
    assert str(request.url) == "https://api.telnyx.com/v2/faxes"
    assert request.headers["authorization"] == "Bearer KEY123"
    assert request.headers["idempotency-key"] == "att-0001"
    assert json.loads(request.content) == {
        "connection_id": "conn-1",
        "from": "+16175550000",
        "to": "+16175551234",
        "media_url": "https://carrier.example/letters/att-0001.pdf",
        "webhook_url": "https://carrier.example/webhooks/telnyx",
        "client_state": base64.b64encode(b"att-0001").decode(),
        "store_media": False,
    }


def test_send_retries_a_5xx_then_succeeds_with_the_same_key() -> None:
    """A 500 then a 202 yields the receipt; both tries carry the same Idempotency-Key."""
    keys: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        keys.append(request.headers["idempotency-key"])
        return httpx.Response(500) if len(keys) == 1 else accepted(request)

    assert make_fax(handler).send(fax_request()).external_id == "fax-42"
    assert keys == ["att-0001", "att-0001"]


def test_send_422_on_the_number_is_invalid_destination() -> None:
    """Telnyx's 422 pointing at /to becomes InvalidDestination (not retried)."""
    calls: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        body = {
            "errors": [
                {
                    "code": "10016",
                    "title": "Phone number must be in +E.164 format",
                    "source": {"pointer": "/to"},
                }
            ]
        }
        return httpx.Response(422, json=body)

    with pytest.raises(InvalidDestination, match="10016"):
        make_fax(handler).send(fax_request(to="6175551234"))
    assert calls == [1]


@pytest.mark.parametrize(
    ("status", "expected"),
    [(401, AuthError), (403, AuthError), (400, Rejected), (429, TransientError)],
)
def test_send_maps_other_statuses(status: int, expected: type[Exception]) -> None:
    """Auth failures, bad requests and rate limits surface as the error tree says."""
    with pytest.raises(expected):
        make_fax(lambda request: httpx.Response(status)).send(fax_request())


def test_send_refuses_a_non_fax_channel() -> None:
    """A FHIR channel handed to the fax connector is a wiring error, not a fax."""
    request = fax_request()
    fhir = RecordsRequest(**{**request.__dict__, "channel": Channel(ChannelKind.FHIR, "https://x")})
    with pytest.raises(InvalidDestination):
        make_fax(accepted).send(fhir)


def test_send_without_data_id_is_rejected() -> None:
    """A success body without data.id cannot be tracked and is refused."""
    with pytest.raises(Rejected, match=r"data\.id"):
        make_fax(lambda request: httpx.Response(202, json={"data": {}})).send(fax_request())


# --- webhooks ----------------------------------------------------------------------------------


def envelope(event_type: str, **payload: Any) -> bytes:
    body = {
        "data": {
            "event_type": event_type,
            "id": "evt-1",
            "occurred_at": "2026-03-02T15:02:00.123456Z",
            "record_type": "event",
            "payload": {"fax_id": "fax-42", **payload},
        },
        "meta": {"attempt": 1, "delivered_to": "https://carrier.example/webhooks/telnyx"},
    }
    return json.dumps(body).encode()


STATE = base64.b64encode(b"att-0001").decode()


def signed_headers(body: bytes, timestamp: int, key: bytes = SEED) -> dict[str, str]:
    return {
        "Telnyx-Signature-Ed25519": sign_webhook(key, timestamp, body),
        "Telnyx-Timestamp": str(timestamp),
    }


def parse(fax: TelnyxFax, body: bytes) -> FaxStatusEvent | FaxReceivedEvent | None:
    """``fax.parse_webhook`` of ``body`` signed now with the account key (decoding tests)."""
    return fax.parse_webhook(body, signed_headers(body, int(NOW.timestamp())))


@pytest.mark.parametrize("event_type", ["fax.queued", "fax.media.processed", "fax.sending.started"])
def test_progress_events_have_no_outcome(event_type: str) -> None:
    """Progress events decode with outcome None and the client_state decoded."""
    event = parse(make_fax(accepted), envelope(event_type, client_state=STATE))
    assert isinstance(event, FaxStatusEvent)
    assert (event.event_type, event.outcome, event.client_state) == (event_type, None, "att-0001")
    assert event.occurred_at == datetime(2026, 3, 2, 15, 2, 0, 123456, tzinfo=UTC)


def test_delivered_event_is_delivered() -> None:
    """fax.delivered is outcome DELIVERED for the fax id."""
    event = parse(make_fax(accepted), envelope("fax.delivered", page_count=2))
    assert isinstance(event, FaxStatusEvent)
    assert (event.fax_id, event.outcome, event.retryable) == (
        "fax-42",
        AttemptOutcome.DELIVERED,
        False,
    )


@pytest.mark.parametrize(
    ("reason", "retryable"),
    [
        ("user_busy", True),
        ("receiver_no_answer", True),
        ("receiver_no_response", True),
        ("receiver_call_dropped", True),
        ("fax_initial_communication_timeout", True),
        ("destination_invalid", False),
        ("receiver_unallocated_number", False),
        ("receiver_decline", False),
        ("file_download_failed", False),
    ],
)
def test_failed_event_carries_reason_and_retryability(reason: str, retryable: bool) -> None:
    """fax.failed is FAILED with failure_reason; busy/no-answer-type reasons are retryable."""
    event = parse(make_fax(accepted), envelope("fax.failed", failure_reason=reason))
    assert isinstance(event, FaxStatusEvent)
    assert (event.outcome, event.failure_reason, event.retryable) == (
        AttemptOutcome.FAILED,
        reason,
        retryable,
    )


def test_received_event_is_decoded() -> None:
    """fax.received yields the inbound fax's numbers, media URL, page count and partial flag."""
    body = envelope(
        "fax.received",
        **{"from": "+16175551234", "to": "+16175550000"},
        media_url="https://media.example/f.pdf",
        page_count=7,
        partial_content=True,
        direction="inbound",
    )
    event = parse(make_fax(accepted), body)
    assert event == FaxReceivedEvent(
        event_id="evt-1",
        fax_id="fax-42",
        occurred_at=datetime(2026, 3, 2, 15, 2, 0, 123456, tzinfo=UTC),
        from_number="+16175551234",
        to_number="+16175550000",
        media_url="https://media.example/f.pdf",
        page_count=7,
        partial=True,
    )


def test_other_event_types_are_ignored() -> None:
    """Events we do not act on (fax.receiving.started, call events) decode to None."""
    fax = make_fax(accepted)
    assert parse(fax, envelope("fax.receiving.started")) is None
    assert parse(fax, envelope("call.hangup")) is None


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[]",
        b'{"data": 1}',
        b'{"data": {"id": "e"}}',
        envelope("fax.delivered").replace(b'"fax_id": "fax-42"', b'"fax_id": 5'),
        envelope("fax.delivered").replace(b"2026-03-02T15:02:00.123456Z", b"yesterday"),
        envelope("fax.received", **{"from": "+1617"}),
        envelope("fax.queued").replace(b'"record_type": "event"', b'"record_type": "fax"'),
    ],
    ids=[
        "not-json",
        "array",
        "data-not-object",
        "no-event-type",
        "bad-fax-id",
        "bad-time",
        "received-without-media",
        "not-an-event",
    ],
)
def test_malformed_webhooks_raise_webhook_error(body: bytes) -> None:
    """Malformed envelopes are WebhookError, never a crash or a silent None."""
    with pytest.raises(WebhookError):
        parse(make_fax(accepted), body)


def test_a_good_signature_verifies() -> None:
    """A webhook signed over 'timestamp|body' with the account key is accepted."""
    fax = make_fax(accepted, public_key=public_key_b64(SEED))
    body = envelope("fax.delivered")
    event = fax.parse_webhook(body, signed_headers(body, int(NOW.timestamp())))
    assert isinstance(event, FaxStatusEvent)


def test_raw_public_key_bytes_are_accepted() -> None:
    """The public key may be given as the 32 raw bytes instead of base64 text."""
    raw = Ed25519PrivateKey.from_private_bytes(SEED).public_key().public_bytes_raw()
    fax = make_fax(accepted, public_key=raw)
    body = envelope("fax.queued")
    assert fax.parse_webhook(body, signed_headers(body, int(NOW.timestamp()))) is not None


@pytest.mark.parametrize(
    "tamper",
    ["body", "timestamp", "other-key", "missing-signature", "missing-timestamp", "garbage"],
)
def test_bad_signatures_are_refused(tamper: str) -> None:
    """A tampered body or timestamp, another key, or missing headers are WebhookError."""
    fax = make_fax(accepted, public_key=public_key_b64(SEED))
    body = envelope("fax.delivered")
    ts = int(NOW.timestamp())
    headers = signed_headers(body, ts)
    if tamper == "body":
        body = body.replace(b"fax-42", b"fax-43")
    elif tamper == "timestamp":
        headers["Telnyx-Timestamp"] = str(ts + 1)
    elif tamper == "other-key":
        headers = signed_headers(body, ts, key=bytes(32))
    elif tamper == "missing-signature":
        del headers["Telnyx-Signature-Ed25519"]
    elif tamper == "missing-timestamp":
        del headers["Telnyx-Timestamp"]
    else:
        headers["Telnyx-Signature-Ed25519"] = "%%%not-base64"
    with pytest.raises(WebhookError):
        fax.parse_webhook(body, headers)


def test_a_stale_signature_is_refused() -> None:
    """A correctly signed webhook older than the tolerance is refused as a replay."""
    fax = make_fax(accepted, public_key=public_key_b64(SEED), timestamp_tolerance=300)
    body = envelope("fax.delivered")
    assert fax.parse_webhook(body, signed_headers(body, int(NOW.timestamp()) - 299)) is not None
    with pytest.raises(WebhookError, match="tolerance"):
        fax.parse_webhook(body, signed_headers(body, int(NOW.timestamp()) - 301))


def test_without_a_public_key_signatures_are_not_required() -> None:
    """With no key configured, unsigned webhooks are decoded (development only)."""
    assert parse(make_fax(accepted), envelope("fax.queued")) is not None


# --- media -------------------------------------------------------------------------------------


def test_fetch_media_downloads_without_auth_and_keeps_the_content_type() -> None:
    """fetch_media GETs the pre-signed URL without Authorization and returns the document."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if len(seen) == 1:
            return httpx.Response(503)
        return httpx.Response(
            200, content=b"%PDF-1.4 x", headers={"content-type": "application/pdf; charset=binary"}
        )

    doc = make_fax(handler).fetch_media("https://media.example/f.pdf?sig=1")
    assert doc.data == b"%PDF-1.4 x"
    assert doc.content_type == "application/pdf"
    assert doc.source is ChannelKind.FAX
    assert doc.external_id.startswith("sha256:")
    assert len(seen) == 2
    assert "authorization" not in seen[1].headers


def test_fetch_media_on_an_expired_url_is_rejected_not_auth() -> None:
    """A 403 from an expired pre-signed URL is Rejected (not a credentials problem)."""
    with pytest.raises(Rejected, match="expired"):
        make_fax(lambda request: httpx.Response(403)).fetch_media("https://media.example/f")


def test_send_422_with_a_number_code_is_invalid_destination() -> None:
    """A 422 carrying a Telnyx number code (10001) is InvalidDestination even when its
    title and pointer name no number: the vendor's codes are layered over the shared mapper."""

    def handler(request: httpx.Request) -> httpx.Response:
        body = {"errors": [{"code": "10001", "title": "Inactive", "source": {"pointer": "/x"}}]}
        return httpx.Response(422, json=body)

    with pytest.raises(InvalidDestination, match="10001"):
        make_fax(handler).send(fax_request())


def test_telnyx_fax_names_its_vendor() -> None:
    """TelnyxFax.vendor is its registry name (recorded per attempt, used in its webhook URL)."""
    assert TelnyxFax.vendor == "telnyx"
