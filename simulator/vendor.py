"""The far side of a record-retrieval vendor (a provider's designee), speaking goodfaith's order
API v1 (connectors/vendor/orders-v1.openapi.yaml) under ``/vendor``: one simulated vendor serves
every vendor id (the callback URL of each order says whose it is).

An order created at t (``POST /vendor/v1/orders``)::

    t          received      callback order.received
    t+1min     in_progress   callback order.in_progress; the request reached the provider (its
                             count of delivered requests +1, shared with fax and FHIR)
    +reply     fulfilled     the provider's records (callback order.fulfilled), once the count
                             reaches respond_after_attempts; or
               no_records    a certificate of no records (callback order.no_records) when the
                             provider's ``vendor`` behaviour is "no_records" (whatever the count)
                             or its reply is "no_records"

A provider's ``vendor`` behaviour ``down`` answers 503 to every new order. The order names its
provider by our provider id (``provider.id``), which picks the behaviour.

Callbacks are signed (``Goodfaith-Signature: t=<unix>,v1=<hex HMAC-SHA256("<t>." + body)>``)
with the run's vendor secret, written out here rather than imported from our connector (the
far side must not share a mistake with the code it checks). A refused callback is retried on
the simulator's webhook :class:`~simulator.events.Backoff` (exponential, capped, given up);
``drop_webhooks`` loses a share of them outright, ``duplicate_webhooks`` delivers a share twice
(the second a minute later, after later ones: out of order) and ``throttle`` answers a share of
API requests 429 with ``Retry-After``. A cancelled order is never worked further.
Logs carry ids only.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import random
import threading
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

import httpx
import structlog
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from simulator.base import Context, FarSide
from simulator.documents import generate_no_records_certificate
from simulator.events import Fired, iso

__all__ = ["VendorFarSide"]

log = structlog.get_logger(__name__)

_ACCEPT_AFTER = timedelta(minutes=1)
_DUPLICATE_AFTER = timedelta(minutes=1)
_REQUIRED = (
    "client_reference",
    "request_reference",
    "attempt_number",
    "due_at",
    "purpose",
    "requested",
    "patient",
    "provider",
    "requester",
    "authorization",
    "callback_url",
)
_FINAL = frozenset({"fulfilled", "no_records", "failed", "cancelled"})


def _error(status: int, code: str, message: str, **headers: str) -> JSONResponse:
    return JSONResponse(
        {"error": {"code": code, "message": message}}, status_code=status, headers=headers
    )


def _signature(secret: str, body: bytes, at: datetime) -> str:
    t = int(at.timestamp())
    mac = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


@dataclass
class _Order:
    id: str
    body: dict[str, Any]
    provider_id: str
    created_at: datetime
    accepted: bool = False
    complete_at: datetime | None = None
    outcome: Literal["fulfilled", "no_records"] | None = None
    cancelled_at: datetime | None = None
    cancel_reason: str | None = None
    document: bytes | None = None
    certificate: bytes | None = None
    events: list[str] = field(default_factory=list)

    @property
    def reference(self) -> str:
        return str(self.body.get("request_reference"))

    def status_at(self, now: datetime) -> str:
        if self.cancelled_at is not None:
            return "cancelled"
        if not self.accepted:
            return "received"
        if self.complete_at is None or now < self.complete_at or self.outcome is None:
            return "in_progress"
        return self.outcome


@dataclass
class _Callback:
    """One callback POST for an order's state change."""

    side: VendorFarSide
    order_id: str
    event_type: str
    attempts: int = 0  # tries made (the heap's Backoff reads it)
    duplicate: bool = False

    def fire(self, due: datetime, now: datetime) -> Fired:
        return self.side.post_callback(self, now)


@dataclass
class _Wake:
    """Nothing to do but be due: the clock moves to the order's next change, and
    :meth:`VendorFarSide.advance` makes it."""

    def fire(self, due: datetime, now: datetime) -> Fired:
        return Fired.DONE


