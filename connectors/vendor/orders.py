"""The retrieval-vendor order API, version 1: the one module that maps our records requests to a
vendor's orders and back.

The wire format is goodfaith's own (there is no public standard for ordering a chart from a
release-of-information vendor); it is specified in ``orders-v1.openapi.yaml`` beside this
module, which is the document to hand a vendor. In short::

    POST {base}/v1/orders                 Authorization: Bearer <api key>, Idempotency-Key
      JSON OrderCreate {client_reference, request_reference, attempt_number, due_at, purpose,
           requested {description, loinc_codes}, patient {member_id, name, birth_date},
           provider {id, name, npi}, requester {name},
           authorization {url, content_type}, callback_url}
      → 201 (or 200 on a repeated key) Order {id, client_reference, request_reference, status,
           status_reason, created_at, updated_at, documents[], certificate}
    GET  {base}/v1/orders?client_reference=<key>      → {"orders": [Order]}  (crash adoption)
    GET  {base}/v1/orders/{id}                        → Order                (poll)
    POST {base}/v1/orders/{id}/cancel  {"reason"}     → Order; 409 when already final
    GET  {document.url}                               → application/pdf
    callbacks → POST <callback_url>  Goodfaith-Signature: t=<unix>,v1=<hex HMAC-SHA256>

Statuses map onto one attempt's facts as a CDex Task's do (the vendor is a pull channel)::

    received                 → outcome SENT        (taken in, not yet at the provider)
    in_progress              → outcome DELIVERED   (the request reached the provider)
    fulfilled                → DELIVERED + the order's documents (fetched here)
    no_records               → DELIVERED + no_records + the certificate PDF (kept as evidence)
    failed                   → outcome FAILED with status_reason (the policy escalates)
    cancelled                → final, nothing more comes

**external_id is ``<vendor_id>/<order id>``**: a poll must know which vendor (account, base
URL, key) holds the order. A callback only says "look again": its order is polled at once, so a
duplicate or out-of-order callback changes nothing, and a lost one is covered by the regular
polls (:func:`next_poll_delay`).

Settings: :class:`RetrievalVendorSettings`, one per vendor id in ``GOODFAITH_RETRIEVAL_VENDORS``.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping
from dataclasses import astuple, dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from connectors import jsonbody
from connectors.base import (
    InboundDocument,
    PollResult,
    RecordsRequest,
    Rejected,
    SendReceipt,
    TransientError,
    WebhookError,
)
from connectors.http_errors import call, json_object
from connectors.retry import RetryingFactory, transport_retrying
from worker.domain.clock import Clock, SystemClock
from worker.domain.types import AttemptOutcome, ChannelKind

__all__ = [
    "SIGNATURE_HEADER",
    "SIGNATURE_TOLERANCE",
    "OrderEvent",
    "OrdersV1Vendor",
    "RetrievalVendorSettings",
    "next_poll_delay",
    "order_body",
    "sign",
    "verify_signature",
]

#: The callback signature header: ``t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>." + body)>``.
SIGNATURE_HEADER = "Goodfaith-Signature"
#: How far a callback's ``t`` may be from our clock.
SIGNATURE_TOLERANCE = timedelta(seconds=300)

_SIGNATURE = re.compile(r"^t=(?P<t>\d{1,12}),v1=(?P<v1>[0-9a-f]{64})$")
_ORDER_ID = re.compile(r"^[A-Za-z0-9_.\-]{1,128}$")
_STATUSES = frozenset({"received", "in_progress", "fulfilled", "no_records", "failed", "cancelled"})
_MAX_DOCUMENTS = 50  # documents taken from one order (more is a vendor error)


class RetrievalVendorSettings(BaseModel):
    """One record-retrieval vendor account (``GOODFAITH_RETRIEVAL_VENDORS`` is a JSON map of
    vendor id → these fields). ``adapter`` names the wire format (registry ``VENDOR_ADAPTERS``;
    ``orders-v1`` is this module). ``webhook_secret`` is the HMAC key its callbacks are signed
    with (at least 16 characters); ``api_key`` is sent as ``Authorization: Bearer``."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=256)
    adapter: str = "orders-v1"
    api_base: str
    api_key: SecretStr
    webhook_secret: SecretStr

    @field_validator("api_base")
    @classmethod
    def _http_url(cls, v: str) -> str:
        if urlsplit(v).scheme not in ("http", "https") or not urlsplit(v).netloc:
            raise ValueError("api_base must be an http(s) URL, e.g. https://vendor.example/api")
        return v.rstrip("/")

    @field_validator("webhook_secret")
    @classmethod
    def _long_secret(cls, v: SecretStr) -> SecretStr:
        if len(v.get_secret_value()) < 16:
            raise ValueError("webhook_secret must be at least 16 characters (a random value)")
        return v


