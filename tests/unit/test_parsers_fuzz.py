"""Every parser of what other systems send us, under hypothesis: any bytes and headers give
an event, None (an event we do not act on) or a refusal in our own error tree — never another
exception. Telnyx webhooks (signed, so decoding is reached), Sinch callbacks (JSON and
multipart, with the right credentials), retrieval vendors' order callbacks (HMAC-signed), and
the CDex Task a provider's FHIR server returns."""

from __future__ import annotations

import base64
import contextlib
import json
from dataclasses import astuple
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connectors.base import (
    ConnectorError,
    FaxReceivedEvent,
    FaxStatusEvent,
    PollResult,
    WebhookError,
)
from connectors.fax.sinch import SinchFax
from connectors.fax.telnyx import TelnyxFax
from connectors.fax.telnyx_events import public_key_b64, sign_webhook
from connectors.fhir.cdex import CDexTaskRequester
from connectors.jsonbody import unstorable
from connectors.retry import no_wait_retrying
from connectors.vendor.orders import (
    SIGNATURE_HEADER,
    OrderEvent,
    OrdersV1Vendor,
    RetrievalVendorSettings,
    sign,
)
from connectors.vendor.router import RetrievalVendors
from tests.conftest import at
from worker.domain.clock import VirtualClock

NOW = at("2026-04-17T09:00:00-04:00")
FUZZ = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    database=None,
)
KEY = Ed25519PrivateKey.generate()

#: Text, with what a database refuses drawn often: NUL and lone surrogates (valid as JSON
#: escapes, unstorable in PostgreSQL)
TEXT = st.text(max_size=20) | st.sampled_from(["\x00", "fax\x00", "\ud800", "x\udfff"])
JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()  # NaN and Infinity too: Python's json writes and reads them
    | TEXT,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=10,
)
#: ISO-8601 instants at the edges of the calendar, with and without offsets, and junk
INSTANTS = (
    st.datetimes(timezones=st.timezones() | st.none()).map(lambda d: d.isoformat())
    | st.sampled_from(
        [
            "9999-12-31T23:59:59-23:59",
            "0001-01-01T00:00:00+23:59",
            "9999-12-31T23:59:59Z",
            "2026-04-17T09:00:00Z",
            "",
            "not a time",
        ]
    )
    | JSON
)
HEADERS = st.dictionaries(st.text(max_size=30), st.text(max_size=60), max_size=4)


def _is_event(found: object) -> None:
    assert found is None or isinstance(found, FaxStatusEvent | FaxReceivedEvent)
    if found is not None:
        assert found.occurred_at.tzinfo is not None  # compared with aware instants downstream
        assert not unstorable(astuple(found)), "an event must be storable in PostgreSQL text"


# --- Telnyx -----------------------------------------------------------------------------------


def _telnyx() -> TelnyxFax:
    return TelnyxFax(
        httpx.Client(transport=httpx.MockTransport(lambda r: httpx.Response(404))),
        api_key="KEY-test",
        connection_id="conn-1",
        from_number="+16175550000",
        webhook_url=None,
        public_key=public_key_b64(KEY),
        clock=VirtualClock(NOW),
        media_hosts=["media.telnyx.invalid"],
    )


TELNYX_EVENTS = st.sampled_from(
    [
        *("fax.queued", "fax.media.processed", "fax.sending.started", "fax.delivered"),
        *("fax.failed", "fax.received", "fax.receiving.started", "call.initiated"),
    ]
)
TELNYX_ENVELOPES = st.fixed_dictionaries(
    {
        "data": st.fixed_dictionaries(
            {"event_type": TELNYX_EVENTS | JSON, "id": TEXT | JSON},
            optional={
                "occurred_at": INSTANTS,
                "record_type": st.just("event") | JSON,
                "payload": st.fixed_dictionaries(
                    {},
                    optional={
                        "fax_id": TEXT | JSON,
                        "from": st.text(max_size=12) | JSON,
                        "to": st.text(max_size=12) | JSON,
                        "media_url": st.text(max_size=30) | JSON,
                        "page_count": JSON,
                        "partial_content": JSON,
                        "failure_reason": st.sampled_from(["user_busy", "x"]) | JSON,
                        "client_state": st.binary(max_size=20).map(
                            lambda b: base64.b64encode(b).decode()
                        )
                        | JSON,
                    },
                )
                | JSON,
            },
        )
        | JSON
    },
    optional={"meta": JSON},
)
TELNYX_BODIES = (
    st.binary(max_size=200)
    | JSON.map(lambda v: json.dumps(v).encode())
    | TELNYX_ENVELOPES.map(lambda v: json.dumps(v).encode())
    | st.integers(1, 100_000).map(lambda n: b'{"data":' + b"[" * n + b"]" * n + b"}")
)


