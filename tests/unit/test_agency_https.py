"""HttpsAgencyDeliverer: multipart upload, idempotency header, receipt and hash checks."""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import UTC, datetime
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any

import httpx
import pytest
from structlog.testing import capture_logs

from config.settings import AgencySettings
from connectors.base import AuthError, PacketDeliverer, PacketSubmission, PermanentError
from connectors.delivery.https import (
    AgencyCredentials,
    AgencyNotConfigured,
    HashMismatch,
    HttpsAgencyDeliverer,
)
from connectors.registry import BuildContext, build_deliverer
from connectors.retry import no_wait_retrying

PACKET = b"%PDF-1.7 packet bytes"
SHA = hashlib.sha256(PACKET).hexdigest()
URL = "https://agency.example/api/submissions"


def submission(**overrides: Any) -> PacketSubmission:
    values: dict[str, Any] = {
        "idempotency_key": "dlv-1",
        "agency_id": "ma-ocha",
        "case_ref": "case-7",
        "notification_id": "N-100",
        "packet_pdf": PACKET,
        "manifest": {"documents": [{"name": "records.pdf", "sha256": "ab"}]},
        "sha256": SHA,
    }
    values.update(overrides)
    return PacketSubmission(**values)


def deliverer(handler: Any, **kwargs: Any) -> HttpsAgencyDeliverer:
    return HttpsAgencyDeliverer(
        httpx.Client(transport=httpx.MockTransport(handler)),
        submit_urls={"ma-ocha": URL},
        retrying=no_wait_retrying,
        **kwargs,
    )


def receipt(sha: str = SHA) -> httpx.Response:
    return httpx.Response(
        201,
        json={
            "receipt_id": "R-1",
            "received_at": "2026-03-02T15:00:00Z",
            "sha256": sha,
            "pages": 12,
        },
    )


def parts(request: httpx.Request) -> dict[str, tuple[str | None, str, bytes]]:
    """name -> (filename, content type, bytes) of a multipart request."""
    raw = (
        b"Content-Type: " + request.headers["content-type"].encode() + b"\r\n\r\n" + request.content
    )
    message = BytesParser(policy=HTTP).parsebytes(raw)
    found = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        found[str(name)] = (
            part.get_filename(),
            part.get_content_type(),
            bytes(part.get_payload(decode=True)),
        )
    return found


def test_https_deliverer_is_a_packet_deliverer() -> None:
    """HttpsAgencyDeliverer satisfies the PacketDeliverer protocol."""
    assert isinstance(deliverer(lambda request: receipt()), PacketDeliverer)


