"""Translate httpx exceptions and HTTP responses into the error tree of ``connectors.base``.

This is the one place where outside errors become ours (CONVENTIONS 4)::

    httpx.TimeoutException, ConnectError, ReadError, WriteError,
    RemoteProtocolError, other NetworkError, ProxyError, DecodingError ──► TransientError
    httpx.UnsupportedProtocol, httpx.InvalidURL                        ──► InvalidDestination
    httpx.LocalProtocolError, TooManyRedirects                         ──► Rejected
    HTTP 2xx                                                           ──► no error
    HTTP 408, 425, 429, 5xx                                            ──► TransientError
    HTTP 401, 403                                                      ──► AuthError
    HTTP 404, 422 whose body names the destination (number, "to", owner) ─► InvalidDestination
    any other 3xx/4xx                                                  ──► Rejected

Messages keep the vendor's error code, title and the field it points at (JSON:API
``errors[].code/title/source.pointer``, FHIR ``OperationOutcome.issue[].code/details``), never
the request body and never free-text details (which may echo what we sent).

This mapper is vendor-neutral. A vendor whose error codes name the destination (Telnyx's
number codes) passes them as ``destination_codes``; they live in that vendor's module.

:func:`call` wraps one HTTP exchange with transport retries (connectors/retry.py) and this
translation, so a connector method is a few lines.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping
from typing import Any

import httpx

from connectors.base import (
    AuthError,
    ConnectorError,
    InvalidDestination,
    Rejected,
    TransientError,
)
from connectors.retry import RetryingFactory

__all__ = ["call", "describe_body", "json_object", "translate_error"]

_TRANSIENT_STATUS = frozenset({408, 425, 429})
_DESTINATION_STATUS = frozenset({404, 422})
# Fields that carry the destination in the bodies we send (Telnyx "to", FHIR Task.owner).
_DESTINATION_FIELDS = frozenset({"to", "destination", "owner", "recipient", "fax_number"})
_DESTINATION_WORDS = re.compile(
    r"destination|phone number|fax number|e\.164|unallocated|recipient|owner", re.IGNORECASE
)
_MAX_PART = 120  # characters kept from one vendor code/title


def translate_error(
    outcome: httpx.HTTPError | httpx.InvalidURL | httpx.Response,
    *,
    what: str,
    destination: str | None = None,
    destination_codes: Collection[str] = frozenset(),
) -> ConnectorError | None:
    """The error for an httpx exception or a response; ``None`` for a 2xx response.

    ``what`` names the operation for the message ("Telnyx send fax"). ``destination`` (a fax
    number or base URL) counts as "named" when a 404/422 body quotes it. ``destination_codes``
    are the vendor's error codes that name the destination (a 404/422 carrying one is
    InvalidDestination).
    """
    if isinstance(outcome, httpx.HTTPStatusError):
        outcome = outcome.response
    if isinstance(outcome, httpx.Response):
        return _from_response(
            outcome, what=what, destination=destination, destination_codes=destination_codes
        )
    return _from_exception(outcome, what=what)


def _from_exception(exc: httpx.HTTPError | httpx.InvalidURL, *, what: str) -> ConnectorError:
    kind = type(exc).__name__
    text = _clip(str(exc)) or kind
    if isinstance(exc, httpx.InvalidURL | httpx.UnsupportedProtocol):
        return InvalidDestination(f"{what}: invalid URL ({kind}: {text}); fix the endpoint")
    if isinstance(exc, httpx.LocalProtocolError | httpx.TooManyRedirects):
        return Rejected(f"{what}: {kind}: {text}")
    if isinstance(
        exc,
        httpx.TimeoutException
        | httpx.NetworkError
        | httpx.RemoteProtocolError
        | httpx.ProxyError
        | httpx.DecodingError,
    ):
        return TransientError(f"{what}: {kind}: {text}")
    if isinstance(exc, httpx.TransportError):  # any future transport failure: worth a retry
        return TransientError(f"{what}: {kind}: {text}")
    return Rejected(f"{what}: {kind}: {text}")


def _from_response(
    response: httpx.Response,
    *,
    what: str,
    destination: str | None,
    destination_codes: Collection[str] = frozenset(),
) -> ConnectorError | None:
    status = response.status_code
    if 200 <= status < 300:
        return None
    body = _json_or_none(response)
    summary = describe_body(body)
    message = f"{what}: HTTP {status}" + (f" ({summary})" if summary else "")
    if status >= 500 or status in _TRANSIENT_STATUS:
        return TransientError(message)
    if status in (401, 403):
        return AuthError(message + "; check the API key and account configuration")
    if status in _DESTINATION_STATUS and _names_destination(
        body, response, destination, destination_codes
    ):
        return InvalidDestination(message)
    return Rejected(message)


def describe_body(body: Any) -> str:
    """A short, PHI-free summary of a vendor error body: codes, titles, field pointers."""
    parts: list[str] = []
    for item in _error_items(body):
        code = item.get("code")
        title = item.get("title")
        pointer = item.get("pointer")
        piece = " ".join(_clip(str(v)) for v in (code, title) if v not in (None, ""))
        if pointer:
            piece += f" at {_clip(str(pointer))}"
        if piece:
            parts.append(piece.strip())
    return "; ".join(parts[:5])


def _error_items(body: Any) -> Iterable[dict[str, Any]]:
    """Normalise JSON:API, FHIR OperationOutcome and generic error bodies to code/title/pointer."""
    if not isinstance(body, Mapping):
        return []
    items: list[dict[str, Any]] = []
    errors = body.get("errors")
    if isinstance(errors, list):  # JSON:API (Telnyx and others)
        for err in errors:
            if isinstance(err, Mapping):
                source = err.get("source")
                pointer = source.get("pointer") if isinstance(source, Mapping) else None
                items.append(
                    {"code": err.get("code"), "title": err.get("title"), "pointer": pointer}
                )
    issues = body.get("issue")
    if body.get("resourceType") == "OperationOutcome" and isinstance(issues, list):
        for issue in issues:
            if isinstance(issue, Mapping):
                details = issue.get("details")
                title = None
                if isinstance(details, Mapping):
                    codings = details.get("coding")
                    if isinstance(codings, list) and codings and isinstance(codings[0], Mapping):
                        title = codings[0].get("code")
                expression = issue.get("expression")
                pointer = (
                    ",".join(str(e) for e in expression) if isinstance(expression, list) else None
                )
                items.append({"code": issue.get("code"), "title": title, "pointer": pointer})
    if not items:
        code = body.get("code") or body.get("error_code")
        title = body.get("title") or body.get("error")
        if isinstance(title, Mapping):
            title = title.get("code") or title.get("title")
        if code is not None or title is not None:
            items.append({"code": code, "title": title, "pointer": body.get("field")})
    return items


def _names_destination(
    body: Any, response: httpx.Response, destination: str | None, codes: Collection[str]
) -> bool:
    for item in _error_items(body):
        pointer = str(item.get("pointer") or "")
        field = re.split(r"[/.,\[]", pointer.strip("/").lower())[-1] if pointer else ""
        if field in _DESTINATION_FIELDS or "owner" in pointer.lower():
            return True
        if str(item.get("code")) in codes:
            return True
        if _DESTINATION_WORDS.search(f"{item.get('code') or ''} {item.get('title') or ''}"):
            return True
    try:
        text = response.text
    except Exception:  # undecodable body: it names nothing we can read
        return False
    if destination and destination in text:
        return True
    return bool(_DESTINATION_WORDS.search(text[:4000]))


def _json_or_none(response: httpx.Response) -> Any:
    try:
        return response.json()
    except Exception:  # not JSON (HTML error page, empty body): nothing to summarise
        return None


def _clip(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _MAX_PART else text[: _MAX_PART - 1] + "…"


def call(
    client: httpx.Client,
    method: str,
    url: str,
    *,
    what: str,
    retrying: RetryingFactory,
    destination: str | None = None,
    destination_codes: Collection[str] = frozenset(),
    answers: Collection[int] = frozenset(),
    **kwargs: Any,
) -> httpx.Response:
    """One HTTP exchange with transport retries; returns the 2xx response or raises ours.

    ``kwargs`` go to ``client.request`` (json=, content=, files=, headers=, ...). Only
    ``TransientError`` is retried; the same request (same idempotency headers) is re-sent.
    ``destination`` and ``destination_codes`` are as for :func:`translate_error`. Statuses in
    ``answers`` are returned rather than raised: a read for which "not found" (404) is an
    answer, not an error.
    """

    def once() -> httpx.Response:
        try:
            response = client.request(method, url, **kwargs)
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            raise _from_exception(exc, what=what) from exc
        if response.status_code in answers:
            return response
        error = _from_response(
            response, what=what, destination=destination, destination_codes=destination_codes
        )
        if error is not None:
            raise error
        return response

    result: httpx.Response = retrying()(once)
    return result


def json_object(response: httpx.Response, *, what: str) -> dict[str, Any]:
    """The 2xx response body as a JSON object.

    An unreadable success body is a ``TransientError``: the far side may have acted, and a
    retry carries the same idempotency key, so retrying is the safe choice.
    """
    try:
        body = response.json()
    except Exception as exc:
        raise TransientError(f"{what}: HTTP {response.status_code} with a non-JSON body") from exc
    if not isinstance(body, dict):
        raise TransientError(f"{what}: HTTP {response.status_code} body is not a JSON object")
    return body
