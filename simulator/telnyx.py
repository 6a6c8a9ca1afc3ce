"""The far side of Telnyx Programmable Fax v2: ``POST /v2/faxes``, webhooks signed as Telnyx
signs them, inbound faxes (the providers' answers) and their media, errors in Telnyx's format
(``{"errors": [{"code", "title", "detail", "source": {"pointer"}}]}``).

Outbound fax sent at t::

    t        fax.queued
    t+10s    fax.media.processed
    t+30s    fax.sending.started
    t+1min   fax.failed (user_busy)                  when the provider's line is "busy", or an
                                                     agency's line answers busy (busy_first)
    t+2min   letter fetched from media_url → fax.delivered (or fax.failed file_download_failed)
             the provider's count of delivered requests +1; at respond_after_attempts (once):
    +reply   fax.received, media_url = {public_base_url}/v2/media/{id}
             (a fax to an agency's line, simulator/agency_lines.py, is printed there instead)

A webhook our side refuses (exception or non-2xx) is re-attempted with ``meta.attempt``
incremented, at the fax's ``webhook_failover_url`` when it has one (as Telnyx documents), after
an exponential backoff, until the backoff gives up (``simulator.events.Backoff``: the schedule
is this simulator's, Telnyx does not publish one). With ``drop_webhooks`` (a share, seeded) an
outbound fax's status webhooks are lost outright, as happens in production, so that our
side's status checks are exercised. With ``duplicate_webhooks`` (a share, seeded) a delivered
webhook is delivered again a minute later (same event id, after later events: out of order). ``GET /v2/faxes/{id}`` and ``GET /v2/faxes`` (filters
``filter[to][eq]``, ``filter[from][eq]``, ``filter[direction][eq]``,
``filter[created_at][gte|gt|lte|lt]``, ``page[number]``, ``page[size]``) answer with each fax's
status as of the clock; ``DELETE /v2/faxes/{id}`` removes a fax from the books (204; the
transmission under way is not stopped: Telnyx cancels with a separate action). A fax may name
``media_name`` (media stored with ``POST /v2/media`` from a ``media_url``) instead of
``media_url``. Every error, including unknown routes and methods (simulator/app.py), is in
Telnyx's format. Logs carry ids only.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import json
import random
import re
import threading
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
import structlog
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from simulator.base import Context, FarSide
from simulator.events import Fired, iso
from simulator.letters import page_count, read_patient, read_reference
from simulator.providers import ProviderBehaviour
from simulator.telnyx_faxes import Fax as _Fax
from simulator.telnyx_faxes import fax_resource, list_page

__all__ = [
    "PUBLIC_KEY_ROUTE",
    "TelnyxFarSide",
    "public_key_of",
    "sign_webhook",
    "telnyx_error",
]

#: Where the simulator publishes the Ed25519 public key its webhooks verify with (the key our
#: side is given as GOODFAITH_FAX__WEBHOOK_PUBLIC_KEY), as ``{"public_key": "<base64>"}``.
PUBLIC_KEY_ROUTE = "/_sim/telnyx-public-key"

log = structlog.get_logger(__name__)

_E164 = re.compile(r"^\+[1-9]\d{1,14}$")
_QUEUED_TO_MEDIA = timedelta(seconds=10)
_QUEUED_TO_SENDING = timedelta(seconds=30)
_QUEUED_TO_BUSY = timedelta(minutes=1)
_QUEUED_TO_DELIVERED = timedelta(minutes=2)
_DUPLICATE_AFTER = timedelta(minutes=1)  # a duplicated webhook comes again this much later


def sign_webhook(seed: bytes, timestamp: str, body: bytes) -> str:
    """The ``telnyx-signature-ed25519`` header: base64 Ed25519 signature of
    ``{timestamp}|{body}`` with the 32-byte private key ``seed``. Written here rather than
    imported from our connector, so a signing mistake there cannot be mirrored here."""
    signed = timestamp.encode() + b"|" + body
    return base64.b64encode(_private_key(seed).sign(signed)).decode()


@functools.lru_cache(maxsize=8)
def _private_key(seed: bytes) -> Ed25519PrivateKey:
    """The key of ``seed``, derived once per run rather than per webhook (a scalar
    multiplication each time)."""
    return Ed25519PrivateKey.from_private_bytes(seed)


def public_key_of(seed: bytes) -> str:
    """The base64 raw Ed25519 public key of the 32-byte private key ``seed`` (what the Telnyx
    portal shows as the account's webhook public key)."""
    raw = (
        Ed25519PrivateKey.from_private_bytes(seed)
        .public_key()
        .public_bytes(Encoding.Raw, PublicFormat.Raw)
    )
    return base64.b64encode(raw).decode()


def _error(status: int, code: str, title: str, pointer: str | None = None) -> JSONResponse:
    error: dict[str, Any] = {"code": code, "title": title, "detail": title}
    if pointer:
        error["source"] = {"pointer": pointer}
    return JSONResponse({"errors": [error]}, status_code=status)


#: Telnyx error codes by HTTP status, for errors the routes do not word themselves
_CODES = {400: "10015", 401: "10009", 403: "10010", 404: "10005", 405: "10015", 422: "10015"}


def telnyx_error(status: int, title: str) -> JSONResponse:
    """An error in Telnyx's format (``{"errors": [{"code", "title", "detail"}]}``) for any
    status: the simulator's default for routes no far side claims."""
    return _error(status, _CODES.get(status, "10007"), title)


def _authorised(request: Request) -> bool:
    auth = request.headers.get("authorization", "")
    return auth.startswith("Bearer ") and bool(auth[7:].strip())


def _envelope(event_type: str, payload: dict[str, Any], at: datetime) -> dict[str, Any]:
    return {
        "data": {
            "event_type": event_type,
            "id": str(uuid.uuid4()),
            "occurred_at": iso(at),
            "record_type": "event",
            "payload": payload,
        }
    }


@dataclass
class _Webhook:
    """One webhook POST; ``attempts`` counts tries so far (Telnyx's ``meta.attempt``)."""

    side: TelnyxFarSide
    url: str
    envelope: dict[str, Any]
    attempts: int = 0
    duplicate: bool = False  # a second delivery of a webhook already delivered
    failover_url: str | None = None  # retries go here when set

    def fire(self, due: datetime, now: datetime) -> Fired:
        return self.side.post_webhook(self, now)


@dataclass
class _Transmit:
    """The fax reaching the provider's machine."""

    side: TelnyxFarSide
    fax_id: str

    def fire(self, due: datetime, now: datetime) -> Fired:
        self.side.transmit(self.fax_id, due)
        return Fired.DONE


class TelnyxFarSide(FarSide):
    """Telnyx's fax API and its webhooks, for every provider's fax number."""

    prefixes = ("/v2/",)

    def error(self, status: int, title: str) -> Response | None:
        return telnyx_error(status, title)

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self._lock = threading.Lock()
        self._faxes: dict[str, _Fax] = {}
        self._fax_keys: dict[str, str] = {}
        self._inbound: list[_Fax] = []  # the providers' answers, listed from their arrival
        self._media: dict[str, tuple[bytes, str]] = {}
        self._stored: dict[str, tuple[bytes, str, datetime]] = {}  # media_name → (bytes, type, at)
        self.deleted: list[str] = []  # ids of the faxes deleted, in order
        self._gone: dict[str, _Fax] = {}  # deleted outbound faxes, still on the wire
        self._drops = random.Random(ctx.seed)
        self._duplicates = random.Random(ctx.seed + 3)
        self.dropped: list[str] = []  # ids of the webhook events lost on purpose
        self.duplicated: list[str] = []  # ids of the webhook events delivered twice
        # Test hook: while this is an Event not yet set, a fax request is taken (the fax
        # exists, its webhooks will come) and its answer held back until the Event is set, so
        # that the sender can be killed mid-send.
        self.hold_answers: threading.Event | None = None

    def received_ids(self, until: datetime) -> list[str]:
        """The ids of the inbound faxes (providers' answers) arrived by ``until``."""
        with self._lock:
            return [f.id for f in self._inbound if f.created_at <= until]

    def client_states(self) -> list[str | None]:
        """The ``client_state`` of every fax created so far, one per fax, in creation order
        (goodfaith puts the transmission's key there: a repeat means a fax sent twice)."""
        with self._lock:
            return [fax.client_state for fax in self._faxes.values()]

    def router(self) -> APIRouter:
        router = APIRouter()

        @router.post("/v2/faxes")
        async def create_fax(request: Request) -> Response:
            return await self._create_fax(request)

        @router.get("/v2/faxes")
        async def list_faxes(request: Request) -> Response:
            return self._list_faxes(request)

        @router.get("/v2/faxes/{fax_id}")
        async def view_fax(fax_id: str, request: Request) -> Response:
            return self._view_fax(fax_id, request)

        @router.delete("/v2/faxes/{fax_id}")
        async def delete_fax(fax_id: str, request: Request) -> Response:
            return self._delete_fax(fax_id, request)

        @router.post("/v2/media")
        async def upload_media(request: Request) -> Response:
            return await self._upload_media(request)

        @router.get("/v2/media/{media_id}")
        async def get_media(media_id: str) -> Response:
            return self._get_media(media_id)

        @router.get("/v2/media/{media_name}/download")
        async def download_media(media_name: str, request: Request) -> Response:
            return self._download_media(media_name, request)

        @router.get(PUBLIC_KEY_ROUTE)
        async def webhook_public_key() -> Response:
            if self.ctx.signing_key is None:
                return _error(404, "10005", "this simulator does not sign its webhooks")
            return JSONResponse({"public_key": public_key_of(self.ctx.signing_key)})

        return router

    # --- webhooks ------------------------------------------------------------------------

    def post_webhook(self, item: _Webhook, now: datetime) -> Fired:
        if item.attempts == 0 and not item.duplicate and self._lose(item.envelope):
            return Fired.DONE
        url = item.failover_url if item.attempts and item.failover_url else item.url
        item.attempts += 1
        envelope = dict(item.envelope)
        envelope["meta"] = {"attempt": item.attempts, "delivered_to": url}
        body = json.dumps(envelope, separators=(",", ":")).encode()
        timestamp = str(int(now.timestamp()))
        headers = {"content-type": "application/json", "telnyx-timestamp": timestamp}
        if self.ctx.signing_key is not None:
            headers["telnyx-signature-ed25519"] = sign_webhook(
                self.ctx.signing_key, timestamp, body
            )
        event = envelope["data"]
        try:
            response = self.ctx.http.post(url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            log.info("sim.webhook_failed", event_id=event["id"], error=type(exc).__name__)
            return Fired.RETRY
        if not response.is_success:
            log.info("sim.webhook_failed", event_id=event["id"], status=response.status_code)
            return Fired.RETRY
        self.ctx.record_webhook(envelope)
        if not item.duplicate and self._duplicate(event["id"]):
            again = _Webhook(self, item.url, item.envelope, item.attempts, True, item.failover_url)
            self.ctx.events.push(now + _DUPLICATE_AFTER, again)
        return Fired.DELIVERED

    def _duplicate(self, event_id: str) -> bool:
        """Whether this delivered webhook comes again (``duplicate_webhooks``, seeded), as
        Telnyx sometimes delivers one twice; its ``meta.attempt`` counts on."""
        if self.ctx.duplicate_webhooks <= 0:
            return False
        with self._lock:
            if self._duplicates.random() >= self.ctx.duplicate_webhooks:
                return False
            self.duplicated.append(event_id)
        return True

    def _lose(self, envelope: dict[str, Any]) -> bool:
        """Whether this webhook is lost: an outbound status webhook with the share
        ``drop_webhooks``, a ``fax.received`` with ``drop_inbound_webhooks`` (seeded)."""
        data = envelope["data"]
        inbound = data["payload"].get("direction") == "inbound"
        share = self.ctx.drop_inbound_webhooks if inbound else self.ctx.drop_webhooks
        if share <= 0 or self._drops.random() >= share:
            return False
        self.dropped.append(data["id"])
        log.info("sim.webhook_dropped", event_id=data["id"], event_type=data["event_type"])
        return True

    def _webhook(
        self, url: str, envelope: dict[str, Any], at: datetime, failover: str | None = None
    ) -> None:
        self.ctx.events.push(at, _Webhook(self, url, envelope, failover_url=failover))

    def _fax_event(
        self, fax: _Fax, event_type: str, at: datetime, status: str, **extra: Any
    ) -> None:
        payload: dict[str, Any] = {
            "connection_id": fax.connection_id,
            "direction": "outbound",
            "fax_id": fax.id,
            "from": fax.from_number,
            "to": fax.to_number,
            "original_media_url": fax.media_url,
            "status": status,
            "user_id": "sim-user",
        }
        if fax.client_state:
            payload["client_state"] = fax.client_state
        payload.update(extra)
        with self._lock:
            fax.timeline.append((at, status))
        envelope = _envelope(event_type, payload, at)
        self._webhook(fax.webhook_url, envelope, at, fax.webhook_failover_url)

    # --- outbound ------------------------------------------------------------------------

    async def _create_fax(self, request: Request) -> Response:
        auth = request.headers.get("authorization", "")
        if not auth.startswith("Bearer ") or not auth[7:].strip():
            return _error(401, "10009", "Authentication failed")
        try:
            body = json.loads(await request.body())
        except ValueError:
            return _error(400, "10015", "Bad Request")
        if not isinstance(body, dict):
            return _error(400, "10015", "Bad Request")
        for name in ("connection_id", "from", "to"):
            if not isinstance(body.get(name), str) or not body[name]:
                return _error(422, "10004", "Missing required parameter", f"/{name}")
        if not body.get("media_url") and not body.get("media_name"):
            return _error(422, "10004", "Missing required parameter", "/media_url")
        for name in ("to", "from"):
            if not _E164.match(body[name]):
                return _error(422, "10016", "Phone number must be in +E.164 format", f"/{name}")
        media_url = body.get("media_url") or ""
        media_name = body.get("media_name") or None
        if media_url and (
            not isinstance(media_url, str) or not media_url.startswith(("http://", "https://"))
        ):
            return _error(422, "10003", "Invalid URL", "/media_url")
        if not media_url:
            if not isinstance(media_name, str) or media_name not in self._stored:
                return _error(422, "10005", "Resource not found", "/media_name")
            media_url = f"{self.ctx.public_base_url}/v2/media/{media_name}/download"
        for name in ("webhook_url", "webhook_failover_url"):
            url = body.get(name)
            if url is not None and (
                not isinstance(url, str) or not url.startswith(("http://", "https://"))
            ):
                return _error(422, "10003", "Invalid URL", f"/{name}")
        key = request.headers.get("idempotency-key")
        now = self.ctx.clock.now()
        with self._lock:
            if key and self.ctx.honour_idempotency_keys and key in self._fax_keys:
                fax = self._faxes[self._fax_keys[key]]
                return JSONResponse(
                    {"data": fax_resource(fax, self.ctx.clock.now())}, status_code=202
                )
            fax = _Fax(
                id=str(uuid.uuid4()),
                connection_id=body["connection_id"],
                from_number=body["from"],
                to_number=body["to"],
                media_url=media_url,
                client_state=body.get("client_state") or None,
                webhook_url=body.get("webhook_url") or self.ctx.webhook_url,
                created_at=now,
                media_name=media_name if not body.get("media_url") else None,
                webhook_failover_url=body.get("webhook_failover_url") or None,
            )
            self._faxes[fax.id] = fax
            if key:
                self._fax_keys[key] = fax.id
        _, behaviour = self.ctx.providers.lookup(fax.to_number)
        lines = self.ctx.agency_lines
        busy = (
            not lines.answers(fax.to_number)
            if lines.owns(fax.to_number)
            else behaviour.fax == "busy"
        )
        self._fax_event(fax, "fax.queued", now, "queued")
        self._fax_event(fax, "fax.media.processed", now + _QUEUED_TO_MEDIA, "media.processed")
        self._fax_event(fax, "fax.sending.started", now + _QUEUED_TO_SENDING, "sending")
        if busy:
            self._fax_event(
                fax, "fax.failed", now + _QUEUED_TO_BUSY, "failed", failure_reason="user_busy"
            )
        else:
            self.ctx.events.push(now + _QUEUED_TO_DELIVERED, _Transmit(self, fax.id))
        log.info("sim.fax_queued", fax_id=fax.id)
        while self.hold_answers is not None and not self.hold_answers.is_set():
            await asyncio.sleep(0.02)
        return JSONResponse({"data": fax_resource(fax, self.ctx.clock.now())}, status_code=202)

    def _view_fax(self, fax_id: str, request: Request) -> Response:
        if not _authorised(request):
            return _error(401, "10009", "Authentication failed")
        with self._lock:
            fax = self._faxes.get(fax_id)
        if fax is None:
            return _error(404, "10005", "Resource not found")
        return JSONResponse({"data": fax_resource(fax, self.ctx.clock.now())})

    def _delete_fax(self, fax_id: str, request: Request) -> Response:
        """``DELETE /v2/faxes/{id}``: 204, and the fax is gone from reads and lists."""
        if not _authorised(request):
            return _error(401, "10009", "Authentication failed")
        with self._lock:
            fax = self._faxes.pop(fax_id, None)
            if fax is not None:
                self._gone[fax_id] = fax
            else:
                kept = [f for f in self._inbound if f.id != fax_id]
                if len(kept) == len(self._inbound):
                    return _error(404, "10005", "Resource not found")
                self._inbound = kept
            self.deleted.append(fax_id)
        log.info("sim.fax_deleted", fax_id=fax_id)
        return Response(status_code=204)

    async def _upload_media(self, request: Request) -> Response:
        """``POST /v2/media`` (Media Storage): fetch ``media_url`` now and keep it under
        ``media_name`` (a new id when none is given); JSON or form fields."""
        if not _authorised(request):
            return _error(401, "10009", "Authentication failed")
        if request.headers.get("content-type", "").startswith("application/json"):
            try:
                body = json.loads(await request.body())
            except ValueError:
                return _error(400, "10015", "Bad Request")
        else:
            body = dict(await request.form())
        if not isinstance(body, dict):
            return _error(400, "10015", "Bad Request")
        url = body.get("media_url")
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            return _error(422, "10004", "Missing required parameter", "/media_url")
        name = body.get("media_name") or uuid.uuid4().hex
        if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9._-]{1,100}", name):
            return _error(422, "10015", "Invalid media_name", "/media_name")
        try:
            fetched = self.ctx.http.get(url)
        except httpx.HTTPError:
            return _error(422, "10003", "The media could not be fetched", "/media_url")
        if not fetched.is_success:
            return _error(422, "10003", "The media could not be fetched", "/media_url")
        content_type = fetched.headers.get("content-type", "application/pdf").split(";")[0]
        now = self.ctx.clock.now()
        with self._lock:
            self._stored[name] = (fetched.content, content_type, now)
        data = {
            "media_name": name,
            "content_type": content_type,
            "created_at": iso(now),
            "updated_at": iso(now),
            "expires_at": iso(now + timedelta(hours=48)),
        }
        return JSONResponse({"data": data}, status_code=201)

    def _download_media(self, media_name: str, request: Request) -> Response:
        if not _authorised(request):
            return _error(401, "10009", "Authentication failed")
        with self._lock:
            stored = self._stored.get(media_name)
        if stored is None:
            return _error(404, "10005", "Resource not found")
        return Response(content=stored[0], media_type=stored[1])

    def _list_faxes(self, request: Request) -> Response:
        if not _authorised(request):
            return _error(401, "10009", "Authentication failed")
        with self._lock:
            faxes = list(self._faxes.values()) + list(self._inbound)
        try:
            body = list_page(faxes, request.query_params, self.ctx.clock.now())
        except ValueError:
            return _error(400, "10015", "Bad Request")
        except LookupError:
            return _error(422, "10011", "Invalid page parameter", "/page")
        return JSONResponse(body)

    def transmit(self, fax_id: str, due: datetime) -> None:
        """The fax reaches the provider's machine: fetch the letter, then deliver or fail."""
        with self._lock:
            fax = self._faxes.get(fax_id) or self._gone[fax_id]
            stored = self._stored.get(fax.media_name) if fax.media_name else None
        if stored is not None:
            ok, letter = True, stored[0]
        else:
            try:
                response = self.ctx.http.get(fax.media_url)
                ok = response.is_success
                letter = response.content if ok else b""
            except httpx.HTTPError:
                ok, letter = False, b""
        if not ok:
            fax.status = "failed"
            self._fax_event(fax, "fax.failed", due, "failed", failure_reason="file_download_failed")
            return
        reference = read_reference(letter)
        fax.status = "delivered"
        self._fax_event(
            fax,
            "fax.delivered",
            due,
            "delivered",
            page_count=page_count(letter, letter=True) or 1,  # parsed with its reference
            call_duration_secs=60,
        )
        if self.ctx.agency_lines.owns(fax.to_number):  # a packet, printed at the agency
            self.ctx.agency_lines.receive(fax.to_number, fax.id, letter, due)
            return
        provider_id, behaviour = self.ctx.providers.lookup(fax.to_number)
        if self.ctx.providers.count_delivery(provider_id, behaviour, reference or fax.to_number):
            at = due + timedelta(minutes=behaviour.reply_delay_minutes)
            patient = read_patient(letter)
            self._schedule_inbound(
                fax, provider_id, behaviour, reference or "UNREFERENCED", at, patient
            )

    # --- inbound -------------------------------------------------------------------------

    def _schedule_inbound(
        self,
        fax: _Fax,
        provider_id: str,
        behaviour: ProviderBehaviour,
        reference: str,
        at: datetime,
        patient: tuple[str, str] = ("", ""),
    ) -> None:
        # The clerk copies the patient's name and birth date from the faxed letter.
        document = self.ctx.providers.reply_document(
            provider_id,
            behaviour,
            reference,
            member_id="",
            patient_name=patient[0],
            birth_date=patient[1],
        )
        media_id = uuid.uuid4().hex
        inbound_id = str(uuid.uuid4())
        with self._lock:
            self._media[media_id] = (document, "application/pdf")
            self._inbound.append(
                _Fax(
                    id=inbound_id,
                    connection_id=fax.connection_id,
                    from_number=fax.to_number,
                    to_number=self.ctx.carrier_fax_number,
                    media_url=f"{self.ctx.public_base_url}/v2/media/{media_id}",
                    client_state=None,
                    webhook_url=self.ctx.webhook_url,
                    created_at=at,
                    status="received",
                    direction="inbound",
                    page_count=page_count(document),
                    timeline=[(at, "received")],
                )
            )
        payload = {
            "connection_id": fax.connection_id,
            "direction": "inbound",
            "fax_id": inbound_id,
            "from": fax.to_number,
            "to": self.ctx.carrier_fax_number,
            "media_url": f"{self.ctx.public_base_url}/v2/media/{media_id}",
            "page_count": page_count(document),
            "partial_content": False,
            "status": "received",
            "user_id": "sim-user",
        }
        self._webhook(self.ctx.webhook_url, _envelope("fax.received", payload, at), at)
        log.info("sim.reply_scheduled", channel="fax", fax_id=inbound_id, at=iso(at))

    def _get_media(self, media_id: str) -> Response:
        with self._lock:
            found = self._media.get(media_id)
        if found is None:
            return _error(404, "10005", "Resource not found")
        data, content_type = found
        return Response(content=data, media_type=content_type)