@FUZZ
@given(body=TELNYX_BODIES, headers=HEADERS, signed=st.booleans(), skew=st.integers(-400, 400))
def test_telnyx_webhooks_are_an_event_none_or_a_webhook_error(
    body: bytes, headers: dict[str, str], signed: bool, skew: int
) -> None:
    """Signed or not, any body: an event, None, or WebhookError (a 401 at the API)."""
    if signed:
        stamp = int(NOW.timestamp()) + skew
        headers = {
            **headers,
            "telnyx-timestamp": str(stamp),
            "telnyx-signature-ed25519": sign_webhook(KEY, stamp, body),
        }
    with contextlib.suppress(WebhookError):
        _is_event(_telnyx().parse_webhook(body, headers))


@FUZZ
@given(stamp=st.text(max_size=500) | st.integers().map(str), signature=st.text(max_size=100))
def test_telnyx_signature_headers_of_any_text_are_refused_not_crashed(
    stamp: str, signature: str
) -> None:
    """Timestamps of any text or size (a 400-digit one overflowed the age arithmetic) and
    signatures of any text: WebhookError."""
    headers = {"telnyx-timestamp": stamp, "telnyx-signature-ed25519": signature}
    with contextlib.suppress(WebhookError):
        _is_event(_telnyx().parse_webhook(b"{}", headers))


def test_telnyx_extreme_occurred_at_is_refused() -> None:
    """The instant schemathesis found (9999-12-31T23:59:59-23:59, no UTC form): WebhookError,
    not OverflowError."""
    body = json.dumps(
        {
            "data": {
                "event_type": "fax.delivered",
                "id": "evt-1",
                "occurred_at": "9999-12-31T23:59:59-23:59",
                "payload": {"fax_id": "fax-1"},
            }
        }
    ).encode()
    stamp = int(NOW.timestamp())
    headers = {
        "telnyx-timestamp": str(stamp),
        "telnyx-signature-ed25519": sign_webhook(KEY, stamp, body),
    }
    try:
        _telnyx().parse_webhook(body, headers)
    except WebhookError as exc:
        assert "occurred_at" in str(exc)
    else:
        raise AssertionError("an instant without a UTC form was accepted")


# --- Sinch ------------------------------------------------------------------------------------

SINCH_AUTH = "Basic " + base64.b64encode(b"sinch:pw").decode()


def _sinch() -> SinchFax:
    return SinchFax(
        httpx.Client(transport=httpx.MockTransport(lambda r: httpx.Response(404))),
        project_id="proj-1",
        key_id="key",
        key_secret="secret",
        from_number="+16175550000",
        webhook_url=None,
        webhook_username="sinch",
        webhook_password="pw",
        clock=VirtualClock(NOW),
    )


SINCH_FAX = st.fixed_dictionaries(
    {},
    optional={
        "id": TEXT | JSON,
        "direction": st.sampled_from(["OUTBOUND", "INBOUND"]) | JSON,
        "status": st.sampled_from(["QUEUED", "IN_PROGRESS", "COMPLETED", "FAILURE"]) | JSON,
        "from": st.text(max_size=12) | JSON,
        "to": st.text(max_size=12) | JSON,
        "errorType": st.sampled_from(["CALL_ERROR", "LINE_ERROR"]) | JSON,
        "errorCode": JSON,
        "numberOfPages": JSON,
        "labels": JSON | st.fixed_dictionaries({"goodfaithKey": JSON}),
        "createTime": INSTANTS,
        "completedTime": INSTANTS,
    },
)
SINCH_CALLBACKS = st.fixed_dictionaries(
    {},
    optional={
        "event": st.sampled_from(["FAX_COMPLETED", "INCOMING_FAX", "OTHER"]) | JSON,
        "eventTime": INSTANTS,
        "fax": SINCH_FAX | JSON,
    },
)


def _multipart(fields: dict[str, bytes], boundary: str) -> bytes:
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode()
        + value
        + b"\r\n"
        for name, value in fields.items()
    ]
    return b"".join(parts) + f"--{boundary}--\r\n".encode()


