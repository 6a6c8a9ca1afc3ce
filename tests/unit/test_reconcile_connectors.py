"""Reading back what the far side has: Telnyx's fax status (``GET /v2/faxes/{id}``) and fax list
(``GET /v2/faxes`` with ``filter[...]``), CDex's Task search by identifier; errors mapped into
the tree of connectors/base.py. httpx.MockTransport, no network."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from connectors.base import (
    AuthError,
    FindsSent,
    InvalidDestination,
    ListsReceived,
    Rejected,
    TransientError,
)
from connectors.fhir.cdex import ATTEMPT_SYSTEM
from tests.unit.test_fax_telnyx import NOW, fax_request, make_fax
from tests.unit.test_fhir_cdex import BASE, requester, task_request
from worker.domain.types import AttemptOutcome

FAX_ID = "0ccc7b54-4df3-4bca-a65a-3da1ecc777f0"
SINCE = NOW - timedelta(minutes=20)


def fax_resource(status: str, *, key: str = "att-0001", **extra: Any) -> dict[str, Any]:
    """A fax object as Telnyx documents it (View a fax / View a list of faxes)."""
    return {
        "record_type": "fax",
        "id": extra.pop("id", FAX_ID),
        "connection_id": "conn-1",
        "direction": "outbound",
        "from": "+16175550000",
        "to": "+16175551234",
        "media_url": "https://carrier.example/letters/att-0001.pdf",
        "store_media": False,
        "status": status,
        "client_state": base64.b64encode(key.encode()).decode(),
        "created_at": "2026-03-02T14:45:00Z",
        "updated_at": "2026-03-02T14:47:00Z",
        **extra,
    }


# --- Telnyx: status ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        ("queued", None),
        ("media.processed", None),
        ("originated", None),
        ("sending", None),
        ("delivered", AttemptOutcome.DELIVERED),
        ("failed", AttemptOutcome.FAILED),
    ],
)
def test_status_reads_the_fax_and_maps_final_statuses(
    status: str, outcome: AttemptOutcome | None
) -> None:
    """status() GETs /v2/faxes/{id} with Bearer auth; delivered/failed are final, the rest
    are on their way (outcome None)."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"data": fax_resource(status)})

    event = make_fax(handler).status(FAX_ID)
    assert event is not None
    assert (event.fax_id, event.outcome, event.client_state) == (FAX_ID, outcome, "att-0001")
    assert event.occurred_at == datetime(2026, 3, 2, 14, 47, tzinfo=UTC)
    (request,) = seen
    assert (request.method, str(request.url)) == (
        "GET",
        f"https://api.telnyx.com/v2/faxes/{FAX_ID}",
    )
    assert request.headers["authorization"] == "Bearer KEY123"


def test_a_failed_fax_without_a_reason_is_unknown_and_not_retryable() -> None:
    """Telnyx's fax object carries no failure_reason: "unknown", not redialled; one that does
    carry a busy reason is retryable."""
    fax = make_fax(lambda r: httpx.Response(200, json={"data": fax_resource("failed")}))
    event = fax.status(FAX_ID)
    assert event is not None and (event.failure_reason, event.retryable) == ("unknown", False)
    busy = fax_resource("failed", failure_reason="user_busy")
    event = make_fax(lambda r: httpx.Response(200, json={"data": busy})).status(FAX_ID)
    assert event is not None and (event.failure_reason, event.retryable) == ("user_busy", True)


def test_status_of_a_fax_telnyx_does_not_know_is_none() -> None:
    """A 404 (Telnyx error body) is an answer: no such fax."""
    body = {"errors": [{"code": "10005", "title": "Resource not found"}]}
    assert make_fax(lambda r: httpx.Response(404, json=body)).status(FAX_ID) is None


