"""Deliver a records packet to an external review agency over HTTPS (multipart upload).

Wire format (ours; the simulator's ``POST /agency/{agency_id}/submissions`` speaks it)::

    POST <submit_urls[agency_id]>
    Authorization: Bearer <token> | Basic <base64 user:password>
                                             the agency's credentials, when configured
                                             (else the shared api_key as Bearer, if any)
    Idempotency-Key: <delivery key>          the agency returns the same receipt for a re-send
    Content-Type: multipart/form-data
      metadata  application/json  {"notification_id", "case_ref", "supplemental", "sha256"}
      packet    application/pdf   filename packet.pdf
      manifest  application/json  filename manifest.json

    200/201 {"receipt_id", "received_at" (ISO-8601), "sha256", ...}  → DeliveryReceipt

The agency's ``sha256`` must equal ours: otherwise what it holds is not what we assembled, and
the delivery fails with :class:`HashMismatch` (permanent; never recorded as delivered).

Settings: ``config.settings.AgencySettings`` with ``transport="https"`` (the default). Credentials
never appear in messages, logs or reprs.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

import httpx

from connectors.base import (
    AgencyNotConfigured,
    DeliveryReceipt,
    HashMismatch,
    PacketSubmission,
    Rejected,
)
from connectors.http_errors import call, json_object
from connectors.instants import utc_instant
from connectors.retry import RetryingFactory, transport_retrying

__all__ = ["AgencyCredentials", "AgencyNotConfigured", "HashMismatch", "HttpsAgencyDeliverer"]

TRANSPORT = "https"


@dataclass(frozen=True)
class AgencyCredentials:
    """How we authenticate to one agency: a bearer token, or basic auth. Secrets are left out
    of ``repr`` so they never reach a log line."""

    bearer_token: str | None = field(default=None, repr=False)
    basic_username: str | None = None
    basic_password: str | None = field(default=None, repr=False)

    def authorization(self) -> str | None:
        """The ``Authorization`` header value, or None when no credential is set."""
        if self.bearer_token:
            return f"Bearer {self.bearer_token}"
        if self.basic_username is not None and self.basic_password is not None:
            pair = f"{self.basic_username}:{self.basic_password}".encode()
            return "Basic " + base64.b64encode(pair).decode("ascii")
        return None


class HttpsAgencyDeliverer:
    """``PacketDeliverer`` uploading to each agency's HTTPS submission URL.

    ``credentials`` (agency_id -> :class:`AgencyCredentials`) authenticate each agency's
    upload; ``api_key`` is a Bearer token for agencies without their own credentials.
    """

    transport = TRANSPORT

    def __init__(
        self,
        client: httpx.Client,
        *,
        submit_urls: Mapping[str, str],  # agency_id -> URL
        api_key: str | None = None,
        credentials: Mapping[str, AgencyCredentials] | None = None,
        retrying: RetryingFactory = transport_retrying,
    ) -> None:
        self._client = client
        self._urls = dict(submit_urls)
        self._api_key = api_key
        self._credentials = dict(credentials or {})
        self._retrying = retrying

    def deliver(self, submission: PacketSubmission) -> DeliveryReceipt:
        url = self._urls.get(submission.agency_id)
        if not url:
            raise AgencyNotConfigured(
                f"no submission URL for agency {submission.agency_id!r}; "
                "add it to the agency submit URLs in the settings"
            )
        ours = hashlib.sha256(submission.packet_pdf).hexdigest()
        if ours != submission.sha256.lower():
            raise HashMismatch(
                f"packet bytes hash to {ours} but the submission records {submission.sha256}: "
                "the stored packet changed since assembly; do not deliver it"
            )
        metadata = {
            "notification_id": submission.notification_id,
            "case_ref": submission.case_ref,
            "supplemental": submission.supplemental,
            "sha256": ours,
        }
        headers = {"Idempotency-Key": submission.idempotency_key, "Accept": "application/json"}
        agency_credentials = self._credentials.get(submission.agency_id)
        authorization = agency_credentials.authorization() if agency_credentials else None
        if authorization is None and self._api_key:
            authorization = f"Bearer {self._api_key}"
        if authorization is not None:
            headers["Authorization"] = authorization
        response = call(
            self._client,
            "POST",
            url,
            what=f"agency {submission.agency_id} submission",
            retrying=self._retrying,
            headers=headers,
            files={
                "metadata": (None, json.dumps(metadata).encode(), "application/json"),
                "packet": ("packet.pdf", submission.packet_pdf, "application/pdf"),
                "manifest": (
                    "manifest.json",
                    json.dumps(dict(submission.manifest), sort_keys=True, default=str).encode(),
                    "application/json",
                ),
            },
        )
        body = json_object(response, what=f"agency {submission.agency_id} submission")
        receipt_id, received_at, theirs = (
            body.get("receipt_id"),
            body.get("received_at"),
            body.get("sha256"),
        )
        if not isinstance(receipt_id, str) or not receipt_id or not isinstance(theirs, str):
            raise Rejected(
                f"agency {submission.agency_id} submission: HTTP {response.status_code} "
                "without receipt_id and sha256"
            )
        if theirs.lower() != ours:
            raise HashMismatch(
                f"agency {submission.agency_id} receipt {receipt_id} reports sha256 {theirs} "
                f"but we sent {ours}: the agency holds different bytes than we delivered; "
                "treat the delivery as failed and investigate before re-sending"
            )
        return DeliveryReceipt(
            receipt_id=receipt_id,
            received_at=_instant(received_at),
            sha256=theirs.lower(),
            extra={
                k: v for k, v in body.items() if k not in ("receipt_id", "received_at", "sha256")
            },
        )


def _instant(value: object) -> datetime:
    if not isinstance(value, str):
        raise Rejected("agency receipt: received_at missing")
    instant = utc_instant(value)
    if instant is None:
        raise Rejected("agency receipt: received_at is not ISO-8601")
    return instant