def next_poll_delay(since_sent: timedelta) -> timedelta:
    """How long to wait before the next read of an order sent ``since_sent`` ago: 15 minutes
    after ordering, then hourly. Callbacks bring news sooner; polls only cover lost ones."""
    if since_sent < timedelta(minutes=15):
        return timedelta(minutes=15) - since_sent
    return timedelta(hours=1)


# --- callbacks ---------------------------------------------------------------------------------


def sign(secret: str, body: bytes, at: datetime) -> str:
    """The ``Goodfaith-Signature`` value for ``body`` sent at ``at`` (used by vendors, and by
    the simulator standing in for one)."""
    t = int(at.timestamp())
    mac = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def verify_signature(secret: str, body: bytes, header: str | None, now: datetime) -> None:
    """Raise ``WebhookError`` unless ``header`` signs ``body`` with ``secret`` within
    :data:`SIGNATURE_TOLERANCE` of ``now``."""
    if not header:
        raise WebhookError(f"vendor callback: no {SIGNATURE_HEADER} header")
    match = _SIGNATURE.match(header.strip())
    if match is None:
        raise WebhookError(f"vendor callback: malformed {SIGNATURE_HEADER} header")
    t = int(match.group("t"))
    expected = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, match.group("v1")):
        raise WebhookError("vendor callback: signature does not verify")
    if abs(now.timestamp() - t) > SIGNATURE_TOLERANCE.total_seconds():
        raise WebhookError("vendor callback: signature timestamp outside the allowed window")


@dataclass(frozen=True)
class OrderEvent:
    """A verified vendor callback: order ``order_id`` of ``vendor_id`` changed (``event_type``,
    e.g. ``order.fulfilled``). Its content is read back from the vendor, not taken from here."""

    event_id: str
    event_type: str
    vendor_id: str
    order_id: str
    status: str

    @property
    def external_id(self) -> str:
        """The attempt's external id for this order (``<vendor_id>/<order id>``)."""
        return f"{self.vendor_id}/{self.order_id}"


def _parse_event(vendor_id: str, body: bytes) -> OrderEvent:
    try:
        data = jsonbody.loads(body)
    except ValueError:  # not UTF-8, not JSON, or nested too deep
        raise WebhookError("vendor callback: body is not JSON") from None
    if not isinstance(data, dict):
        raise WebhookError("vendor callback: body is not a JSON object")
    order = data.get("data", {}).get("order") if isinstance(data.get("data"), dict) else None
    event_id, event_type = data.get("id"), data.get("type")
    if not isinstance(event_id, str) or not isinstance(event_type, str):
        raise WebhookError("vendor callback: id and type are required")
    if not isinstance(order, dict):
        raise WebhookError("vendor callback: data.order is required")
    order_id, status = order.get("id"), order.get("status")
    if not isinstance(order_id, str) or not _ORDER_ID.fullmatch(order_id):
        raise WebhookError("vendor callback: data.order.id is missing or malformed")
    if status not in _STATUSES:
        raise WebhookError("vendor callback: data.order.status is not a known status")
    event = OrderEvent(event_id[:128], event_type[:64], vendor_id, order_id, str(status))
    if jsonbody.unstorable(astuple(event)):  # NUL or a lone surrogate: no database keeps it
        raise WebhookError("vendor callback: a field holds a NUL character or a lone surrogate")
    return event