@pytest.mark.parametrize(
    ("response", "error"),
    [
        (httpx.Response(500), TransientError),
        (httpx.Response(429), TransientError),
        (httpx.Response(401, json={"errors": [{"code": "10009"}]}), AuthError),
        (httpx.Response(400, json={"errors": [{"code": "10015"}]}), Rejected),
        (httpx.Response(200, json={"data": {"id": FAX_ID}}), Rejected),  # no status
        (httpx.Response(200, text="<html>"), TransientError),  # unreadable 2xx body
    ],
)
def test_status_errors_are_translated(response: httpx.Response, error: type[Exception]) -> None:
    """Vendor errors and malformed bodies become our error tree, nothing from httpx."""
    with pytest.raises(error):
        make_fax(lambda r: response).status(FAX_ID)


def test_status_on_a_transport_failure_is_transient() -> None:
    """A connection error is TransientError (retried, then raised)."""

    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    with pytest.raises(TransientError):
        make_fax(handler).status(FAX_ID)


# --- Telnyx: list faxes ------------------------------------------------------------------------


def test_find_sent_lists_faxes_to_the_number_since_the_attempt_and_matches_client_state() -> None:
    """find_sent() GETs /v2/faxes with filter[to][eq], filter[direction][eq],
    filter[created_at][gte] and page[...], and returns the fax carrying our key."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        data = [fax_resource("delivered", key="att-other", id="f-1"), fax_resource("sending")]
        meta = {"page_number": 1, "page_size": 50, "total_pages": 1, "total_results": 2}
        return httpx.Response(200, json={"data": data, "meta": meta})

    receipt = make_fax(handler).find_sent(fax_request(), SINCE)
    assert receipt is not None and receipt.external_id == FAX_ID
    (request,) = seen
    assert (request.method, request.url.path) == ("GET", "/v2/faxes")
    assert dict(request.url.params) == {
        "filter[to][eq]": "+16175551234",
        "filter[direction][eq]": "outbound",
        "filter[created_at][gte]": "2026-03-02T14:40:00Z",
        "page[size]": "50",
        "page[number]": "1",
    }
    assert request.headers["authorization"] == "Bearer KEY123"


def test_find_sent_reads_further_pages_and_stops_at_the_last() -> None:
    """Pages are read until the key is found or meta.total_pages is reached."""
    pages: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        number = request.url.params["page[number]"]
        pages.append(number)
        data = [fax_resource("queued", key=f"other-{number}", id=f"f-{number}")]
        meta = {"page_number": int(number), "page_size": 50, "total_pages": 3}
        return httpx.Response(200, json={"data": data, "meta": meta})

    assert make_fax(handler).find_sent(fax_request(), SINCE) is None
    assert pages == ["1", "2", "3"]


def test_find_sent_with_nothing_there_is_none() -> None:
    """An empty list: the crashed send never reached Telnyx."""
    empty = {"data": [], "meta": {"page_number": 1, "total_pages": 0, "total_results": 0}}
    assert make_fax(lambda r: httpx.Response(200, json=empty)).find_sent(fax_request(), SINCE) is (
        None
    )


@pytest.mark.parametrize(
    ("response", "error"),
    [
        (httpx.Response(503), TransientError),
        (httpx.Response(403), AuthError),
        (
            httpx.Response(422, json={"errors": [{"code": "10016", "title": "x"}]}),
            InvalidDestination,
        ),
        (httpx.Response(200, json={"data": {"id": "x"}}), Rejected),  # data not a list
    ],
)
def test_find_sent_errors_are_translated(response: httpx.Response, error: type[Exception]) -> None:
    """List errors map like every other Telnyx call (a number code: InvalidDestination)."""
    with pytest.raises(error):
        make_fax(lambda r: response).find_sent(fax_request(), SINCE)


def received_resource(fax_id: str, status: str = "received", **extra: Any) -> dict[str, Any]:
    """An inbound fax as ``GET /v2/faxes`` lists it."""
    return {
        "record_type": "fax",
        "id": fax_id,
        "connection_id": "conn-1",
        "direction": "inbound",
        "from": "+16175551234",
        "to": "+16175550000",
        "media_url": f"https://api.telnyx.com/v2/media/{fax_id}",
        "status": status,
        "page_count": 4,
        "created_at": extra.pop("created_at", "2026-03-02T14:50:00Z"),
        "updated_at": "2026-03-02T14:51:00Z",
        **extra,
    }


def test_list_received_lists_inbound_faxes_since_and_reads_them_as_the_webhook_would() -> None:
    """list_received() GETs /v2/faxes filtered to inbound faxes created since ``since``, over
    every page, and returns the received ones (not those still receiving, nor outbound ones)
    as fax.received events, oldest first."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        number = int(request.url.params["page[number]"])
        data = (
            [
                received_resource("in-2", created_at="2026-03-02T14:55:00Z"),
                received_resource("in-3", status="receiving"),
                fax_resource("delivered"),
            ]
            if number == 1
            else [received_resource("in-1", created_at="2026-03-02T14:41:00Z")]
        )
        return httpx.Response(200, json={"data": data, "meta": {"total_pages": 2}})

    fax = make_fax(handler)
    assert isinstance(fax, ListsReceived)
    events = fax.list_received(SINCE)
    assert [(e.fax_id, e.page_count, e.partial) for e in events] == [
        ("in-1", 4, False),
        ("in-2", 4, False),
    ]
    assert events[0].from_number == "+16175551234"
    assert events[0].media_url == "https://api.telnyx.com/v2/media/in-1"
    assert events[0].occurred_at == datetime(2026, 3, 2, 14, 41, tzinfo=UTC)
    assert dict(seen[0].url.params) == {
        "filter[direction][eq]": "inbound",
        "filter[created_at][gte]": "2026-03-02T14:40:00Z",
        "page[size]": "50",
        "page[number]": "1",
    }
    assert len(seen) == 2


