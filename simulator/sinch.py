"""The far side of Sinch Fax API v3: ``POST /v3/projects/{projectId}/faxes``, the fax object,
the list, the PDF download, and callbacks as Sinch sends them (``FAX_COMPLETED`` to the fax's
``callbackUrl``, ``INCOMING_FAX`` to the service's incoming-fax URL), with HTTP Basic
credentials taken from the URL's user info. Errors in Sinch's format
(``{"code", "message", "status", "details": [...]}``).

Outbound fax sent at t (Sinch has no idempotency key: every request is a new fax)::

    t        QUEUED
    t+30s    IN_PROGRESS
    t+1min   FAILURE (CALL_ERROR 17, Busy) → FAX_COMPLETED     when the provider's line is busy
                                                               (or an agency's, busy_first)
    t+2min   contentUrl fetched → COMPLETED → FAX_COMPLETED
             (or FAILURE DOCUMENT_CONVERSION_ERROR when the fetch fails)
             the provider's count of delivered requests +1; at respond_after_attempts (once):
    +reply   INCOMING_FAX (multipart/form-data: event, eventTime, fax as JSON, file as PDF)
             (a fax to an agency's line, simulator/agency_lines.py, is printed there instead)

A callback our side refuses (exception or non-2xx) is re-attempted after an exponential
backoff until it gives up (``simulator.events.Backoff``), as Sinch retries callbacks. With ``drop_webhooks`` (a share, seeded) an outbound fax's callback is lost outright;
with ``duplicate_webhooks`` a delivered callback comes again a minute later (after later ones:
out of order); with ``throttle`` API requests are refused with 429 and ``Retry-After: 1``
before anything is done.
The API accepts any Basic credentials but none (401): the far side does not know our key.
The incoming-fax URL is ``Context.webhook_url`` with :data:`INCOMING_USERNAME` /
:data:`INCOMING_PASSWORD` as its credentials: a run's settings use the same pair.
"""

from __future__ import annotations

import base64
import json
import random
import re
import threading
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

import httpx
import structlog
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from simulator.base import Context, FarSide
from simulator.events import Fired, iso
from simulator.letters import page_count, read_reference
from simulator.providers import ProviderBehaviour

__all__ = ["INCOMING_PASSWORD", "INCOMING_USERNAME", "SinchFarSide"]

log = structlog.get_logger(__name__)

#: The Basic credentials the simulated Sinch service sends with INCOMING_FAX callbacks (as if
#: configured in its incoming-fax webhook URL). A run's ``GOODFAITH_FAX__WEBHOOK_*`` match.
INCOMING_USERNAME = "sinch"
INCOMING_PASSWORD = "sim-sinch-webhook-password"

_E164 = re.compile(r"^\+[1-9]\d{1,14}$")
_TO_IN_PROGRESS = timedelta(seconds=30)
_TO_BUSY = timedelta(minutes=1)
_TO_DONE = timedelta(minutes=2)
_DUPLICATE_AFTER = timedelta(minutes=1)  # a duplicated callback comes again this much later


def _error(status: int, grpc: str, message: str, field_name: str | None = None) -> JSONResponse:
    body: dict[str, Any] = {"code": status, "message": message, "status": grpc, "details": []}
    if field_name:
        body["details"] = [
            {
                "@type": "type.googleapis.com/google.rpc.BadRequest",
                "fieldViolations": [{"field": field_name, "description": message}],
            }
        ]
    return JSONResponse(body, status_code=status)


def _authorised(request: Request) -> bool:
    auth = request.headers.get("authorization", "")
    if not auth.startswith("Basic "):
        return False
    try:
        user, _, secret = base64.b64decode(auth[6:], validate=True).decode().partition(":")
    except (ValueError, UnicodeDecodeError):
        return False
    return bool(user and secret)