# --- the wire mapping --------------------------------------------------------------------------


def order_body(request: RecordsRequest, callback_url: str) -> dict[str, Any]:
    """The ``OrderCreate`` document for ``request`` (pure)."""
    patient, provider = request.patient, request.provider
    if patient is None or provider is None:
        raise Rejected("vendor order: the request names no patient or provider")
    return {
        "client_reference": request.idempotency_key,
        "request_reference": request.reference,
        "attempt_number": request.attempt_number,
        "due_at": request.respond_by.isoformat() if request.respond_by else None,
        "purpose": request.purpose[:512],
        "requested": {
            "description": (request.requested or request.purpose)[:1024],
            "loinc_codes": [request.loinc_code],
        },
        "patient": {
            "member_id": request.member_id,
            "name": patient.name,
            "birth_date": patient.birth_date,
        },
        "provider": {"id": provider.id, "name": provider.name, "npi": provider.npi},
        "requester": {"name": request.requester},
        "authorization": {"url": request.document_url, "content_type": "application/pdf"},
        "callback_url": callback_url,
    }


class OrdersV1Vendor:
    """One vendor account speaking the order API v1 (``orders-v1.openapi.yaml``).

    ``vendor_id`` is ours for the vendor (the notification's designee ``vendor_id``);
    ``callback_url`` is our ``/v1/webhooks/vendor`` with ``?vendor_id=``. ``clock`` checks
    callback timestamps (the system clock by default).
    """

    def __init__(
        self,
        client: httpx.Client,
        *,
        vendor_id: str,
        settings: RetrievalVendorSettings,
        callback_url: str,
        retrying: RetryingFactory = transport_retrying,
        clock: Clock | None = None,
    ) -> None:
        self._client = client
        self.vendor_id = vendor_id
        self._base = settings.api_base
        self._key = settings.api_key.get_secret_value()
        self._secret = settings.webhook_secret.get_secret_value()
        self._callback_url = callback_url
        self._retrying = retrying
        self._clock: Clock = clock if clock is not None else SystemClock()

    @property
    def _auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._key}", "Accept": "application/json"}

    def _order_url(self, order_id: str) -> str:
        if not _ORDER_ID.fullmatch(order_id):
            raise Rejected("vendor order id is malformed")
        return f"{self._base}/v1/orders/{quote(order_id)}"

    def send(self, request: RecordsRequest) -> SendReceipt:
        """Create the order; the receipt's external id is ``<vendor_id>/<order id>``."""
        response = call(
            self._client,
            "POST",
            f"{self._base}/v1/orders",
            what=f"vendor {self.vendor_id} create order",
            retrying=self._retrying,
            json=order_body(request, self._callback_url),
            headers={**self._auth, "Idempotency-Key": request.idempotency_key},
        )
        order = json_object(response, what="vendor create order")
        return SendReceipt(external_id=f"{self.vendor_id}/{_order_id(order)}")

    def find_sent(self, request: RecordsRequest, since: datetime) -> SendReceipt | None:
        """The order made with ``request``'s key (``since`` is not needed: the key is unique)."""
        response = call(
            self._client,
            "GET",
            f"{self._base}/v1/orders",
            what=f"vendor {self.vendor_id} list orders",
            retrying=self._retrying,
            params={"client_reference": request.idempotency_key},
            headers=self._auth,
        )
        orders = json_object(response, what="vendor list orders").get("orders")
        if not isinstance(orders, list):
            raise TransientError("vendor list orders: 'orders' is not a list")
        for order in orders:
            if isinstance(order, dict) and order.get("client_reference") == request.idempotency_key:
                return SendReceipt(external_id=f"{self.vendor_id}/{_order_id(order)}")
        return None

    def poll(self, order_id: str) -> PollResult:
        """Read the order and, when it is final, fetch its documents or certificate."""
        response = call(
            self._client,
            "GET",
            self._order_url(order_id),
            what=f"vendor {self.vendor_id} read order",
            retrying=self._retrying,
            headers=self._auth,
        )
        order = json_object(response, what="vendor read order")
        status = order.get("status")
        if status not in _STATUSES:
            raise TransientError("vendor read order: unknown status")
        reason = order.get("status_reason")
        reason = str(reason)[:200] if reason else None
        if status == "received":
            return PollResult(status="requested", outcome=AttemptOutcome.SENT, reason=reason)
        if status == "in_progress":
            return PollResult(status="in-progress", outcome=AttemptOutcome.DELIVERED)
        if status == "failed":
            return PollResult(
                status="failed", outcome=AttemptOutcome.FAILED, reason=reason or "vendor failed"
            )
        if status == "cancelled":
            return PollResult(status="cancelled", outcome=None, reason=reason)
        if status == "no_records":
            certificate = order.get("certificate")
            document = certificate.get("document") if isinstance(certificate, dict) else None
            if not isinstance(document, dict):
                raise TransientError("vendor read order: no_records without a certificate")
            doc = self._fetch(order_id, document, no_records=True)
            return PollResult(
                status="completed",
                outcome=AttemptOutcome.DELIVERED,
                documents=(doc,),
                no_records=True,
                reason=reason or "no records (vendor certificate)",
            )
        listed = order.get("documents")
        if not isinstance(listed, list) or not listed:
            raise TransientError("vendor read order: fulfilled without documents")
        docs = tuple(
            self._fetch(order_id, d, no_records=False)
            for d in listed[:_MAX_DOCUMENTS]
            if isinstance(d, dict)
        )
        return PollResult(status="completed", outcome=AttemptOutcome.DELIVERED, documents=docs)

    def _fetch(
        self, order_id: str, document: Mapping[str, Any], *, no_records: bool
    ) -> InboundDocument:
        doc_id, url = document.get("id"), document.get("url")
        if not isinstance(doc_id, str) or not isinstance(url, str):
            raise TransientError("vendor order: a document has no id or url")
        if urlsplit(url).netloc != urlsplit(self._base).netloc:
            # never send our key to another host, whatever the order says
            raise Rejected("vendor order: a document url is not on the vendor's API host")
        response = call(
            self._client,
            "GET",
            url,
            what=f"vendor {self.vendor_id} get document",
            retrying=self._retrying,
            headers={"Authorization": f"Bearer {self._key}"},
        )
        return InboundDocument(
            data=response.content,
            content_type=response.headers.get("content-type", "application/octet-stream")
            .split(";")[0]
            .strip(),
            source=ChannelKind.VENDOR,
            external_id=f"{self.vendor_id}/{order_id}/{doc_id}"[:255],
            sender=self.vendor_id,
            no_records=no_records,
        )

    def cancel(self, order_id: str, reason: str) -> bool:
        """Withdraw the order; False when it had already finished (409)."""
        response = call(
            self._client,
            "POST",
            self._order_url(order_id) + "/cancel",
            what=f"vendor {self.vendor_id} cancel order",
            retrying=self._retrying,
            json={"reason": reason[:200]},
            headers=self._auth,
            answers=frozenset({404, 409}),
        )
        return response.status_code not in (404, 409)

    def parse_callback(self, body: bytes, headers: Mapping[str, str]) -> OrderEvent:
        """Verify and decode one callback; ``WebhookError`` when it is forged or malformed."""
        lowered = {k.lower(): v for k, v in headers.items()}
        verify_signature(
            self._secret, body, lowered.get(SIGNATURE_HEADER.lower()), self._clock.now()
        )
        return _parse_event(self.vendor_id, body)


def _order_id(order: Mapping[str, Any]) -> str:
    order_id = order.get("id")
    if not isinstance(order_id, str) or not _ORDER_ID.fullmatch(order_id):
        raise TransientError("vendor order: the answer has no usable order id")
    return order_id