def test_list_received_errors_are_translated() -> None:
    with pytest.raises(TransientError):
        make_fax(lambda r: httpx.Response(503)).list_received(SINCE)
    with pytest.raises(AuthError):
        make_fax(lambda r: httpx.Response(401)).list_received(SINCE)


# --- CDex: Task search --------------------------------------------------------------------------


def _bundle(*tasks: dict[str, Any]) -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": len(tasks),
        "entry": [
            {"fullUrl": f"{BASE}/Task/{t['id']}", "resource": t, "search": {"mode": "match"}}
            for t in tasks
        ],
    }


def _task(task_id: str, key: str) -> dict[str, Any]:
    return {
        "resourceType": "Task",
        "id": task_id,
        "status": "requested",
        "identifier": [{"system": ATTEMPT_SYSTEM, "value": key}],
    }


def test_cdex_find_sent_searches_tasks_by_our_attempt_identifier() -> None:
    """find_sent() GETs [base]/Task?identifier=<attempt system>|<key> and adopts the Task."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=_bundle(_task("t9", "att-0002")))

    r = requester(handler)
    assert isinstance(r, FindsSent)
    receipt = r.find_sent(task_request(), SINCE)
    assert receipt is not None and receipt.external_id == f"{BASE}/Task/t9"
    (request,) = seen
    assert (request.method, request.url.path) == ("GET", "/fhir/r4/Task")
    assert request.url.params["identifier"] == f"{ATTEMPT_SYSTEM}|att-0002"
    assert request.headers["accept"] == "application/fhir+json"


def test_cdex_find_sent_ignores_tasks_without_our_key_and_empty_bundles() -> None:
    """A server that ignores the parameter returns other Tasks: they are not adopted."""
    other = _bundle(_task("t1", "att-other"))
    assert requester(lambda r: httpx.Response(200, json=other)).find_sent(
        task_request(), SINCE
    ) is (None)
    empty = _bundle()
    assert requester(lambda r: httpx.Response(200, json=empty)).find_sent(
        task_request(), SINCE
    ) is (None)


@pytest.mark.parametrize(
    ("response", "error"),
    [
        (httpx.Response(500), TransientError),
        (httpx.Response(401), AuthError),
        (httpx.Response(400, json={"resourceType": "OperationOutcome", "issue": []}), Rejected),
        (httpx.Response(200, json={"resourceType": "Task", "id": "t1"}), Rejected),
    ],
)
def test_cdex_find_sent_errors_are_translated(
    response: httpx.Response, error: type[Exception]
) -> None:
    """Search errors map into the tree; a body that is not a Bundle is Rejected."""
    with pytest.raises(error):
        requester(lambda r: response).find_sent(task_request(), SINCE)
