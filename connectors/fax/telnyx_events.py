"""Telnyx Programmable Fax v2, the wire format without the HTTP client: webhook envelopes and
fax resources decoded into our events, ``client_state``, and Ed25519 webhook signatures.

- Webhooks: ``{"data": {"event_type", "id", "occurred_at", "record_type": "event",
  "payload": {...}}, "meta": {"attempt", "delivered_to"}}``, signed with Ed25519 over
  ``f"{telnyx-timestamp}|{raw body}"`` (base64 in ``telnyx-signature-ed25519``).
- A fax resource (``GET /v2/faxes/{id}`` ``data``, ``GET /v2/faxes`` ``data[]``): ``record_type``
  "fax", ``id``, ``direction``, ``from``, ``to``, ``status`` (``queued``, ``media.processed``,
  ``originated``, ``sending``, ``delivered``, ``failed``; inbound: ``initiated``, ``receiving``,
  ``media.processing``, ``received``), ``client_state``, ``created_at``, ``updated_at``. The
  documented resource has no ``failure_reason``: a failure read this way is "unknown" (not
  retryable) unless the body carries one.

Pure: used by connectors/fax/telnyx.py (and by tests and the simulator's checks).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from connectors.base import FaxReceivedEvent, FaxStatusEvent, WebhookError
from connectors.instants import utc_instant
from worker.domain.types import AttemptOutcome

__all__ = [
    "PROGRESS_EVENTS",
    "RETRYABLE_FAILURE_REASONS",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "decode_client_state",
    "decode_event",
    "encode_client_state",
    "fax_status",
    "load_public_key",
    "public_key_b64",
    "received_from_resource",
    "sign_webhook",
    "verify_signature",
]

SIGNATURE_HEADER = "telnyx-signature-ed25519"
TIMESTAMP_HEADER = "telnyx-timestamp"

#: A Unix time in seconds has 10 digits until the year 2286; more is not a timestamp (and a
#: 400-digit one would overflow the float arithmetic of the age check).
_MAX_TIMESTAMP_DIGITS = 12

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


#: Fax resource statuses of an outbound fax still on its way (not final).
IN_PROGRESS_STATUSES = frozenset({"queued", "media.processed", "originated", "sending"})


def verify_signature(
    key: Ed25519PublicKey,
    body: bytes,
    headers: Mapping[str, str],
    *,
    now: datetime,
    tolerance: float,
) -> None:
    """Check a webhook's Ed25519 signature and that its timestamp is within ``tolerance``
    seconds of ``now``; WebhookError otherwise."""
    lowered = {k.lower(): v for k, v in headers.items()}
    signature = lowered.get(SIGNATURE_HEADER)
    timestamp = lowered.get(TIMESTAMP_HEADER)
    if not signature or not timestamp:
        raise WebhookError(
            f"Telnyx webhook: missing {SIGNATURE_HEADER} or {TIMESTAMP_HEADER} header"
        )
    stamp = timestamp.strip()
    if not stamp.isascii() or not stamp.isdigit() or len(stamp) > _MAX_TIMESTAMP_DIGITS:
        raise WebhookError("Telnyx webhook: telnyx-timestamp is not a Unix time")
    sent_at = int(stamp)
    try:
        raw_signature = base64.b64decode(signature, validate=True)
        key.verify(raw_signature, stamp.encode("ascii") + b"|" + body)
    except (InvalidSignature, binascii.Error, ValueError) as exc:
        raise WebhookError("Telnyx webhook: signature does not verify") from exc
    age = now.timestamp() - sent_at
    if abs(age) > tolerance:
        raise WebhookError(
            f"Telnyx webhook: timestamp is {age:.0f} s away from now "
            f"(tolerance {tolerance:.0f} s); replayed or clock skew"
        )


def fax_status(resource: Any, *, now: datetime) -> FaxStatusEvent:
    """A fax resource (``data`` of ``GET /v2/faxes/{id}``) as a status event: DELIVERED or FAILED
    once final, outcome None while on its way (or in a status we do not know)."""
    if not isinstance(resource, dict):
        raise WebhookError("Telnyx fax: data is not an object")
    fax_id, status = resource.get("id"), resource.get("status")
    if not isinstance(fax_id, str) or not fax_id or not isinstance(status, str):
        raise WebhookError("Telnyx fax: data.id or data.status missing")
    try:
        occurred_at = _parse_instant(resource.get("updated_at"))
    except WebhookError:
        occurred_at = now
    outcome: AttemptOutcome | None = None
    reason: str | None = None
    if status == "delivered":
        outcome = AttemptOutcome.DELIVERED
    elif status == "failed":
        outcome = AttemptOutcome.FAILED
        raw = resource.get("failure_reason")
        reason = raw if isinstance(raw, str) and raw else "unknown"
    return FaxStatusEvent(
        event_id=f"status:{fax_id}:{status}",
        event_type=f"fax.{status}",
        fax_id=fax_id,
        occurred_at=occurred_at,
        outcome=outcome,
        failure_reason=reason,
        client_state=decode_client_state(resource.get("client_state")),
        retryable=reason in RETRYABLE_FAILURE_REASONS,
    )


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
    instant = utc_instant(value)
    if instant is None:
        raise WebhookError("Telnyx webhook: data.occurred_at is not an ISO-8601 instant in range")
    return instant


# --- keys and signing ------------------------------------------------------------------------


def load_public_key(key: bytes | str) -> Ed25519PublicKey:
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


def received_from_resource(fax: object) -> FaxReceivedEvent | None:
    """A received fax as ``GET /v2/faxes`` lists it, read as the ``fax.received`` webhook would
    have reported it; None for anything else (outbound, still receiving, malformed)."""
    if not isinstance(fax, dict) or fax.get("direction") != "inbound":
        return None
    if fax.get("status") != "received":
        return None
    fax_id, from_number, to_number, media_url = (
        fax.get(k) for k in ("id", "from", "to", "media_url")
    )
    if not all(isinstance(v, str) and v for v in (fax_id, from_number, to_number, media_url)):
        return None
    try:
        created = _parse_instant(fax.get("created_at"))
    except WebhookError:
        return None
    pages = fax.get("page_count")
    return FaxReceivedEvent(
        event_id=f"listed:{fax_id}",
        fax_id=str(fax_id),
        occurred_at=created,
        from_number=str(from_number),
        to_number=str(to_number),
        media_url=str(media_url),
        page_count=pages if isinstance(pages, int) and not isinstance(pages, bool) else None,
        partial=fax.get("partial_content") is True,
    )
