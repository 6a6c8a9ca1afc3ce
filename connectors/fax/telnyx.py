"""Telnyx Programmable Fax v2: send a request letter by fax, read a fax's status, find a fax
sent before a crash, fetch inbound media. Webhook decoding and signatures:
connectors/fax/telnyx_events.py.

Wire format (developers.telnyx.com, Programmable Fax v2; base ``https://api.telnyx.com/v2``):

- ``POST {base}/v2/faxes`` with ``Authorization: Bearer <key>`` and JSON ``connection_id``,
  ``from``, ``to`` (E.164), ``media_url``, ``webhook_url``, ``client_state`` (base64, echoed in
  every webhook), ``store_media``; 202 with ``data.id``. We also send ``Idempotency-Key`` = the
  attempt's key (and put it in ``client_state``), so a re-sent request never faxes twice where
  the far side honours it, and a webhook can be tied to its attempt either way.
- ``GET {base}/v2/faxes/{id}`` ("View a fax"): 200 ``{"data": <fax>}``, 404 when unknown.
- ``GET {base}/v2/faxes`` ("View a list of faxes"): ``filter[created_at][gte]`` (ISO-8601),
  ``filter[direction][eq]``, ``filter[to][eq]`` (E.164), ``page[number]``, ``page[size]``;
  200 ``{"data": [<fax>...], "meta": {"page_number", "page_size", "total_pages",
  "total_results"}}``. A lost send is recognised by its ``client_state`` (our key).
- Webhooks: see connectors/fax/telnyx_events.py. Duplicates and out-of-order delivery happen:
  consumers dedupe on ``event_id``.
- Inbound ``fax.received`` carries a ``media_url`` valid for about 10 minutes: fetch promptly.
  That URL is pre-signed, so :meth:`TelnyxFax.fetch_media` sends no Authorization header.

Errors follow ``connectors/http_errors.py``, layered with Telnyx's own number codes
(:data:`NUMBER_CODES`): a 404/422 pointing at ``/to`` or carrying one of them is
InvalidDestination.

Settings: :class:`TelnyxSettings` (``GOODFAITH_FAX__VENDOR=telnyx``, the default).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import astuple
from datetime import UTC, datetime
from typing import Any, Literal

import httpx
from pydantic import Field

from config.settings import FaxVendorSettings
from connectors import jsonbody
from connectors.base import (
    AuthError,
    ConnectorError,
    FaxReceivedEvent,
    FaxStatusEvent,
    InboundDocument,
    InvalidDestination,
    RecordsRequest,
    Rejected,
    SendReceipt,
    WebhookError,
)
from connectors.fax.telnyx_events import (
    PROGRESS_EVENTS,
    RETRYABLE_FAILURE_REASONS,
    decode_client_state,
    decode_event,
    encode_client_state,
    fax_status,
    load_public_key,
    public_key_b64,
    received_from_resource,
    sign_webhook,
    verify_signature,
)
from connectors.http_errors import call, json_object
from connectors.http_errors import translate_error as _translate_error
from connectors.retry import RetryingFactory, transport_retrying
from worker.domain.clock import Clock, SystemClock
from worker.domain.types import ChannelKind

__all__ = [
    "NUMBER_CODES",
    "PROGRESS_EVENTS",
    "RETRYABLE_FAILURE_REASONS",
    "TelnyxFax",
    "TelnyxSettings",
    "public_key_b64",
    "sign_webhook",
    "translate_error",
]

VENDOR = "telnyx"

#: Telnyx API error codes about the phone number: inactive, invalid, not in +E.164. A 404/422
#: carrying one is InvalidDestination whatever its title says.
NUMBER_CODES = frozenset({"10001", "10002", "10016"})

#: Listing faxes after a crash: page size, and how many pages are read at most (a crashed send
#: is minutes old; the filter on number and creation time keeps the list short).
PAGE_SIZE = 50
FIND_PAGES = 5


class TelnyxSettings(FaxVendorSettings):
    """Telnyx Programmable Fax account: ``GOODFAITH_FAX__VENDOR=telnyx`` (the default) with
    ``GOODFAITH_FAX__API_KEY``, ``__CONNECTION_ID``, ``__FROM_NUMBER``, ``__API_BASE``,
    ``__WEBHOOK_PUBLIC_KEY``."""

    vendor: Literal["telnyx"] = "telnyx"
    api_base: str = "https://api.telnyx.com"
    # str, not SecretStr, so existing callers keep passing text; repr=False keeps it out of logs.
    api_key: str = Field(default="", repr=False)
    connection_id: str = ""
    #: Ed25519, base64 (Mission Control portal → Keys & Credentials → Public Key). Webhooks
    #: are refused without it; the production processes refuse to start without it.
    webhook_public_key: str | None = None
    #: hosts an inbound fax's ``media_url`` may point at (besides ``api_base``'s own host); a
    #: ``fax.received`` naming any other host is never fetched. JSON list in the environment:
    #: ``GOODFAITH_FAX__MEDIA_HOSTS='["s3.amazonaws.com"]'``.
    media_hosts: list[str] = Field(default_factory=list)

    def secret_problems(self) -> list[str]:
        name = "GOODFAITH_FAX__WEBHOOK_PUBLIC_KEY"
        if not self.webhook_public_key:
            return [
                f"{name} is not set: Telnyx webhooks cannot be verified (the Ed25519 public key, "
                "base64, from the Telnyx portal; `goodfaith simulator` serves its own at "
                "GET /_sim/telnyx-public-key)"
            ]
        try:
            load_public_key(self.webhook_public_key)
        except ValueError:
            return [f"{name} is not a base64 Ed25519 public key (32 bytes)"]
        return []


def translate_error(
    outcome: httpx.HTTPError | httpx.InvalidURL | httpx.Response,
    *,
    what: str,
    destination: str | None = None,
) -> ConnectorError | None:
    """The shared mapper (connectors/http_errors.py) with Telnyx's :data:`NUMBER_CODES`."""
    return _translate_error(
        outcome, what=what, destination=destination, destination_codes=NUMBER_CODES
    )


