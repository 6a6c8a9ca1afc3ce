"""Sinch Fax API v3 (Phaxio's successor): send a request letter by fax, read a fax's status,
find a fax sent before a crash, decode callbacks, download inbound faxes.

Wire format (developers.sinch.com, Fax API 3.0; base ``https://fax.api.sinch.com``)::

    POST {base}/v3/projects/{projectId}/faxes        Authorization: Basic <key id:key secret>
      JSON {"to", "from", "contentUrl", "callbackUrl", "callbackUrlContentType":
            "application/json", "labels": {"goodfaithKey": <attempt key>}}
      → 200 a fax object {"id", "direction": "OUTBOUND", "status": "QUEUED", "to", "from",
            "createTime", "labels", ...}
    GET  {base}/v3/projects/{projectId}/faxes/{id}              → the fax object; 404 unknown
    GET  {base}/v3/projects/{projectId}/faxes?direction=OUTBOUND&to=…&pageSize=…&page=…
      → {"faxes": [...], "pageNumber", "totalPages", "pageSize", "totalItems"} (default
        window: the prior week)
    GET  {base}/v3/projects/{projectId}/faxes/{id}/file.pdf     → the fax's PDF

Statuses ``QUEUED | IN_PROGRESS | COMPLETED | FAILURE``; a failure carries ``errorType``
(``CALL_ERROR``, ``LINE_ERROR``, ``DOCUMENT_CONVERSION_ERROR``, ``FAX_ERROR``,
``FATAL_ERROR``, ``GENERAL_ERROR``), ``errorCode`` and ``errorMessage``. Call errors 11
(dropped), 15 (congestion), 16 (ring timeout), 17 (busy), 19 (immediate hang-up), 30 (no fax
answer) and 43 (connection problem), and line errors, are worth redialling soon.

Sinch has no idempotency key: our attempt key goes in ``labels`` and :meth:`SinchFax.find_sent`
looks for it after a crash.

Callbacks (``POST /v1/webhooks/sinch``): ``{"event": "FAX_COMPLETED" | "INCOMING_FAX",
"eventTime", "fax": {...}, "file"?, "fileType"?}`` as JSON, or the same fields as
multipart/form-data (``fax`` a JSON text part, ``file`` the PDF). Sinch does not sign fax
callbacks (its own SDKs validate no header for Fax); what it documents is HTTP Basic
authentication given in the callback URL. So the callback URL we hand Sinch carries a
username and password of ours (``GOODFAITH_FAX__WEBHOOK_USERNAME`` /
``__WEBHOOK_PASSWORD``), Sinch sends them as ``Authorization: Basic``, and a callback without
them, or with others, is refused (WebhookError → 401). Configure the same URL (with the
credentials) as the incoming-fax webhook of the Sinch service. An inbound fax is downloaded
from the API with our key, never taken from the callback body: a forged INCOMING_FAX naming
a fax that Sinch does not hold is a 404 there.

Callbacks carry no event id: ``<fax id>:<event>:<status>`` is the id, so a callback delivered
twice dedupes.

Settings: :class:`SinchSettings` (``GOODFAITH_FAX__VENDOR=sinch``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import astuple
from datetime import datetime
from email.errors import MessageError
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any, Literal
from urllib.parse import quote, urlsplit, urlunsplit

import httpx
from pydantic import Field

from config.settings import FaxVendorSettings
from connectors import jsonbody
from connectors.base import (
    FaxReceivedEvent,
    FaxStatusEvent,
    InboundDocument,
    InvalidDestination,
    PermanentError,
    RecordsRequest,
    Rejected,
    SendReceipt,
    WebhookError,
)
from connectors.http_errors import call, json_object
from connectors.instants import utc_instant
from connectors.retry import RetryingFactory, transport_retrying
from worker.domain.clock import Clock, SystemClock
from worker.domain.types import AttemptOutcome, ChannelKind

__all__ = [
    "KEY_LABEL",
    "RETRYABLE_CALL_ERRORS",
    "SinchFax",
    "SinchSettings",
    "decode_callback",
    "fax_status",
    "with_credentials",
]

VENDOR = "sinch"
KEY_LABEL = "goodfaithKey"  # the label carrying our attempt's idempotency key
RETRYABLE_CALL_ERRORS = frozenset({11, 15, 16, 17, 19, 30, 43})
PAGE_SIZE = 100
FIND_PAGES = 5


class SinchSettings(FaxVendorSettings):
    """Sinch Fax API v3 account: ``GOODFAITH_FAX__VENDOR=sinch`` with ``__PROJECT_ID``,
    ``__KEY_ID``, ``__KEY_SECRET`` (an access key of the project), ``__API_BASE`` and the
    callback credentials ``__WEBHOOK_USERNAME`` / ``__WEBHOOK_PASSWORD`` (required: callbacks
    without them are refused)."""

    vendor: Literal["sinch"] = "sinch"
    api_base: str = "https://fax.api.sinch.com"
    project_id: str = ""
    key_id: str = ""
    key_secret: str = Field(default="", repr=False)
    webhook_username: str = "sinch"
    webhook_password: str = Field(default="", repr=False)


def with_credentials(url: str, username: str, password: str) -> str:
    """``url`` with ``username:password@`` in its authority (Basic auth in the URL, as Sinch
    documents for callbacks)."""
    parts = urlsplit(url)
    host = parts.netloc.rsplit("@", 1)[-1]
    userinfo = f"{quote(username, safe='')}:{quote(password, safe='')}"
    return urlunsplit(parts._replace(netloc=f"{userinfo}@{host}"))


def _instant(value: object, default: datetime) -> datetime:
    return utc_instant(value) or default


def _failure(fax: Mapping[str, Any]) -> tuple[str, bool]:
    """(reason, retryable) of a FAILURE fax: ``<errorType>:<errorCode>``."""
    error_type = str(fax.get("errorType") or "UNKNOWN")
    raw_code = fax.get("errorCode")
    try:
        code: int | None = int(raw_code) if raw_code is not None else None
    except (TypeError, ValueError, OverflowError):  # OverflowError: Infinity is valid JSON here
        code = None
    retryable = error_type == "LINE_ERROR" or (
        error_type == "CALL_ERROR" and code in RETRYABLE_CALL_ERRORS
    )
    return (f"{error_type}:{code}" if code is not None else error_type), retryable


def fax_status(fax: Any, *, event: str, now: datetime) -> FaxStatusEvent:
    """A Sinch fax object as a status event: DELIVERED (COMPLETED) or FAILED (FAILURE) once
    final, outcome None while QUEUED or IN_PROGRESS."""
    if not isinstance(fax, dict):
        raise WebhookError("Sinch fax: not an object")
    fax_id, status = fax.get("id"), fax.get("status")
    if not isinstance(fax_id, str) or not fax_id or not isinstance(status, str):
        raise WebhookError("Sinch fax: id or status missing")
    outcome: AttemptOutcome | None = None
    reason: str | None = None
    retryable = False
    if status == "COMPLETED":
        outcome = AttemptOutcome.DELIVERED
    elif status == "FAILURE":
        outcome = AttemptOutcome.FAILED
        reason, retryable = _failure(fax)
    labels = fax.get("labels")
    key = labels.get(KEY_LABEL) if isinstance(labels, dict) else None
    return FaxStatusEvent(
        event_id=f"{fax_id}:{event}:{status}",
        event_type=f"sinch.{status.lower()}",
        fax_id=fax_id,
        occurred_at=_instant(fax.get("completedTime") or fax.get("createTime"), now),
        outcome=outcome,
        failure_reason=reason,
        client_state=key if isinstance(key, str) else None,
        retryable=retryable,
    )


def _form_fields(body: bytes, content_type: str) -> dict[str, Any]:
    """The text parts of a multipart/form-data body (the ``file`` part is left out)."""
    if "\r" in content_type or "\n" in content_type:
        raise WebhookError("Sinch callback: Content-Type spans lines")
    raw = b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + body
    message = BytesParser(policy=HTTP).parsebytes(raw)
    if not message.is_multipart():
        raise WebhookError("Sinch callback: multipart body without parts")
    fields: dict[str, Any] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not isinstance(name, str) or name == "file":
            continue
        payload = part.get_payload(decode=True)
        fields[name] = bytes(payload).decode() if isinstance(payload, bytes) else ""
    return fields


def decode_callback(
    body: bytes, content_type: str, *, now: datetime, api_file_url: str
) -> FaxStatusEvent | FaxReceivedEvent | None:
    """One Sinch callback (JSON or multipart) as our event; None for events we do not act on.
    ``api_file_url`` is the API URL of a fax's PDF with ``{id}`` in it."""
    try:
        if content_type.split(";")[0].strip().lower() == "multipart/form-data":
            fields = _form_fields(body, content_type)
            if isinstance(fields.get("fax"), str):
                fields["fax"] = jsonbody.loads(fields["fax"])
        else:
            fields = jsonbody.loads(body)
    except (ValueError, UnicodeError, MessageError) as exc:
        # ValueError: not UTF-8, not JSON, nested too deep; UnicodeError: a Content-Type
        # outside latin-1; MessageError: a form the email parser cannot read
        raise WebhookError("Sinch callback: body is neither JSON nor a readable form") from exc
    if not isinstance(fields, dict):
        raise WebhookError("Sinch callback: body is not an object")
    event, fax = fields.get("event"), fields.get("fax")
    if not isinstance(fax, dict):
        raise WebhookError("Sinch callback: fax missing")
    at = _instant(fields.get("eventTime"), now)
    if event == "FAX_COMPLETED":
        if fax.get("direction") == "INBOUND":
            return None  # an inbound fax's completion: INCOMING_FAX carries what we need
        return fax_status(fax, event="FAX_COMPLETED", now=at)
    if event == "INCOMING_FAX":
        fax_id, sender, to = fax.get("id"), fax.get("from"), fax.get("to")
        if not all(isinstance(v, str) and v for v in (fax_id, sender, to)):
            raise WebhookError("Sinch INCOMING_FAX: fax.id, fax.from or fax.to missing")
        pages = fax.get("numberOfPages")
        return FaxReceivedEvent(
            event_id=f"{fax_id}:INCOMING_FAX",
            fax_id=str(fax_id),
            occurred_at=at,
            from_number=str(sender),
            to_number=str(to),
            media_url=api_file_url.format(id=fax_id),
            page_count=pages if isinstance(pages, int) else None,
            partial=fax.get("status") == "FAILURE",
        )
    return None


