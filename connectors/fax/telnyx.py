"""Telnyx Programmable Fax v2: send a request letter by fax, decode fax webhooks, fetch media.

Wire format (developers.telnyx.com, Programmable Fax v2):

- ``POST {base}/v2/faxes`` with ``Authorization: Bearer <key>`` and JSON ``connection_id``,
  ``from``, ``to`` (E.164), ``media_url``, ``webhook_url``, ``client_state`` (base64, echoed in
  every webhook), ``store_media``; 202 with ``data.id``. We also send ``Idempotency-Key`` = the
  attempt's key (and put it in ``client_state``), so a re-sent request never faxes twice where
  the far side honours it, and a webhook can be tied to its attempt either way.
- Webhooks: ``{"data": {"event_type", "id", "occurred_at", "record_type": "event",
  "payload": {...}}, "meta": {"attempt", "delivered_to"}}``, signed with Ed25519 over
  ``f"{telnyx-timestamp}|{raw body}"`` (base64 in ``telnyx-signature-ed25519``). Duplicates and
  out-of-order delivery happen: consumers dedupe on ``event_id``.
- Inbound ``fax.received`` carries a ``media_url`` valid for about 10 minutes: fetch promptly.
  That URL is pre-signed, so :meth:`TelnyxFax.fetch_media` sends no Authorization header.

Errors follow ``connectors/http_errors.py``, layered with Telnyx's own number codes
(:data:`NUMBER_CODES`): a 404/422 pointing at ``/to`` or carrying one of them is
InvalidDestination.

Settings: :class:`TelnyxSettings` (``GOODFAITH_FAX__VENDOR=telnyx``, the default).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Literal

import httpx
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from pydantic import Field

from config.settings import FaxVendorSettings
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
from connectors.http_errors import call, json_object
from connectors.http_errors import translate_error as _translate_error
from connectors.retry import RetryingFactory, transport_retrying
from worker.domain.clock import Clock, SystemClock
from worker.domain.types import AttemptOutcome, ChannelKind

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

SIGNATURE_HEADER = "telnyx-signature-ed25519"
TIMESTAMP_HEADER = "telnyx-timestamp"

PROGRESS_EVENTS = frozenset({"fax.queued", "fax.media.processed", "fax.sending.started"})

#: ``failure_reason`` values (Telnyx fax error list) where redialling soon may succeed: the line
#: was busy or did not answer, or the call dropped / the telephony path failed midway. Anything
#: else (invalid or unallocated number, declined, file or account problems) is not retryable.
RETRYABLE_FAILURE_REASONS = frozenset(
    {
        "user_busy",
        "receiver_no_answer",
        "receiver_no_response",
        "receiver_call_dropped",
        "receiver_communication_error",
        "receiver_recovery_on_timer_expire",
        "fax_signaling_error",
        "fax_initial_communication_timeout",
        "invalid_ecm_response_from_receiver",
        "destination_unreachable",
        "service_unavailable",
        "carrier_lost",
        "user_channel_limit_exceeded",
        "connection_channel_limit_exceeded",
        "outbound_profile_channel_limit_exceeded",
    }
)

#: Telnyx API error codes about the phone number: inactive, invalid, not in +E.164. A 404/422
#: carrying one is InvalidDestination whatever its title says.
NUMBER_CODES = frozenset({"10001", "10002", "10016"})


class TelnyxSettings(FaxVendorSettings):
    """Telnyx Programmable Fax account: ``GOODFAITH_FAX__VENDOR=telnyx`` (the default) with
    ``GOODFAITH_FAX__API_KEY``, ``__CONNECTION_ID``, ``__FROM_NUMBER``, ``__API_BASE``,
    ``__WEBHOOK_PUBLIC_KEY``."""

    vendor: Literal["telnyx"] = "telnyx"
    api_base: str = "https://api.telnyx.com"
    # str, not SecretStr, so existing callers keep passing text; repr=False keeps it out of logs.
    api_key: str = Field(default="", repr=False)
    connection_id: str = ""
    webhook_public_key: str | None = None  # Ed25519, base64: when set, webhooks must verify


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
    bytes); when set, every webhook must carry a valid signature no older than
    ``timestamp_tolerance`` seconds by ``clock`` (pass the simulation's VirtualClock there).
    ``clock`` is optional and defaults to the system clock.
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
    ) -> None:
        self._client = client
        self._api_key = api_key
        self._connection_id = connection_id
        self._from = from_number
        self._webhook_url = webhook_url
        self._base = base_url.rstrip("/")
        self._public_key = _load_public_key(public_key) if public_key is not None else None
        self._tolerance = timestamp_tolerance
        self._retrying = retrying
        self._clock: Clock = clock if clock is not None else SystemClock()

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

    # --- webhooks --------------------------------------------------------------------------

    def parse_webhook(
        self, body: bytes, headers: Mapping[str, str]
    ) -> FaxStatusEvent | FaxReceivedEvent | None:
        """Verify (when a public key is set) and decode one Telnyx webhook."""
        if self._public_key is not None:
            self._verify(self._public_key, body, headers)
        try:
            envelope = json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise WebhookError("Telnyx webhook: body is not JSON") from exc
        return decode_event(envelope)

    def _verify(self, key: Ed25519PublicKey, body: bytes, headers: Mapping[str, str]) -> None:
        lowered = {k.lower(): v for k, v in headers.items()}
        signature = lowered.get(SIGNATURE_HEADER)
        timestamp = lowered.get(TIMESTAMP_HEADER)
        if not signature or not timestamp:
            raise WebhookError(
                f"Telnyx webhook: missing {SIGNATURE_HEADER} or {TIMESTAMP_HEADER} header"
            )
        try:
            sent_at = int(timestamp.strip())
        except ValueError as exc:
            raise WebhookError("Telnyx webhook: telnyx-timestamp is not a Unix time") from exc
        try:
            raw_signature = base64.b64decode(signature, validate=True)
            key.verify(raw_signature, timestamp.strip().encode() + b"|" + body)
        except (InvalidSignature, binascii.Error, ValueError) as exc:
            raise WebhookError("Telnyx webhook: signature does not verify") from exc
        age = self._clock.now().timestamp() - sent_at
        if abs(age) > self._tolerance:
            raise WebhookError(
                f"Telnyx webhook: timestamp is {age:.0f} s away from now "
                f"(tolerance {self._tolerance:.0f} s); replayed or clock skew"
            )

    # --- inbound media ---------------------------------------------------------------------

    def fetch_media(self, url: str) -> InboundDocument:
        """Download an inbound fax's document (pre-signed, short-lived URL; no auth header).

        ``external_id`` is ``"sha256:<hex>"`` of the bytes: the URL changes on each webhook
        redelivery, the content does not. Callers that hold the ``fax_id`` may prefer it.
        """
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


# --- decoding (pure) -----------------------------------------------------------------------


def encode_client_state(value: str) -> str:
    """Telnyx ``client_state``: base64 of the UTF-8 text."""
    return base64.b64encode(value.encode()).decode("ascii")


def decode_client_state(value: object) -> str | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return base64.b64decode(value, validate=True).decode()
    except (binascii.Error, ValueError, UnicodeDecodeError):
        return None  # someone else's state, not ours: ignore rather than reject the event


def decode_event(envelope: Any) -> FaxStatusEvent | FaxReceivedEvent | None:
    """Decode a Telnyx webhook envelope; ``None`` for event types we do not act on."""
    data = envelope.get("data") if isinstance(envelope, dict) else None
    if not isinstance(data, dict):
        raise WebhookError("Telnyx webhook: no data object")
    event_type = data.get("event_type")
    event_id = data.get("id")
    if not isinstance(event_type, str) or not isinstance(event_id, str) or not event_id:
        raise WebhookError("Telnyx webhook: data.event_type or data.id missing")
    record_type = data.get("record_type", "event")
    if record_type != "event":
        raise WebhookError(f"Telnyx webhook: record_type {record_type!r} is not 'event'")
    is_status = event_type in PROGRESS_EVENTS or event_type in ("fax.delivered", "fax.failed")
    if not is_status and event_type != "fax.received":
        return None
    occurred_at = _parse_instant(data.get("occurred_at"))
    payload = data.get("payload")
    if not isinstance(payload, dict):
        raise WebhookError(f"Telnyx webhook {event_type}: no payload object")
    fax_id = payload.get("fax_id")
    if not isinstance(fax_id, str) or not fax_id:
        raise WebhookError(f"Telnyx webhook {event_type}: payload.fax_id missing")

    if event_type == "fax.received":
        from_number, to_number, media_url = (payload.get(k) for k in ("from", "to", "media_url"))
        if not all(isinstance(v, str) and v for v in (from_number, to_number, media_url)):
            raise WebhookError("Telnyx webhook fax.received: from, to or media_url missing")
        page_count = payload.get("page_count")
        return FaxReceivedEvent(
            event_id=event_id,
            fax_id=fax_id,
            occurred_at=occurred_at,
            from_number=str(from_number),
            to_number=str(to_number),
            media_url=str(media_url),
            page_count=page_count
            if isinstance(page_count, int) and not isinstance(page_count, bool)
            else None,
            partial=payload.get("partial_content") is True,
        )

    outcome: AttemptOutcome | None = None
    failure_reason: str | None = None
    retryable = False
    if event_type == "fax.delivered":
        outcome = AttemptOutcome.DELIVERED
    elif event_type == "fax.failed":
        outcome = AttemptOutcome.FAILED
        reason = payload.get("failure_reason")
        failure_reason = reason if isinstance(reason, str) and reason else "unknown"
        retryable = failure_reason in RETRYABLE_FAILURE_REASONS
    return FaxStatusEvent(
        event_id=event_id,
        event_type=event_type,
        fax_id=fax_id,
        occurred_at=occurred_at,
        outcome=outcome,
        failure_reason=failure_reason,
        client_state=decode_client_state(payload.get("client_state")),
        retryable=retryable,
    )


def _parse_instant(value: object) -> datetime:
    if not isinstance(value, str):
        raise WebhookError("Telnyx webhook: data.occurred_at missing")
    try:
        instant = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise WebhookError("Telnyx webhook: data.occurred_at is not ISO-8601") from exc
    if instant.tzinfo is None:
        instant = instant.replace(tzinfo=UTC)
    return instant.astimezone(UTC)


# --- keys and signing ------------------------------------------------------------------------


def _load_public_key(key: bytes | str) -> Ed25519PublicKey:
    try:
        raw = key if isinstance(key, bytes) and len(key) == 32 else base64.b64decode(key)
        return Ed25519PublicKey.from_public_bytes(raw)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(
            "Telnyx public_key must be the Ed25519 webhook key from the portal "
            "(base64 text, or 32 raw bytes)"
        ) from exc


def _private_key(key: Ed25519PrivateKey | bytes) -> Ed25519PrivateKey:
    if isinstance(key, Ed25519PrivateKey):
        return key
    return Ed25519PrivateKey.from_private_bytes(key)


def sign_webhook(private_key: Ed25519PrivateKey | bytes, timestamp: int | str, body: bytes) -> str:
    """The ``telnyx-signature-ed25519`` value for ``body`` sent at ``timestamp`` (Unix seconds).

    ``private_key`` is an Ed25519 key or its 32-byte raw seed. For the simulator and tests.
    """
    signed = str(timestamp).encode() + b"|" + body
    return base64.b64encode(_private_key(private_key).sign(signed)).decode("ascii")


def public_key_b64(private_key: Ed25519PrivateKey | bytes) -> str:
    """The base64 public key matching ``private_key``: what TelnyxFax's ``public_key`` takes."""
    raw = _private_key(private_key).public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return base64.b64encode(raw).decode("ascii")
