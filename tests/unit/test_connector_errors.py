"""The error tree at the HTTP boundary (connectors/http_errors.py) and transport retries."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from connectors.base import (
    AuthError,
    ConnectorError,
    InvalidDestination,
    Rejected,
    TransientError,
)
from connectors.http_errors import call, translate_error
from connectors.retry import no_sleep, no_wait_retrying, transport_retrying

REQUEST = httpx.Request("POST", "https://api.example/v2/faxes")

EXCEPTIONS: list[tuple[Exception, type[ConnectorError]]] = [
    (httpx.ConnectTimeout("t", request=REQUEST), TransientError),
    (httpx.ReadTimeout("t", request=REQUEST), TransientError),
    (httpx.WriteTimeout("t", request=REQUEST), TransientError),
    (httpx.PoolTimeout("t", request=REQUEST), TransientError),
    (httpx.ConnectError("refused", request=REQUEST), TransientError),
    (httpx.ReadError("reset", request=REQUEST), TransientError),
    (httpx.WriteError("broken pipe", request=REQUEST), TransientError),
    (httpx.CloseError("close", request=REQUEST), TransientError),
    (httpx.RemoteProtocolError("peer closed", request=REQUEST), TransientError),
    (httpx.ProxyError("proxy", request=REQUEST), TransientError),
    (httpx.DecodingError("gzip", request=REQUEST), TransientError),
    (httpx.UnsupportedProtocol("ftp://", request=REQUEST), InvalidDestination),
    (httpx.InvalidURL("bad url"), InvalidDestination),
    (httpx.LocalProtocolError("bad header", request=REQUEST), Rejected),
    (httpx.TooManyRedirects("loop", request=REQUEST), Rejected),
]


@pytest.mark.parametrize(
    ("exc", "expected"), EXCEPTIONS, ids=[type(e).__name__ for e, _ in EXCEPTIONS]
)
def test_httpx_exceptions_map_to_the_tree(exc: Exception, expected: type[ConnectorError]) -> None:
    """Each httpx exception becomes exactly the documented kind of ConnectorError."""
    assert isinstance(exc, httpx.HTTPError | httpx.InvalidURL)
    error = translate_error(exc, what="op")
    assert type(error) is expected
    assert str(error).startswith("op: ")


TELNYX_TO = {
    "errors": [
        {
            "code": "10016",
            "title": "Phone number must be in +E.164 format",
            "detail": "+1555 secret",
            "source": {"pointer": "/to"},
        }
    ]
}
TELNYX_CONN = {
    "errors": [
        {
            "code": "10004",
            "title": "Missing required parameter",
            "source": {"pointer": "/connection_id"},
        }
    ]
}
FHIR_OWNER = {
    "resourceType": "OperationOutcome",
    "issue": [{"severity": "error", "code": "not-found", "expression": ["Task.owner"]}],
}

STATUSES: list[tuple[int, Any, type[ConnectorError] | None]] = [
    (200, None, None),
    (201, None, None),
    (202, None, None),
    (204, None, None),
    (301, None, Rejected),
    (400, TELNYX_CONN, Rejected),
    (401, None, AuthError),
    (403, {"errors": [{"code": "10010", "title": "Authorization failed"}]}, AuthError),
    (404, None, Rejected),
    (404, {"errors": [{"code": "10005", "title": "Resource not found"}]}, Rejected),
    (404, FHIR_OWNER, InvalidDestination),
    (404, {"error": "unknown destination"}, InvalidDestination),
    (408, None, TransientError),
    (409, None, Rejected),
    (410, None, Rejected),
    (422, TELNYX_TO, InvalidDestination),
    (422, {"errors": [{"code": "10002", "title": "Invalid phone number"}]}, InvalidDestination),
    (422, TELNYX_CONN, Rejected),
    (425, None, TransientError),
    (429, None, TransientError),
    (500, None, TransientError),
    (502, "<html>bad gateway</html>", TransientError),
    (503, None, TransientError),
    (504, None, TransientError),
]


@pytest.mark.parametrize(("status", "body", "expected"), STATUSES)
def test_responses_map_to_the_tree(
    status: int, body: Any, expected: type[ConnectorError] | None
) -> None:
    """Each status code (and 404/422 body) maps to the documented error, 2xx to none."""
    if isinstance(body, str):
        response = httpx.Response(status, text=body, request=REQUEST)
    else:
        response = httpx.Response(status, json=body, request=REQUEST)
    error = translate_error(response, what="op")
    assert (type(error) if error is not None else None) is expected


def test_a_404_quoting_the_destination_is_invalid_destination() -> None:
    """A 404 whose body quotes the number or URL we gave is InvalidDestination."""
    response = httpx.Response(404, text="no route to +16175551234", request=REQUEST)
    assert type(translate_error(response, what="op", destination="+16175551234")) is (
        InvalidDestination
    )
    assert type(translate_error(response, what="op", destination="+10000000000")) is Rejected


def test_message_keeps_vendor_code_and_title_but_not_details() -> None:
    """Messages carry code, title and pointer; never free-text detail that may echo our data."""
    response = httpx.Response(422, json=TELNYX_TO, request=REQUEST)
    message = str(translate_error(response, what="Telnyx send fax"))
    assert "HTTP 422" in message
    assert "10016" in message and "E.164" in message and "/to" in message
    assert "secret" not in message


def test_retrying_retries_transient_errors_then_reraises_the_last() -> None:
    """TransientError is retried max_attempts times and the last one re-raised unwrapped."""
    waits: list[float] = []
    calls: list[int] = []

    def flaky() -> None:
        calls.append(1)
        raise TransientError(f"try {len(calls)}")

    with pytest.raises(TransientError, match="try 3"):
        transport_retrying(max_attempts=3, initial_wait=1.0, max_wait=30.0, sleep=waits.append)(
            flaky
        )
    assert len(calls) == 3
    assert len(waits) == 2
    assert 1.0 <= waits[0] <= 2.0  # initial wait plus up to initial_wait of jitter
    assert 2.0 <= waits[1] <= 3.0


def test_retrying_waits_are_capped_at_max_wait() -> None:
    """Exponential waits never exceed max_wait seconds."""
    waits: list[float] = []

    def always() -> None:
        raise TransientError("x")

    with pytest.raises(TransientError):
        transport_retrying(max_attempts=8, initial_wait=1.0, max_wait=5.0, sleep=waits.append)(
            always
        )
    assert max(waits) <= 5.0
    assert waits[-1] == pytest.approx(5.0, abs=1.0)


def test_retrying_does_not_retry_permanent_errors() -> None:
    """A PermanentError propagates after one try."""
    calls: list[int] = []

    def rejected() -> None:
        calls.append(1)
        raise Rejected("no")

    with pytest.raises(Rejected):
        transport_retrying(sleep=no_sleep)(rejected)
    assert calls == [1]


def test_retrying_needs_at_least_one_attempt() -> None:
    """max_attempts below 1 is a configuration error."""
    with pytest.raises(ValueError, match="at least 1"):
        transport_retrying(max_attempts=0)


def test_call_retries_5xx_and_connect_errors_then_returns_the_2xx() -> None:
    """call() re-sends the same request after a 503 and a connection failure."""
    seen: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("idempotency-key"))
        if len(seen) == 1:
            return httpx.Response(503)
        if len(seen) == 2:
            raise httpx.ConnectError("refused", request=request)
        return httpx.Response(200, json={"ok": True})

    with httpx.Client(transport=httpx.MockTransport(handler)) as client:
        response = call(
            client,
            "POST",
            "https://x.example/y",
            what="op",
            retrying=no_wait_retrying,
            headers={"Idempotency-Key": "k1"},
        )
    assert response.json() == {"ok": True}
    assert seen == ["k1", "k1", "k1"]


def test_call_gives_up_with_transient_error_after_max_attempts() -> None:
    """A far side that keeps failing ends in TransientError after the configured tries."""
    count: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        count.append(1)
        return httpx.Response(500)

    with (
        httpx.Client(transport=httpx.MockTransport(handler)) as client,
        pytest.raises(TransientError, match="HTTP 500"),
    ):
        call(client, "GET", "https://x.example/y", what="op", retrying=lambda: no_wait_retrying(2))
    assert len(count) == 2


# --- vendor error codes, layered over the vendor-neutral mapper --------------------------------

#: Every vendor error code that names the destination, by vendor: (vendor, code, meaning).
VENDOR_DESTINATION_CODES = [
    ("telnyx", "10001", "inactive phone number"),
    ("telnyx", "10002", "invalid phone number"),
    ("telnyx", "10016", "phone number not in +E.164"),
]


def test_every_vendor_destination_code_is_listed() -> None:
    """The table above is exactly the Telnyx module's NUMBER_CODES (none added or lost)."""
    from connectors.fax import telnyx

    assert {c for v, c, _ in VENDOR_DESTINATION_CODES if v == "telnyx"} == telnyx.NUMBER_CODES