def _bad_request(response: httpx.Response, destination: str) -> PermanentError:
    """Sinch answers a bad number with 400 INVALID_ARGUMENT and a field violation on ``to``
    (the shared mapper only reads 404/422 that way): InvalidDestination; other 400s Rejected."""
    try:
        body = response.json()
    except ValueError:
        body = None
    fields: list[str] = []
    if isinstance(body, dict):
        for detail in body.get("details") or []:
            for violation in (detail or {}).get("fieldViolations") or []:
                if isinstance(violation, dict):
                    fields.append(str(violation.get("field", "")))
    status = body.get("status") if isinstance(body, dict) else None
    message = f"Sinch send fax: HTTP 400 {status or ''}".rstrip()
    if fields:
        message += f" (fields: {', '.join(f for f in fields if f)})"
    if "to" in fields or destination in response.text:
        return InvalidDestination(message)
    return Rejected(message)


class SinchFax:
    """``FaxChannel`` over Sinch Fax API v3.

    ``webhook_password`` is required: callbacks must carry it (Basic auth). ``clock`` stamps
    events whose time the callback leaves out (defaults to the system clock).
    """

    kind = ChannelKind.FAX
    vendor = VENDOR

    def __init__(
        self,
        client: httpx.Client,
        *,
        project_id: str,
        key_id: str,
        key_secret: str,
        from_number: str,
        webhook_url: str | None,
        webhook_username: str,
        webhook_password: str,
        base_url: str = "https://fax.api.sinch.com",
        retrying: RetryingFactory = transport_retrying,
        clock: Clock | None = None,
    ) -> None:
        if not webhook_password:
            raise ValueError(
                "Sinch fax: set GOODFAITH_FAX__WEBHOOK_PASSWORD (callbacks must authenticate; "
                "the same credentials go in the Sinch service's incoming-fax webhook URL)"
            )
        self._client = client
        self._project = f"{base_url.rstrip('/')}/v3/projects/{quote(project_id, safe='')}"
        pair = f"{key_id}:{key_secret}".encode()
        self._auth = "Basic " + base64.b64encode(pair).decode("ascii")
        self._from = from_number
        self._callback = (
            with_credentials(webhook_url, webhook_username, webhook_password)
            if webhook_url
            else None
        )
        expected = f"{webhook_username}:{webhook_password}".encode()
        self._expected = hashlib.sha256(b"Basic " + base64.b64encode(expected)).digest()
        self._retrying = retrying
        self.clock: Clock = clock if clock is not None else SystemClock()

    def _headers(self) -> dict[str, str]:
        return {"Authorization": self._auth, "Accept": "application/json"}

    # --- outbound --------------------------------------------------------------------------

    def send(self, request: RecordsRequest) -> SendReceipt:
        """Queue one fax of ``request.document_url`` to ``request.channel.destination``."""
        if request.channel.kind is not ChannelKind.FAX:
            raise InvalidDestination(
                f"SinchFax cannot send over a {request.channel.kind} channel; fix the wiring"
            )
        body: dict[str, Any] = {
            "to": request.channel.destination,
            "from": self._from,
            "contentUrl": request.document_url,
            "labels": {KEY_LABEL: request.idempotency_key},
        }
        if self._callback:
            body["callbackUrl"] = self._callback
            body["callbackUrlContentType"] = "application/json"
        response = call(
            self._client,
            "POST",
            f"{self._project}/faxes",
            what="Sinch send fax",
            retrying=self._retrying,
            destination=request.channel.destination,
            answers=frozenset({400}),
            json=body,
            headers=self._headers(),
        )
        if response.status_code == 400:
            raise _bad_request(response, request.channel.destination)
        fax_id = json_object(response, what="Sinch send fax").get("id")
        if not isinstance(fax_id, str) or not fax_id:
            raise Rejected(f"Sinch send fax: HTTP {response.status_code} without id")
        return SendReceipt(external_id=fax_id)

    def status(self, external_id: str) -> FaxStatusEvent | None:
        """``GET /faxes/{id}``: where one fax stands; None when Sinch has no such fax (404)."""
        response = call(
            self._client,
            "GET",
            f"{self._project}/faxes/{quote(external_id, safe='')}",
            what="Sinch get fax",
            retrying=self._retrying,
            answers=frozenset({404}),
            headers=self._headers(),
        )
        if response.status_code == 404:
            return None
        try:
            return fax_status(
                json_object(response, what="Sinch get fax"), event="poll", now=self.clock.now()
            )
        except WebhookError as exc:
            raise Rejected(f"Sinch get fax: {exc}") from exc

    def find_sent(self, request: RecordsRequest, since: datetime) -> SendReceipt | None:
        """``GET /faxes`` outbound to ``request``'s number (Sinch's default window: the prior
        week): the one labelled with our key and created at or after ``since``."""
        params = {"direction": "OUTBOUND", "to": request.channel.destination}
        for number in range(1, FIND_PAGES + 1):
            response = call(
                self._client,
                "GET",
                f"{self._project}/faxes",
                what="Sinch list faxes",
                retrying=self._retrying,
                destination=request.channel.destination,
                params={**params, "pageSize": str(PAGE_SIZE), "page": str(number)},
                headers=self._headers(),
            )
            body = json_object(response, what="Sinch list faxes")
            faxes = body.get("faxes", [])
            if not isinstance(faxes, list):
                raise Rejected("Sinch list faxes: faxes is not a list")
            for fax in faxes:
                if not isinstance(fax, dict) or not isinstance(fax.get("id"), str):
                    continue
                labels = fax.get("labels")
                if not isinstance(labels, dict) or labels.get(KEY_LABEL) != request.idempotency_key:
                    continue
                if _instant(fax.get("createTime"), since) >= since:
                    return SendReceipt(external_id=fax["id"])
            total = body.get("totalPages")
            if not faxes or not isinstance(total, int) or number >= total:
                return None
        return None

    # --- callbacks -------------------------------------------------------------------------

    def parse_webhook(
        self, body: bytes, headers: Mapping[str, str]
    ) -> FaxStatusEvent | FaxReceivedEvent | None:
        """Check the callback's Basic credentials, then decode it."""
        lowered = {k.lower(): v for k, v in headers.items()}
        given = lowered.get("authorization", "")
        if not given:
            raise WebhookError("Sinch callback: no Authorization (Basic credentials) header")
        # HTTP header values are latin-1 text; "replace" keeps any other str comparable
        given_bytes = given.encode("latin-1", "replace")
        if not hmac.compare_digest(hashlib.sha256(given_bytes).digest(), self._expected):
            raise WebhookError("Sinch callback: wrong credentials")
        event = decode_callback(
            body,
            lowered.get("content-type", "application/json"),
            now=self.clock.now(),
            api_file_url=f"{self._project}/faxes/{{id}}/file.pdf",
        )
        if event is not None and jsonbody.unstorable(astuple(event)):
            raise WebhookError("Sinch callback: a field holds a NUL character or a lone surrogate")
        return event

    # --- inbound media ---------------------------------------------------------------------

    def fetch_media(self, url: str) -> InboundDocument:
        """Download an inbound fax's PDF from the API (with our key). ``external_id`` is
        ``"sha256:<hex>"`` of the bytes."""
        if not url.startswith(self._project + "/"):
            raise Rejected("Sinch fetch fax: the URL is not this project's API; refusing it")
        response = call(
            self._client,
            "GET",
            url,
            what="Sinch download fax",
            retrying=self._retrying,
            headers={"Authorization": self._auth, "Accept": "application/pdf"},
        )
        content_type = response.headers.get("content-type", "application/octet-stream")
        data = response.content
        return InboundDocument(
            data=data,
            content_type=content_type.split(";")[0].strip().lower(),
            source=ChannelKind.FAX,
            external_id="sha256:" + hashlib.sha256(data).hexdigest(),
        )