@FUZZ
@given(
    callback=SINCH_CALLBACKS,
    raw=st.binary(max_size=200),
    shape=st.sampled_from(["json", "multipart", "raw-json", "raw-multipart", "deep-multipart"]),
    boundary=st.text(st.characters(codec="ascii"), min_size=1, max_size=20),
    headers=HEADERS,
    authorised=st.booleans(),
)
def test_sinch_callbacks_are_an_event_none_or_a_webhook_error(
    callback: dict[str, Any],
    raw: bytes,
    shape: str,
    boundary: str,
    headers: dict[str, str],
    authorised: bool,
) -> None:
    """JSON or multipart (the fax as a JSON text part, possibly nested past any limit), or
    bytes of no shape under either content type, with or without the right credentials: an
    event, None, or WebhookError."""
    if shape == "json":
        body, content_type = json.dumps(callback).encode(), "application/json"
    elif shape == "raw-json":
        body, content_type = raw, "application/json"
    else:
        content_type = f'multipart/form-data; boundary="{boundary}"'
        fax = json.dumps(callback.get("fax")).encode()
        if shape == "deep-multipart":
            fax = b"[" * 50_000 + b"]" * 50_000
        fields = {k: json.dumps(v).encode() for k, v in callback.items() if k != "fax"}
        body = raw if shape == "raw-multipart" else _multipart({**fields, "fax": fax}, boundary)
    headers = {**headers, "content-type": content_type}
    if authorised:
        headers["authorization"] = SINCH_AUTH
    with contextlib.suppress(WebhookError):
        _is_event(_sinch().parse_webhook(body, headers))


@FUZZ
@given(content_type=st.text(max_size=80), body=st.binary(max_size=200))
def test_sinch_content_types_of_any_text_are_refused_not_crashed(
    content_type: str, body: bytes
) -> None:
    """A Content-Type of any text (outside latin-1, spanning lines, a multipart without a
    boundary): an event, None or WebhookError."""
    headers = {"authorization": SINCH_AUTH, "content-type": content_type}
    with contextlib.suppress(WebhookError):
        _is_event(_sinch().parse_webhook(body, headers))


# --- CDex: the Task a provider's FHIR server returns --------------------------------------------

TASK_URL = "https://fhir.provider.invalid/r4/Task/t-1"
CODING = st.fixed_dictionaries(
    {},
    optional={
        "coding": st.lists(
            st.fixed_dictionaries(
                {},
                optional={
                    "system": st.sampled_from(
                        ["http://hl7.org/fhir/us/davinci-hrex/CodeSystem/hrex-temp"]
                    )
                    | JSON,
                    "code": st.sampled_from(["data-value", "data-code"]) | JSON,
                },
            )
            | JSON,
            max_size=2,
        )
        | JSON,
        "text": JSON,
    },
)
ATTACHMENT = st.fixed_dictionaries(
    {},
    optional={
        "contentType": st.sampled_from(["application/pdf", "image/tiff"]) | JSON,
        "data": st.binary(max_size=30).map(lambda b: base64.b64encode(b).decode()) | JSON,
        "url": st.sampled_from(["Binary/b-1", "https://fhir.provider.invalid/r4/Binary/b-2"])
        | st.text(max_size=30)
        | JSON,
    },
)
#: completed Tasks carry the documents: the most to read, so the most often drawn
TASK_STATUSES = st.sampled_from(
    ["completed"] * 4 + ["requested", "accepted", "in-progress", "on-hold", "rejected", "failed"]
)
#: a value of each JSON type, never empty (``x or []`` lets an empty one through unread)
TRUTHY = (
    st.integers(min_value=1)
    | st.text(min_size=1, max_size=10)
    | st.just(True)
    | st.floats().filter(bool)
    | st.lists(JSON, min_size=1, max_size=3)
    | st.dictionaries(st.text(max_size=8), JSON, min_size=1, max_size=3)
)
#: Tasks shaped as CDex describes them, any member possibly of another JSON type
TASKS = st.fixed_dictionaries(
    {"resourceType": st.just("Task"), "status": TASK_STATUSES},
    optional={
        "statusReason": CODING | JSON,
        "owner": JSON,
        "contained": st.lists(
            st.fixed_dictionaries({"id": st.text(max_size=5) | JSON}, optional={"content": JSON})
            | JSON,
            max_size=2,
        )
        | JSON,
        "output": st.lists(
            st.fixed_dictionaries(
                {"type": CODING | JSON},
                optional={
                    "valueAttachment": ATTACHMENT | JSON,
                    "valueReference": st.fixed_dictionaries(
                        {"reference": st.sampled_from(["#d1", "DocumentReference/d2"]) | JSON}
                    )
                    | JSON,
                },
            )
            | JSON,
            max_size=2,
        )
        | JSON,
        "note": JSON,
    },
)
#: Tasks whose every member is any JSON value at all
TASK_JUNK = st.fixed_dictionaries(
    {"resourceType": st.just("Task"), "status": TASK_STATUSES | JSON},
    optional={k: TRUTHY for k in ("statusReason", "owner", "contained", "output", "note", "input")},
)