def split_credentials(url: str) -> tuple[str, str | None]:
    """``url`` without its user info, and the ``Authorization: Basic`` value it carried."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url, None
    userinfo, host = parts.netloc.rsplit("@", 1)
    user, _, password = userinfo.partition(":")
    pair = f"{unquote(user)}:{unquote(password)}".encode()
    bare = urlunsplit(parts._replace(netloc=host))
    return bare, "Basic " + base64.b64encode(pair).decode("ascii")


@dataclass
class _Fax:
    id: str
    project_id: str
    direction: str
    from_number: str
    to_number: str
    content_url: str
    callback_url: str | None
    callback_json: bool
    labels: dict[str, str]
    created_at: datetime
    timeline: list[tuple[datetime, str]] = field(default_factory=list)
    error: dict[str, Any] = field(default_factory=dict)  # errorType, errorCode, errorMessage
    pages: int | None = None
    completed_at: datetime | None = None
    document: bytes | None = None  # inbound faxes: the PDF

    def status_at(self, now: datetime) -> str:
        reached = [status for at, status in self.timeline if at <= now]
        return reached[-1] if reached else "QUEUED"

    def resource(self, now: datetime) -> dict[str, Any]:
        status = self.status_at(now)
        body: dict[str, Any] = {
            "id": self.id,
            "projectId": self.project_id,
            "direction": self.direction,
            "from": self.from_number,
            "to": self.to_number,
            "status": status,
            "createTime": iso(self.created_at),
            "labels": dict(self.labels),
            "maxRetries": 0,
            "retryCount": 0,
            "hasFile": self.document is not None,
        }
        if self.content_url:
            body["contentUrl"] = self.content_url
        if self.callback_url:
            body["callbackUrl"] = split_credentials(self.callback_url)[0]
        if self.pages is not None:
            body["numberOfPages"] = self.pages
        if status in ("COMPLETED", "FAILURE") and self.completed_at is not None:
            body["completedTime"] = iso(self.completed_at)
            if status == "COMPLETED" and self.direction == "OUTBOUND":
                body["pagesSentSuccessfully"] = self.pages or 1
        if status == "FAILURE":
            body.update(self.error)
        return body


@dataclass
class _Callback:
    """One callback POST, retried until our side answers 2xx."""

    side: SinchFarSide
    fax_id: str
    event: str
    url: str
    as_json: bool
    attempts: int = 0
    duplicate: bool = False  # a second delivery of a callback already delivered

    def fire(self, due: datetime, now: datetime) -> Fired:
        return self.side.post_callback(self, now)


@dataclass
class _Transmit:
    side: SinchFarSide
    fax_id: str

    def fire(self, due: datetime, now: datetime) -> Fired:
        self.side.transmit(self.fax_id, due)
        return Fired.DONE


class SinchFarSide(FarSide):
    """Sinch's fax API and its callbacks, for every provider's fax number."""

    prefixes = ("/v3/",)

    def error(self, status: int, title: str) -> Response | None:
        grpc = {
            400: "INVALID_ARGUMENT",
            401: "UNAUTHENTICATED",
            404: "NOT_FOUND",
            405: "UNIMPLEMENTED",
            422: "INVALID_ARGUMENT",
        }
        return _error(status, grpc.get(status, "INTERNAL"), title)

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self._lock = threading.Lock()
        self._faxes: dict[str, _Fax] = {}
        self._drops = random.Random(ctx.seed + 1)
        self._chance = random.Random(ctx.seed + 2)  # duplicates and throttling
        self.dropped: list[str] = []
        self.throttled = 0  # requests answered 429
        self.duplicated = 0  # callbacks delivered a second time
        self.requests = 0  # fax requests taken (each one a fax: Sinch has no idempotency key)

    def labels(self) -> list[dict[str, str]]:
        """The labels of every outbound fax created so far, in creation order."""
        with self._lock:
            return [dict(f.labels) for f in self._faxes.values() if f.direction == "OUTBOUND"]

    def router(self) -> APIRouter:
        router = APIRouter()
        base = "/v3/projects/{project_id}/faxes"

        @router.post(base)
        async def send_fax(project_id: str, request: Request) -> Response:
            return self._throttled() or self._send(project_id, request, await request.body())

        @router.get(base)
        async def list_faxes(project_id: str, request: Request) -> Response:
            return self._throttled() or self._list(project_id, request)

        @router.get(base + "/{fax_id}")
        async def get_fax(project_id: str, fax_id: str, request: Request) -> Response:
            return self._throttled() or self._get(project_id, fax_id, request)

        @router.get(base + "/{fax_id}/file")
        @router.get(base + "/{fax_id}/file.pdf")
        async def get_file(project_id: str, fax_id: str, request: Request) -> Response:
            return self._throttled() or self._file(project_id, fax_id, request)

        return router

    # --- API -------------------------------------------------------------------------------

    def _throttled(self) -> Response | None:
        """429 with ``Retry-After`` for a ``throttle`` share of requests (nothing is done)."""
        if self.ctx.throttle <= 0:
            return None
        with self._lock:
            if self._chance.random() >= self.ctx.throttle:
                return None
            self.throttled += 1
        response = _error(429, "RESOURCE_EXHAUSTED", "Too many requests")
        response.headers["Retry-After"] = "1"
        return response

    def _send(self, project_id: str, request: Request, raw: bytes) -> Response:
        if not _authorised(request):
            return _error(401, "UNAUTHENTICATED", "Invalid credentials")
        try:
            body = json.loads(raw)
        except ValueError:
            return _error(400, "INVALID_ARGUMENT", "Body is not JSON")
        if not isinstance(body, dict):
            return _error(400, "INVALID_ARGUMENT", "Body is not an object")
        to, sender = body.get("to"), body.get("from", "")
        if not isinstance(to, str) or not _E164.match(to):
            return _error(400, "INVALID_ARGUMENT", f"Invalid phone number {to}", "to")
        if sender and (not isinstance(sender, str) or not _E164.match(sender)):
            return _error(400, "INVALID_ARGUMENT", f"Invalid phone number {sender}", "from")
        content = body.get("contentUrl")
        if isinstance(content, list):
            content = content[0] if content else None
        if not isinstance(content, str) or not content.startswith(("http://", "https://")):
            return _error(400, "INVALID_ARGUMENT", "contentUrl or file is required", "contentUrl")
        labels = body.get("labels") or {}
        if not isinstance(labels, dict) or not all(isinstance(v, str) for v in labels.values()):
            return _error(400, "INVALID_ARGUMENT", "labels must map strings", "labels")
        callback = body.get("callbackUrl")
        now = self.ctx.clock.now()
        fax = _Fax(
            id=uuid.uuid4().hex,
            project_id=project_id,
            direction="OUTBOUND",
            from_number=sender or self.ctx.carrier_fax_number,
            to_number=to,
            content_url=content,
            callback_url=callback if isinstance(callback, str) and callback else None,
            callback_json=body.get("callbackUrlContentType") == "application/json",
            labels=dict(labels),
            created_at=now,
            timeline=[(now, "QUEUED"), (now + _TO_IN_PROGRESS, "IN_PROGRESS")],
        )
        with self._lock:
            self._faxes[fax.id] = fax
            self.requests += 1
        _, behaviour = self.ctx.providers.lookup(to)
        lines = self.ctx.agency_lines
        busy = not lines.answers(to) if lines.owns(to) else behaviour.fax == "busy"
        if busy:
            self._finish(fax, now + _TO_BUSY, "FAILURE", errorType="CALL_ERROR", errorCode=17,
                         errorMessage="Busy")  # fmt: skip
        else:
            self.ctx.events.push(now + _TO_DONE, _Transmit(self, fax.id))
        log.info("sim.fax_queued", fax_id=fax.id, vendor="sinch")
        return JSONResponse(fax.resource(now))

    def _find(self, project_id: str, fax_id: str) -> _Fax | None:
        with self._lock:
            fax = self._faxes.get(fax_id)
        return fax if fax is not None and fax.project_id == project_id else None

    def _get(self, project_id: str, fax_id: str, request: Request) -> Response:
        if not _authorised(request):
            return _error(401, "UNAUTHENTICATED", "Invalid credentials")
        fax = self._find(project_id, fax_id)
        if fax is None:
            return _error(404, "NOT_FOUND", "Fax not found")
        return JSONResponse(fax.resource(self.ctx.clock.now()))

    def _file(self, project_id: str, fax_id: str, request: Request) -> Response:
        if not _authorised(request):
            return _error(401, "UNAUTHENTICATED", "Invalid credentials")
        fax = self._find(project_id, fax_id)
        if fax is None or fax.document is None:
            return _error(404, "NOT_FOUND", "Fax content not found")
        return Response(fax.document, media_type="application/pdf")

    def _list(self, project_id: str, request: Request) -> Response:
        if not _authorised(request):
            return _error(401, "UNAUTHENTICATED", "Invalid credentials")
        q = request.query_params
        try:
            number, size = int(q.get("page", "1")), int(q.get("pageSize", "100"))
        except ValueError:
            return _error(400, "INVALID_ARGUMENT", "page and pageSize are numbers")
        if number < 1 or not 1 <= size <= 1000:
            return _error(400, "INVALID_ARGUMENT", "page >= 1 and 1 <= pageSize <= 1000")
        now = self.ctx.clock.now()
        with self._lock:
            chosen = [
                f
                for f in self._faxes.values()
                if f.project_id == project_id
                and f.direction == q.get("direction", f.direction)
                and f.to_number.startswith(q.get("to", ""))
                and f.from_number.startswith(q.get("from", ""))
                and f.created_at >= now - timedelta(days=7)  # Sinch's default window
            ]
        chosen.sort(key=lambda f: f.created_at, reverse=True)
        page = chosen[(number - 1) * size : number * size]
        return JSONResponse(
            {
                "faxes": [f.resource(now) for f in page],
                "pageNumber": number,
                "pageSize": size,
                "totalItems": len(chosen),
                "totalPages": (len(chosen) + size - 1) // size,
            }
        )

    # --- the line ---------------------------------------------------------------------------

    def _finish(self, fax: _Fax, at: datetime, status: str, **error: Any) -> None:
        with self._lock:
            fax.timeline.append((at, status))
            fax.completed_at = at
            fax.error = dict(error)
        if fax.callback_url:
            self.ctx.events.push(
                at, _Callback(self, fax.id, "FAX_COMPLETED", fax.callback_url, fax.callback_json)
            )

    def transmit(self, fax_id: str, due: datetime) -> None:
        """The fax reaches the provider's machine: fetch the letter, then complete or fail."""
        with self._lock:
            fax = self._faxes[fax_id]
        try:
            response = self.ctx.http.get(fax.content_url)
            ok, letter = response.is_success, response.content
        except httpx.HTTPError:
            ok, letter = False, b""
        if not ok:
            self._finish(fax, due, "FAILURE", errorType="DOCUMENT_CONVERSION_ERROR",
                         errorCode=1, errorMessage="Unable to download contentUrl")  # fmt: skip
            return
        fax.pages = page_count(letter) or 1
        self._finish(fax, due, "COMPLETED")
        if self.ctx.agency_lines.owns(fax.to_number):  # a packet, printed at the agency
            self.ctx.agency_lines.receive(fax.to_number, fax.id, letter, due)
            return
        reference = read_reference(letter)
        provider_id, behaviour = self.ctx.providers.lookup(fax.to_number)
        if self.ctx.providers.count_delivery(provider_id, behaviour, reference or fax.to_number):
            at = due + timedelta(minutes=behaviour.reply_delay_minutes)
            self._incoming(fax, provider_id, behaviour, reference or "UNREFERENCED", at)

    def _incoming(
        self,
        fax: _Fax,
        provider_id: str,
        behaviour: ProviderBehaviour,
        reference: str,
        at: datetime,
    ) -> None:
        document = self.ctx.providers.reply_document(
            provider_id, behaviour, reference, member_id=""
        )
        inbound = _Fax(
            id=uuid.uuid4().hex,
            project_id=fax.project_id,
            direction="INBOUND",
            from_number=fax.to_number,
            to_number=self.ctx.carrier_fax_number,
            content_url="",
            callback_url=None,
            callback_json=False,
            labels={},
            created_at=at,
            timeline=[(at, "COMPLETED")],
            pages=page_count(document),
            completed_at=at,
            document=document,
        )
        with self._lock:
            self._faxes[inbound.id] = inbound
        url = _with_userinfo(self.ctx.webhook_url, INCOMING_USERNAME, INCOMING_PASSWORD)
        self.ctx.events.push(at, _Callback(self, inbound.id, "INCOMING_FAX", url, False))
        log.info("sim.reply_scheduled", channel="fax", vendor="sinch", fax_id=inbound.id)

    # --- callbacks --------------------------------------------------------------------------

    def post_callback(self, item: _Callback, now: datetime) -> Fired:
        with self._lock:
            fax = self._faxes[item.fax_id]
        if item.attempts == 0 and not item.duplicate and self._lose(item):
            return Fired.DONE
        item.attempts += 1
        event = {"event": item.event, "eventTime": iso(now), "fax": fax.resource(now)}
        url, authorization = split_credentials(item.url)
        headers = {"authorization": authorization} if authorization else {}
        try:
            if item.as_json:
                response = self.ctx.http.post(url, json=event, headers=headers)
            else:
                files: dict[str, Any] = {
                    "event": (None, item.event),
                    "eventTime": (None, event["eventTime"]),
                    "fax": (None, json.dumps(event["fax"]), "application/json"),
                }
                if fax.document is not None:
                    files["file"] = (f"{fax.id}.pdf", fax.document, "application/pdf")
                response = self.ctx.http.post(url, files=files, headers=headers)
        except httpx.HTTPError as exc:
            log.info("sim.webhook_failed", fax_id=fax.id, error=type(exc).__name__)
            return Fired.RETRY
        if not response.is_success:
            log.info("sim.webhook_failed", fax_id=fax.id, status=response.status_code)
            return Fired.RETRY
        self.ctx.record_webhook(event)
        if not item.duplicate and self._duplicate():
            again = _Callback(self, item.fax_id, item.event, item.url, item.as_json, duplicate=True)
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
        if self.ctx.drop_webhooks <= 0 or item.event != "FAX_COMPLETED":
            return False
        if self._drops.random() >= self.ctx.drop_webhooks:
            return False
        self.dropped.append(item.fax_id)
        log.info("sim.webhook_dropped", fax_id=item.fax_id, vendor="sinch")
        return True


def _with_userinfo(url: str, username: str, password: str) -> str:
    parts = urlsplit(url)
    host = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit(parts._replace(netloc=f"{username}:{password}@{host}"))