@pytest.mark.parametrize("status", [404, 422])
@pytest.mark.parametrize(("vendor", "code", "meaning"), VENDOR_DESTINATION_CODES)
def test_vendor_destination_codes_map_to_invalid_destination(
    vendor: str, code: str, meaning: str, status: int
) -> None:
    """A 404/422 carrying the vendor's number code (and a title naming nothing) is
    InvalidDestination through the vendor's mapper; the shared mapper alone says Rejected."""
    from connectors.fax import telnyx

    assert vendor == "telnyx"
    body = {"errors": [{"code": code, "title": "Unprocessable", "source": {"pointer": "/x"}}]}
    response = httpx.Response(status, json=body, request=REQUEST)
    assert type(telnyx.translate_error(response, what="op")) is InvalidDestination, meaning
    assert type(translate_error(response, what="op")) is Rejected
    shared = translate_error(response, what="op", destination_codes={code})
    assert type(shared) is InvalidDestination


def test_vendor_codes_do_not_change_other_statuses() -> None:
    """A number code on a 400, 401 or 503 keeps that status's mapping."""
    from connectors.fax import telnyx

    body = {"errors": [{"code": "10002", "title": "Unprocessable"}]}
    for status, expected in [(400, Rejected), (401, AuthError), (503, TransientError)]:
        response = httpx.Response(status, json=body, request=REQUEST)
        assert type(telnyx.translate_error(response, what="op")) is expected


def test_shared_mapper_names_no_vendor() -> None:
    """connectors/http_errors.py holds no vendor's error codes."""
    import connectors.http_errors as shared

    source = Path(shared.__file__).read_text()
    assert "10001" not in source and "10002" not in source and "10016" not in source