@FUZZ
@given(task=TASKS | TASK_JUNK | JSON, other=JSON, status=st.sampled_from([200, 200, 200, 404, 500]))
def test_cdex_task_reads_are_a_poll_result_or_a_connector_error(
    task: Any, other: Any, status: int
) -> None:
    """Any Task (or any JSON) from the provider's server, with any referenced resource:
    a PollResult, or an error of our tree (Rejected, TransientError, ...)."""

    def handler(request: httpx.Request) -> httpx.Response:
        if str(request.url) == TASK_URL:
            return httpx.Response(200, content=json.dumps(task).encode())
        return httpx.Response(status, content=json.dumps(other).encode())

    cdex = CDexTaskRequester(
        httpx.Client(transport=httpx.MockTransport(handler)),
        requester_name="goodfaith Health Plan",
        requester_identifier="carrier-1",
        retrying=lambda: no_wait_retrying(1),
        clock=VirtualClock(datetime(2026, 4, 17, 13, tzinfo=UTC)),
    )
    with contextlib.suppress(ConnectorError):
        assert isinstance(cdex.poll(TASK_URL), PollResult)


# --- retrieval vendors: order API v1 callbacks -----------------------------------------------

VENDOR_SECRET = "s" * 32
ORDER_STATUSES = ["received", "in_progress", "fulfilled", "no_records", "failed", "cancelled"]
#: callbacks shaped as order API v1 sends them, each member text of any kind (NUL too)
VENDOR_CALLBACKS = st.fixed_dictionaries(
    {
        "id": TEXT,
        "type": st.sampled_from(["order.updated", "order.fulfilled"]) | TEXT,
        "data": st.fixed_dictionaries(
            {
                "order": st.fixed_dictionaries(
                    {
                        "id": st.sampled_from(["ord-1", "ord\n", "ord\x00"]) | TEXT,
                        "status": st.sampled_from(ORDER_STATUSES),
                    }
                )
            }
        ),
    }
)
#: the same with any member of any JSON type, or missing
VENDOR_JUNK = st.fixed_dictionaries(
    {},
    optional={"id": JSON, "type": JSON, "data": JSON | st.fixed_dictionaries({"order": JSON})},
)
VENDOR_BODIES = (
    st.binary(max_size=200)
    | JSON.map(lambda v: json.dumps(v).encode())
    | VENDOR_JUNK.map(lambda v: json.dumps(v).encode())
    | st.integers(1, 100_000).map(lambda n: b'{"data":' + b"[" * n + b"]" * n + b"}")
)


def _vendors() -> RetrievalVendors:
    settings = RetrievalVendorSettings(
        name="Records Retrieval Co.",
        api_base="https://vendor.invalid/api",
        api_key="k" * 20,
        webhook_secret=VENDOR_SECRET,
    )
    adapter = OrdersV1Vendor(
        httpx.Client(transport=httpx.MockTransport(lambda r: httpx.Response(404))),
        vendor_id="v1",
        settings=settings,
        callback_url="https://goodfaith.invalid/v1/webhooks/vendor?vendor_id=v1",
        clock=VirtualClock(NOW),
    )
    return RetrievalVendors({"v1": adapter})


@FUZZ
@given(
    body=VENDOR_BODIES,
    headers=HEADERS,
    signed=st.booleans(),
    skew=st.integers(-400, 400),
    vendor_id=st.sampled_from(["v1", "other"]) | st.none() | TEXT,
)
def test_vendor_callbacks_are_an_event_or_a_webhook_error(
    body: bytes, headers: dict[str, str], signed: bool, skew: int, vendor_id: str | None
) -> None:
    """Signed or not, for a known vendor or any other id, any body: an OrderEvent whose text a
    database can store, or WebhookError (a 401 at the API)."""
    if signed:
        headers = {
            **headers,
            SIGNATURE_HEADER: sign(VENDOR_SECRET, body, NOW + timedelta(seconds=skew)),
        }
    with contextlib.suppress(WebhookError):
        event = _vendors().parse_callback(vendor_id, body, headers)
        assert isinstance(event, OrderEvent)
        assert not unstorable(astuple(event)), "an event must be storable in PostgreSQL text"


@FUZZ
@given(callback=VENDOR_CALLBACKS)
def test_signed_vendor_callbacks_carry_only_storable_text(callback: dict[str, Any]) -> None:
    """A correctly signed callback of the documented shape, its members any text (NUL, lone
    surrogates, line breaks): an OrderEvent whose text a database stores, or WebhookError."""
    body = json.dumps(callback).encode()
    headers = {SIGNATURE_HEADER: sign(VENDOR_SECRET, body, NOW)}
    with contextlib.suppress(WebhookError):
        event = _vendors().parse_callback("v1", body, headers)
        assert not unstorable(astuple(event)), "an event must be storable in PostgreSQL text"