class TelnyxFax:
    """``FaxChannel`` over Telnyx Programmable Fax v2.

    ``public_key`` is the account's Ed25519 webhook key (base64 text, raw 32 bytes, or base64
    bytes); every webhook must carry a valid signature no older than ``timestamp_tolerance``
    seconds by ``clock`` (pass the simulation's VirtualClock there). Without a key every
    webhook is refused: there is no unverified mode. ``clock`` defaults to the system clock.
    ``media_hosts``: the hosts an inbound ``media_url`` may name besides ``base_url``'s host.
    """

    kind = ChannelKind.FAX
    vendor = VENDOR

    def __init__(
        self,
        client: httpx.Client,
        *,
        api_key: str,
        connection_id: str,
        from_number: str,
        webhook_url: str | None,
        base_url: str = "https://api.telnyx.com",
        public_key: bytes | str | None = None,
        timestamp_tolerance: float = 300.0,
        retrying: RetryingFactory = transport_retrying,
        clock: Clock | None = None,
        media_hosts: Iterable[str] = (),
    ) -> None:
        self._client = client
        self._api_key = api_key
        self._connection_id = connection_id
        self._from = from_number
        self._webhook_url = webhook_url
        self._base = base_url.rstrip("/")
        self._public_key = load_public_key(public_key) if public_key is not None else None
        self._tolerance = timestamp_tolerance
        self._retrying = retrying
        self.clock: Clock = clock if clock is not None else SystemClock()
        own = httpx.URL(self._base).host
        self._media_hosts = frozenset(h.lower() for h in (*media_hosts, own) if h)

    # --- outbound --------------------------------------------------------------------------

    def send(self, request: RecordsRequest) -> SendReceipt:
        """Queue one fax of ``request.document_url`` to ``request.channel.destination``."""
        if request.channel.kind is not ChannelKind.FAX:
            raise InvalidDestination(
                f"TelnyxFax cannot send over a {request.channel.kind} channel; fix the wiring"
            )
        body: dict[str, Any] = {
            "connection_id": self._connection_id,
            "from": self._from,
            "to": request.channel.destination,
            "media_url": request.document_url,
            "client_state": encode_client_state(request.idempotency_key),
            "store_media": False,
        }
        webhook_url = request.callback_url or self._webhook_url
        if webhook_url:
            body["webhook_url"] = webhook_url
        response = call(
            self._client,
            "POST",
            f"{self._base}/v2/faxes",
            what="Telnyx send fax",
            retrying=self._retrying,
            destination=request.channel.destination,
            destination_codes=NUMBER_CODES,
            json=body,
            headers={
                "Authorization": f"Bearer {self._api_key}",
                "Idempotency-Key": request.idempotency_key,
                "Accept": "application/json",
            },
        )
        data = json_object(response, what="Telnyx send fax").get("data")
        fax_id = data.get("id") if isinstance(data, dict) else None
        if not isinstance(fax_id, str) or not fax_id:
            raise Rejected(f"Telnyx send fax: HTTP {response.status_code} without data.id")
        return SendReceipt(external_id=fax_id)

    def status(self, external_id: str) -> FaxStatusEvent | None:
        """``GET /v2/faxes/{id}``: where one outbound fax stands; None when Telnyx has no such
        fax (404)."""
        response = call(
            self._client,
            "GET",
            f"{self._base}/v2/faxes/{external_id}",
            what="Telnyx view fax",
            retrying=self._retrying,
            answers=frozenset({404}),
            headers=self._headers(),
        )
        if response.status_code == 404:
            return None
        data = json_object(response, what="Telnyx view fax").get("data")
        try:
            return fax_status(data, now=self.clock.now())
        except WebhookError as exc:
            raise Rejected(f"Telnyx view fax: {exc}") from exc

    def find_sent(self, request: RecordsRequest, since: datetime) -> SendReceipt | None:
        """``GET /v2/faxes`` to ``request``'s number created since ``since``: the one whose
        ``client_state`` is our key (at most :data:`FIND_PAGES` pages of :data:`PAGE_SIZE`)."""
        params = {
            "filter[to][eq]": request.channel.destination,
            "filter[direction][eq]": "outbound",
            "filter[created_at][gte]": _z(since),
        }
        for faxes in self._pages(params, "Telnyx list faxes", request.channel.destination):
            for fax in faxes:
                if not isinstance(fax, dict) or not isinstance(fax.get("id"), str):
                    continue
                if decode_client_state(fax.get("client_state")) == request.idempotency_key:
                    return SendReceipt(external_id=fax["id"])
        return None

    def list_received(self, since: datetime) -> list[FaxReceivedEvent]:
        """``GET /v2/faxes`` received since ``since`` (``filter[direction][eq]=inbound``), at
        most :data:`FIND_PAGES` pages of :data:`PAGE_SIZE`; only faxes whose status is
        ``received`` (complete), as the ``fax.received`` webhook would have reported them."""
        params = {"filter[direction][eq]": "inbound", "filter[created_at][gte]": _z(since)}
        found = [
            event
            for faxes in self._pages(params, "Telnyx list received faxes")
            for event in map(received_from_resource, faxes)
            if event is not None
        ]
        return sorted(found, key=lambda e: e.occurred_at)

    def _pages(
        self, params: Mapping[str, str], what: str, destination: str | None = None
    ) -> Iterator[list[Any]]:
        """Each page of ``GET /v2/faxes`` with ``params`` (``data``), up to :data:`FIND_PAGES`
        pages of :data:`PAGE_SIZE`, until ``meta.total_pages``."""
        for number in range(1, FIND_PAGES + 1):
            response = call(
                self._client,
                "GET",
                f"{self._base}/v2/faxes",
                what=what,
                retrying=self._retrying,
                destination=destination,
                destination_codes=NUMBER_CODES if destination else frozenset(),
                params={**params, "page[size]": str(PAGE_SIZE), "page[number]": str(number)},
                headers=self._headers(),
            )
            body = json_object(response, what=what)
            faxes = body.get("data")
            if not isinstance(faxes, list):
                raise Rejected(f"{what}: data is not a list")
            yield faxes
            meta = body.get("meta")
            total = meta.get("total_pages") if isinstance(meta, dict) else None
            if not faxes or not isinstance(total, int) or number >= total:
                return

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._api_key}", "Accept": "application/json"}

    # --- webhooks --------------------------------------------------------------------------

    def parse_webhook(
        self, body: bytes, headers: Mapping[str, str]
    ) -> FaxStatusEvent | FaxReceivedEvent | None:
        """Verify and decode one Telnyx webhook; WebhookError when it does not verify (or no
        public key is configured: fail closed)."""
        if self._public_key is None:
            raise WebhookError(
                "Telnyx webhook: no public key configured (GOODFAITH_FAX__WEBHOOK_PUBLIC_KEY); "
                "refusing an unverifiable webhook"
            )
        verify_signature(
            self._public_key, body, headers, now=self.clock.now(), tolerance=self._tolerance
        )
        try:
            envelope = jsonbody.loads(body)
        except ValueError as exc:  # not UTF-8, not JSON, or nested too deep
            raise WebhookError("Telnyx webhook: body is not JSON (UTF-8, nesting limited)") from exc
        event = decode_event(envelope)
        if event is not None and jsonbody.unstorable(astuple(event)):
            raise WebhookError("Telnyx webhook: a field holds a NUL character or a lone surrogate")
        return event

    # --- inbound media ---------------------------------------------------------------------

    def fetch_media(self, url: str) -> InboundDocument:
        """Download an inbound fax's document (pre-signed, short-lived URL; no auth header).

        ``external_id`` is ``"sha256:<hex>"`` of the bytes: the URL changes on each webhook
        redelivery, the content does not. Callers that hold the ``fax_id`` may prefer it.
        A URL on a host not configured for this channel (``media_hosts``, ``api_base``) is
        Rejected without a request: a forged or misrouted webhook cannot make us fetch it.
        """
        try:
            host = httpx.URL(url).host.lower()
        except httpx.InvalidURL:
            host = ""
        if not host or host not in self._media_hosts:
            raise Rejected(
                f"Telnyx fetch fax media: host {host or '(none)'!r} is not configured for fax "
                "media (GOODFAITH_FAX__MEDIA_HOSTS)"
            )
        try:
            response = call(
                self._client, "GET", url, what="Telnyx fetch fax media", retrying=self._retrying
            )
        except AuthError as exc:
            # A pre-signed URL answers 403 once it has expired: not our credentials.
            raise Rejected(
                f"{exc}; the media URL has probably expired (valid ~10 minutes)"
            ) from exc
        content_type = response.headers.get("content-type", "application/octet-stream")
        data = response.content
        return InboundDocument(
            data=data,
            content_type=content_type.split(";")[0].strip().lower(),
            source=ChannelKind.FAX,
            external_id="sha256:" + hashlib.sha256(data).hexdigest(),
        )


def _z(instant: datetime) -> str:
    """An instant as Telnyx's filters take it: UTC with ``Z``."""
    return instant.astimezone(UTC).isoformat().replace("+00:00", "Z")