class VendorFarSide(FarSide):
    """A record-retrieval vendor's order API and its signed callbacks."""

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self._lock = threading.RLock()
        self._orders: dict[str, _Order] = {}
        self._keys: dict[str, str] = {}
        self._chance = random.Random(ctx.seed + 31)
        self.dropped: list[str] = []
        self.duplicated = 0

    # --- inspection ---------------------------------------------------------------------------

    def orders(self) -> list[dict[str, Any]]:
        """Every order created so far (its body and status now), in creation order."""
        now = self.ctx.clock.now()
        with self._lock:
            return [
                {**o.body, "id": o.id, "status": o.status_at(now)} for o in self._orders.values()
            ]

    # --- the API ------------------------------------------------------------------------------

    def router(self) -> APIRouter:
        router = APIRouter()

        @router.post("/vendor/v1/orders")
        async def create(request: Request) -> Response:
            return self._create(request, await request.body())

        @router.get("/vendor/v1/orders")
        async def find(request: Request, client_reference: str = "") -> Response:
            return self._guarded(request) or self._find(client_reference)

        @router.get("/vendor/v1/orders/{order_id}")
        async def read(order_id: str, request: Request) -> Response:
            return self._guarded(request) or self._read(order_id)

        @router.post("/vendor/v1/orders/{order_id}/cancel")
        async def cancel(order_id: str, request: Request) -> Response:
            return self._guarded(request) or self._cancel(order_id, await request.body())

        @router.get("/vendor/v1/orders/{order_id}/documents/{document_id}")
        async def document(order_id: str, document_id: str, request: Request) -> Response:
            return self._guarded(request) or self._document(order_id, document_id)

        return router

    def _guarded(self, request: Request) -> Response | None:
        """401 without a bearer key; 429 for a share of requests (``throttle``)."""
        auth = request.headers.get("authorization", "")
        if not auth.startswith("Bearer ") or len(auth) <= len("Bearer "):
            return _error(401, "unauthorized", "a bearer API key is required")
        if self.ctx.throttle > 0:
            with self._lock:
                throttled = self._chance.random() < self.ctx.throttle
            if throttled:
                return _error(429, "rate_limited", "too many requests", **{"Retry-After": "1"})
        return None

    def _create(self, request: Request, raw: bytes) -> Response:
        refused = self._guarded(request)
        if refused is not None:
            return refused
        key = request.headers.get("idempotency-key")
        if not key:
            return _error(400, "idempotency_key_required", "Idempotency-Key header is required")
        try:
            body = json.loads(raw)
        except ValueError:
            return _error(400, "invalid_json", "body is not JSON")
        if not isinstance(body, dict):
            return _error(400, "invalid_json", "body is not a JSON object")
        missing = [k for k in _REQUIRED if body.get(k) in (None, "", {}, [])]
        if missing:
            return _error(422, "invalid_order", f"missing: {', '.join(missing)}")
        provider = body["provider"] if isinstance(body["provider"], dict) else {}
        if not provider.get("id") or body.get("client_reference") != key:
            return _error(422, "invalid_order", "provider.id and client_reference=key required")
        now = self.ctx.clock.now()
        with self._lock:
            known = self._keys.get(key) if self.ctx.honour_idempotency_keys else None
            if known is not None:
                return JSONResponse(self._render(self._orders[known], now), status_code=200)
            provider_id, behaviour = self.ctx.providers.lookup(str(provider["id"]))
            if behaviour.vendor == "down":
                return _error(503, "unavailable", "the vendor cannot take orders now")
            order = _Order(
                id=f"ord_{uuid.uuid4().hex[:20]}",
                body=body,
                provider_id=provider_id,
                created_at=now,
            )
            self._orders[order.id] = order
            self._keys[key] = order.id
            rendered = self._render(order, now)
        self.ctx.events.push(now, _Callback(self, order.id, "order.received"))
        self.ctx.events.push(now + _ACCEPT_AFTER, _Wake())
        log.info("sim.order_created", order_id=order.id)
        return JSONResponse(rendered, status_code=201)

    def _find(self, client_reference: str) -> Response:
        now = self.ctx.clock.now()
        self.advance(now)
        with self._lock:
            found = [
                self._render(o, now)
                for o in self._orders.values()
                if o.body.get("client_reference") == client_reference
            ]
        return JSONResponse({"orders": found})

    def _read(self, order_id: str) -> Response:
        now = self.ctx.clock.now()
        self.advance(now)
        with self._lock:
            order = self._orders.get(order_id)
            if order is None:
                return _error(404, "not_found", "no such order")
            return JSONResponse(self._render(order, now))

    def _cancel(self, order_id: str, raw: bytes) -> Response:
        try:
            body = json.loads(raw)
        except ValueError:
            return _error(400, "invalid_json", "body is not JSON")
        reason = body.get("reason") if isinstance(body, dict) else None
        if not isinstance(reason, str) or not reason:
            return _error(422, "invalid_cancel", "reason is required")
        now = self.ctx.clock.now()
        self.advance(now)
        with self._lock:
            order = self._orders.get(order_id)
            if order is None:
                return _error(404, "not_found", "no such order")
            status = order.status_at(now)
            if status in _FINAL:
                return _error(409, "order_final", f"the order is already {status}")
            order.cancelled_at = now
            order.cancel_reason = reason[:200]
            rendered = self._render(order, now)
        self.ctx.events.push(now, _Callback(self, order_id, "order.cancelled"))
        log.info("sim.order_cancelled", order_id=order_id)
        return JSONResponse(rendered)

    def _document(self, order_id: str, document_id: str) -> Response:
        now = self.ctx.clock.now()
        self.advance(now)
        with self._lock:
            order = self._orders.get(order_id)
            status = order.status_at(now) if order else None
            data = None
            if order is not None and status == "fulfilled" and document_id == "records":
                data = order.document
            elif order is not None and status == "no_records" and document_id == "certificate":
                data = order.certificate
        if data is None:
            return _error(404, "not_found", "no such document")
        return Response(data, media_type="application/pdf")

    # --- time ---------------------------------------------------------------------------------

    def advance(self, now: datetime) -> None:
        """Take every order due by ``now`` to the provider (in creation order), counting it."""
        providers = self.ctx.providers
        with self._lock:
            due = sorted(
                (o for o in self._orders.values() if not o.accepted and o.cancelled_at is None),
                key=lambda o: o.created_at,
            )
            for order in due:
                accept_at = order.created_at + _ACCEPT_AFTER
                if accept_at > now:
                    break
                order.accepted = True
                behaviour = providers.behaviour(order.provider_id)
                triggered = providers.count_delivery(order.provider_id, behaviour, order.reference)
                self.ctx.events.push(accept_at, _Callback(self, order.id, "order.in_progress"))
                if behaviour.vendor == "no_records" or (
                    triggered and behaviour.reply == "no_records"
                ):
                    order.outcome = "no_records"
                elif triggered:
                    order.outcome = "fulfilled"
                if order.outcome is not None:
                    order.complete_at = accept_at + timedelta(minutes=behaviour.reply_delay_minutes)
                    self.ctx.events.push(
                        order.complete_at, _Callback(self, order.id, f"order.{order.outcome}")
                    )
                    log.info("sim.reply_scheduled", channel="vendor", order_id=order.id)

    # --- rendering ----------------------------------------------------------------------------

    def _render(self, order: _Order, now: datetime) -> dict[str, Any]:
        status = order.status_at(now)
        base = f"{self.ctx.public_base_url}/vendor/v1/orders/{order.id}"
        documents: list[dict[str, Any]] = []
        certificate: dict[str, Any] | None = None
        if status == "fulfilled":
            if order.document is None:
                order.document = self._records(order)
            documents = [self._document_entry(base, "records", order.document)]
        elif status == "no_records":
            assert order.complete_at is not None
            if order.certificate is None:
                order.certificate = generate_no_records_certificate(
                    order.reference,
                    "Simulated Retrieval Services",
                    str(order.body["provider"].get("name", order.provider_id)),
                    iso(order.complete_at),
                )
            certificate = {
                "issued_at": iso(order.complete_at),
                "statement": "No records found for the patient in the scope of the request",
                "signed_by": "Release of Information Services",
                "document": self._document_entry(base, "certificate", order.certificate),
            }
        updated = order.cancelled_at or order.complete_at or order.created_at
        if status == "in_progress":
            updated = order.created_at + _ACCEPT_AFTER
        return {
            "id": order.id,
            "client_reference": order.body.get("client_reference"),
            "request_reference": order.reference,
            "status": status,
            "status_reason": order.cancel_reason if status == "cancelled" else None,
            "created_at": iso(order.created_at),
            "updated_at": iso(min(updated, now)),
            "documents": documents,
            "certificate": certificate,
        }

    def _records(self, order: _Order) -> bytes:
        patient = order.body.get("patient") or {}
        behaviour = self.ctx.providers.behaviour(order.provider_id)
        return self.ctx.providers.reply_document(
            order.provider_id,
            behaviour,
            order.reference,
            str(patient.get("member_id", "")),
            patient_name=str(patient.get("name", "")),
            birth_date=str(patient.get("birth_date", "")),
        )

    @staticmethod
    def _document_entry(base: str, doc_id: str, data: bytes) -> dict[str, Any]:
        return {
            "id": doc_id,
            "content_type": "application/pdf",
            "pages": None,
            "sha256": hashlib.sha256(data).hexdigest(),
            "url": f"{base}/documents/{doc_id}",
        }

    # --- callbacks ----------------------------------------------------------------------------

    def post_callback(self, item: _Callback, now: datetime) -> Fired:
        with self._lock:
            order = self._orders[item.order_id]
            rendered = self._render(order, now)
            url = str(order.body.get("callback_url"))
        if item.attempts == 0 and not item.duplicate and self._lose(item):
            return Fired.DONE
        item.attempts += 1
        event = {
            "id": f"evt_{uuid.uuid4().hex[:20]}",
            "type": item.event_type,
            "created_at": iso(now),
            "data": {"order": rendered},
        }
        body = json.dumps(event).encode()
        secret = self.ctx.vendor_webhook_secret
        headers = {"content-type": "application/json"}
        if secret:
            headers["Goodfaith-Signature"] = _signature(secret, body, now)
        try:
            response = self.ctx.http.post(url, content=body, headers=headers)
            refused = not response.is_success
            why: Any = response.status_code
        except httpx.HTTPError as exc:
            refused, why = True, type(exc).__name__
        if refused:
            log.info("sim.webhook_failed", order_id=item.order_id, why=why, tries=item.attempts)
            return Fired.RETRY
        self.ctx.record_webhook(event)
        if not item.duplicate and self._duplicate():
            again = _Callback(self, item.order_id, item.event_type, duplicate=True)
            self.ctx.events.push(now + _DUPLICATE_AFTER, again)
        return Fired.DELIVERED

    def _duplicate(self) -> bool:
        if self.ctx.duplicate_webhooks <= 0:
            return False
        with self._lock:
            if self._chance.random() >= self.ctx.duplicate_webhooks:
                return False
            self.duplicated += 1
        return True

    def _lose(self, item: _Callback) -> bool:
        if self.ctx.drop_webhooks <= 0:
            return False
        with self._lock:
            if self._chance.random() >= self.ctx.drop_webhooks:
                return False
        self.dropped.append(item.order_id)
        log.info("sim.webhook_dropped", order_id=item.order_id, vendor="vendor")
        return True
