"""What issue 12's fuzzing found, fixed at the edge: bodies over the size limit are 413,
JSON nested past the depth limit is 422 on every route that reads a body, a non-ASCII media
token is a 404 (not a 500); each answer a problem document. And the depth count itself."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from api.app import create_app
from config.settings import BodyLimitSettings
from connectors.jsonbody import MAX_DEPTH, TooDeep, loads, nesting_depth
from simulator.serving import asgi_client
from tests.conftest import at, notification
from tests.fakes import bearer, make_container
from worker.wiring import Container

START = at("2026-04-17T09:00:00-04:00")
DEEP = b"[" * 100_000 + b"]" * 100_000
CASE = "0" * 32

#: Every route that reads a JSON body, and the role that opens it (None: no key needed).
JSON_ROUTES = [
    ("/v1/notifications", "intake"),
    (f"/v1/cases/{CASE}/cancel", "intake"),
    ("/v1/inbox/nope/assign", "ops"),
    ("/v1/review/nope/release", "ops"),
    ("/v1/review/nope/reject", "ops"),
    ("/v1/keys", "admin"),
    ("/v1/webhooks/fake", None),
    ("/v1/webhooks/vendor?vendor_id=v1", None),
]


@pytest.fixture
def c(tmp_path: Path) -> Iterator[Container]:
    container, _clock, _fax, _d = make_container(tmp_path, START)
    container.settings.body_limits = BodyLimitSettings(max_bytes=4096, webhook_max_bytes=65_536)
    yield container
    container.close()


@pytest.fixture
def http(c: Container) -> Iterator[httpx.Client]:
    with asgi_client(create_app(lambda: c)) as client:
        yield client


def _headers(c: Container, role: str | None) -> dict[str, str]:
    return {"content-type": "application/json", **(bearer(c, role) if role else {})}


def _is_problem(answer: httpx.Response, status: int, kind: str) -> None:
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    body = answer.json()
    assert body["type"] == f"/problems/{kind}"
    assert body["status"] == status


@pytest.mark.parametrize(("path", "role"), JSON_ROUTES)
def test_deeply_nested_json_is_refused_on_every_route_that_reads_a_body(
    c: Container, http: httpx.Client, path: str, role: str | None
) -> None:
    """100,000 levels of ``[`` (the body that raised RecursionError) → 422 problem naming the
    setting, before the route runs; a body within the limits gets the route's own answer."""
    c.settings.body_limits = BodyLimitSettings(max_bytes=300_000, webhook_max_bytes=300_000)
    answer = http.post(path, content=DEEP, headers=_headers(c, role))
    _is_problem(answer, 422, "too-deeply-nested")
    assert "GOODFAITH_BODY_LIMITS__MAX_JSON_DEPTH" in answer.json()["detail"]
    shallow = http.post(path, content=b"[" * 10 + b"]" * 10, headers=_headers(c, role))
    assert shallow.status_code != 422 or shallow.json()["type"] != "/problems/too-deeply-nested"


@pytest.mark.parametrize(("path", "role"), JSON_ROUTES)
def test_a_body_over_the_size_limit_is_413(
    c: Container, http: httpx.Client, path: str, role: str | None
) -> None:
    """Over GOODFAITH_BODY_LIMITS__MAX_BYTES (webhooks: __WEBHOOK_MAX_BYTES) → 413 problem,
    whether the size is declared (Content-Length) or only counted as the chunks arrive."""
    limit = 65_536 if path.startswith("/v1/webhooks/") else 4096
    body = json.dumps({"pad": "x" * limit}).encode()
    _is_problem(http.post(path, content=body, headers=_headers(c, role)), 413, "body-too-large")

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
        for i in range(0, len(body), 1000):
            yield body[i : i + 1000]

    answer = http.post(path, content=chunks(), headers=_headers(c, role))
    _is_problem(answer, 413, "body-too-large")


def test_webhooks_have_their_own_larger_limit(c: Container, http: httpx.Client) -> None:
    """A webhook body over the general limit but under the webhook one reaches the route
    (here: the fake fax vendor's name is unknown to the container → 404, not 413)."""
    body = json.dumps({"file": "A" * 10_000}).encode()
    assert http.post("/v1/webhooks/telnyx", content=body).status_code == 404


def test_an_empty_body_is_no_body(c: Container, http: httpx.Client) -> None:
    """An empty cancel body is the default reason (the route's own answer: 409, unknown case)."""
    answer = http.post(f"/v1/cases/{CASE}/cancel", headers=bearer(c, "intake"))
    assert answer.status_code == 409


@pytest.mark.parametrize("token", ["é", "токен", "\u2603" * 40, "a" * 1000])
@pytest.mark.parametrize("path", ["/v1/media/some-attempt", "/v1/media/deliveries/some-delivery"])
def test_a_non_ascii_media_token_is_404(http: httpx.Client, token: str, path: str) -> None:
    """Any token that is not the letter's (or packet fax's) HMAC is 404 (a non-ASCII one
    raised TypeError)."""
    answer = http.get(path, params={"token": token})
    assert answer.status_code == 404
    assert answer.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize(
    ("path", "role", "body", "field"),
    [
        ("/v1/keys", "admin", {"role": "root"}, "role"),
        ("/v1/keys", "admin", {"name": "x"}, "role"),
        ("/v1/inbox/nope/assign", "ops", {"request": "", "by": "ann"}, "request"),
        ("/v1/review/nope/release", "ops", {"reviewer": 5}, "reviewer"),
        (f"/v1/cases/{CASE}/cancel", "intake", {"reason": ["a"]}, "reason"),
    ],
)
def test_invalid_small_bodies_are_422_naming_the_field(
    c: Container, http: httpx.Client, path: str, role: str, body: object, field: str
) -> None:
    """The small bodies are validated by the models the document declares: 422 problem with
    one ``{field, message}`` per invalid member, never the value."""
    answer = http.post(path, json=body, headers=bearer(c, role))
    _is_problem(answer, 422, "invalid-body")
    assert field in [e["field"] for e in answer.json()["errors"]]


def test_a_notification_within_the_depth_limit_is_validated_as_usual(
    c: Container, http: httpx.Client
) -> None:
    """A notification nested deeper than ours but within the limit is judged by intake's
    model: 422 naming the field, not a depth refusal."""
    doc = notification()
    nested: object = "x"
    for _ in range(MAX_DEPTH - 2):
        nested = [nested]
    doc["dispute"] = {"service": "MRI", "codes": nested}
    answer = http.post("/v1/notifications", json=doc, headers=bearer(c, "intake"))
    _is_problem(answer, 422, "invalid-notification")
    assert any(e["field"].startswith("dispute.codes") for e in answer.json()["errors"])


@pytest.mark.parametrize(
    ("text", "depth"),
    [
        ("", 0),
        ("1", 0),
        ("[]", 1),
        ('{"a": [1, {"b": []}]}', 4),
        ('["[[[[", "]]"]', 1),
        ('["\\"[[[", {"x": "\\\\"}]', 2),
        ("]]]][[", 0),
        ('"unterminated [[[', 3),
        ("[" * 1000, 1000),
    ],
)
def test_nesting_depth_counts_levels_outside_strings(text: str, depth: int) -> None:
    """Brackets inside strings (escaped quotes too) do not count; unterminated text counts
    every bracket (an upper bound of what the parser would enter)."""
    assert nesting_depth(text) == depth
    assert nesting_depth(text.encode()) == depth


def test_loads_refuses_deep_and_non_utf8_documents() -> None:
    """loads: ValueError (TooDeep) past the limit, ValueError for UTF-16 or invalid UTF-8."""
    assert loads(b'{"a": [1, 2]}') == {"a": [1, 2]}
    with pytest.raises(TooDeep):
        loads(DEEP)
    with pytest.raises(TooDeep):
        loads("[" * 9 + "]" * 9, max_depth=8)
    for bad in ('{"a": 1}'.encode("utf-16"), b"\xff\xfe", b"{"):
        with pytest.raises(ValueError):
            loads(bad)


@pytest.mark.parametrize(
    ("method", "path", "role"),
    [
        ("GET", "/v1/cases/a%00b", "ops"),
        ("GET", "/v1/cases?status=open%00", "ops"),
        ("GET", "/v1/exports/attempts?case_id=%00", "compliance"),
        ("POST", "/v1/cases/x%00/cancel", "intake"),
        ("GET", "/v1/media/a%00?token=x", None),
    ],
)
def test_a_nul_in_the_path_or_query_is_422(
    c: Container, http: httpx.Client, method: str, path: str, role: str | None
) -> None:
    """PostgreSQL text cannot hold NUL (a lookup raised DataError, a 500): refused at the
    edge with a 422 problem, before any key check or query."""
    answer = http.request(method, path, headers=bearer(c, role) if role else {})
    _is_problem(answer, 422, "nul-character")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"notification_id": "N\u0000"}, "notification_id"),
        ({"jurisdiction": "MA\u0000"}, "jurisdiction"),
        ({"dispute": {"service": "MRI", "codes": ["721\u000048"]}}, "dispute.codes"),
    ],
)
def test_a_nul_in_a_notification_is_422_naming_the_field(
    c: Container, http: httpx.Client, body: dict[str, object], field: str
) -> None:
    """A NUL (\\u0000 in JSON) in any text of a notification: 422 naming that field."""
    answer = http.post("/v1/notifications", json=notification(**body), headers=bearer(c, "intake"))
    _is_problem(answer, 422, "invalid-notification")
    assert field in [e["field"] for e in answer.json()["errors"]]


@pytest.mark.parametrize("bound", ["9999-12-31T23:59:59-23:59", "0001-01-01T00:00:00+23:59"])
def test_an_export_bound_without_a_utc_form_is_422(
    c: Container, http: httpx.Client, bound: str
) -> None:
    """An instant at the calendar's edge (it has no UTC form; PostgreSQL overflowed on it):
    422 naming the parameter."""
    answer = http.get(
        "/v1/exports/attempts",
        params={"received_from": bound},
        headers=bearer(c, "compliance"),
    )
    assert answer.status_code == 422
    assert "received_from" in answer.json()["detail"]