def test_deliver_uploads_metadata_packet_and_manifest() -> None:
    """The multipart body has the three documented parts and the Idempotency-Key header."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return receipt()

    result = deliverer(handler, api_key="AGENCYKEY").deliver(submission(supplemental=True))
    assert result.receipt_id == "R-1"
    assert result.received_at == datetime(2026, 3, 2, 15, tzinfo=UTC)
    assert result.sha256 == SHA
    assert result.extra == {"pages": 12}
    (request,) = seen
    assert str(request.url) == URL
    assert request.headers["idempotency-key"] == "dlv-1"
    assert request.headers["authorization"] == "Bearer AGENCYKEY"
    body = parts(request)
    assert json.loads(body["metadata"][2]) == {
        "notification_id": "N-100",
        "case_ref": "case-7",
        "supplemental": True,
        "sha256": SHA,
    }
    assert body["metadata"][1] == "application/json"
    assert body["packet"] == ("packet.pdf", "application/pdf", PACKET)
    assert body["manifest"][1] == "application/json"
    assert json.loads(body["manifest"][2]) == {
        "documents": [{"name": "records.pdf", "sha256": "ab"}]
    }


def test_a_different_agency_hash_is_a_permanent_hash_mismatch() -> None:
    """If the agency reports another sha256 the delivery fails loudly, naming both hashes."""
    with pytest.raises(HashMismatch, match="agency holds different bytes") as info:
        deliverer(lambda request: receipt(sha="0" * 64)).deliver(submission())
    assert isinstance(info.value, PermanentError)
    assert SHA in str(info.value)


def test_packet_bytes_not_matching_the_recorded_hash_are_not_sent() -> None:
    """A packet whose bytes changed since assembly is refused before any upload."""
    calls: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        return receipt()

    with pytest.raises(HashMismatch, match="changed since assembly"):
        deliverer(handler).deliver(submission(sha256="f" * 64))
    assert calls == []


def test_an_unknown_agency_is_a_configuration_error() -> None:
    """No URL for the agency → AgencyNotConfigured (permanent), naming the agency."""
    with pytest.raises(AgencyNotConfigured, match="nh-doi"):
        deliverer(lambda request: receipt()).deliver(submission(agency_id="nh-doi"))


def test_transient_failures_are_retried_with_the_same_key() -> None:
    """A 502 then a 201: one receipt, both uploads with the same Idempotency-Key."""
    keys: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        keys.append(request.headers["idempotency-key"])
        return httpx.Response(502) if len(keys) == 1 else receipt()

    assert deliverer(handler).deliver(submission()).receipt_id == "R-1"
    assert keys == ["dlv-1", "dlv-1"]


def test_auth_failure_is_auth_error() -> None:
    """A 401 from the agency is AuthError: fix the API key."""
    with pytest.raises(AuthError):
        deliverer(lambda request: httpx.Response(401)).deliver(submission())


# --- per-agency credentials ----------------------------------------------------------------------


def _auth_header(credentials: AgencyCredentials, **kwargs: Any) -> str | None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return receipt()

    deliverer(handler, credentials={"ma-ocha": credentials}, **kwargs).deliver(submission())
    return seen[0].headers.get("authorization")


def test_agency_bearer_token_is_sent_as_authorization_header() -> None:
    """An agency's bearer token goes out as 'Authorization: Bearer <token>'."""
    assert _auth_header(AgencyCredentials(bearer_token="TOKEN-1")) == "Bearer TOKEN-1"


def test_agency_basic_auth_is_sent_as_authorization_header() -> None:
    """Basic credentials go out as 'Authorization: Basic base64(user:password)'."""
    expected = "Basic " + base64.b64encode(b"carrier:pa:ss").decode()
    header = _auth_header(AgencyCredentials(basic_username="carrier", basic_password="pa:ss"))
    assert header == expected


def test_agency_credentials_override_the_shared_api_key() -> None:
    """An agency's own credentials win over the deliverer-wide api_key; without them it's used."""
    assert _auth_header(AgencyCredentials(bearer_token="T"), api_key="SHARED") == "Bearer T"
    assert _auth_header(AgencyCredentials(), api_key="SHARED") == "Bearer SHARED"
    assert _auth_header(AgencyCredentials()) is None


def test_credentials_are_never_in_reprs_logs_or_errors() -> None:
    """Secrets stay out of repr, of log lines and of the AuthError message on a 401."""
    creds = AgencyCredentials(bearer_token="SECRET-T", basic_username=None)
    basic = AgencyCredentials(basic_username="u", basic_password="SECRET-P")
    assert "SECRET" not in repr(creds) + repr(basic)
    with capture_logs() as logs, pytest.raises(AuthError) as info:
        deliverer(lambda r: httpx.Response(401), credentials={"ma-ocha": creds}).deliver(
            submission()
        )
    assert "SECRET" not in str(info.value)
    assert "SECRET" not in repr(logs)


def test_settings_credentials_reach_the_wire_through_the_registry() -> None:
    """AgencySettings' bearer token (GOODFAITH_AGENCIES) is sent by the deliverer the registry
    builds, and prints as stars in the settings."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return receipt()

    agency = AgencySettings.model_validate(
        {"name": "MA OCHA", "submit_url": URL, "bearer_token": "SECRET-S"}
    )
    assert "SECRET" not in repr(agency) and "SECRET" not in str(agency)
    ctx = BuildContext(
        http=httpx.Client(transport=httpx.MockTransport(handler)),
        retrying=no_wait_retrying,
        public_base_url="https://carrier.example",
    )
    build_deliverer({"ma-ocha": agency}, ctx).deliver(submission())
    assert seen[0].headers["authorization"] == "Bearer SECRET-S"
    assert str(seen[0].url) == URL
