"""CDexTaskRequester: the Task it posts, how it polls and maps HRex statuses, its cadence."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from connectors.base import InvalidDestination, PollingRequester, RecordsRequest, Rejected
from connectors.fhir.cdex import (
    ATTEMPT_SYSTEM,
    CDEX_TEMP,
    HREX_TEMP,
    NPI_SYSTEM,
    REFERENCE_SYSTEM,
    CDexTaskRequester,
    next_poll_delay,
    split_task_url,
)
from connectors.retry import no_wait_retrying
from worker.domain.clock import VirtualClock
from worker.domain.types import AttemptOutcome, Channel, ChannelKind

BASE = "https://ehr.example/fhir/r4"
NOW = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
PDF = b"%PDF-1.4 records"


def requester(handler: Any) -> CDexTaskRequester:
    return CDexTaskRequester(
        httpx.Client(transport=httpx.MockTransport(handler)),
        requester_name="Acme Health",
        requester_identifier="PAYER-1",
        retrying=no_wait_retrying,
        clock=VirtualClock(NOW),
    )


def task_request(owner: str | None = "1234567893") -> RecordsRequest:
    return RecordsRequest(
        idempotency_key="att-0002",
        reference="GF-ABCD1234",
        channel=Channel(kind=ChannelKind.FHIR, destination=BASE + "/", owner_id=owner),
        document_url="https://carrier.example/letters/att-0002.pdf",
        member_id="M-1",
        requester="Acme Health",
        purpose="External review (958 CMR 3.409)",
        loinc_code="18842-5",
    )


def test_cdex_requester_is_a_polling_requester() -> None:
    """CDexTaskRequester satisfies PollingRequester with the FHIR kind."""
    r: PollingRequester = requester(lambda request: httpx.Response(500))
    assert r.kind is ChannelKind.FHIR


def test_send_posts_a_cdex_data_request_task() -> None:
    """send() POSTs [base]/Task with the CDex profile's required elements and idempotency."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(201, json={"resourceType": "Task", "id": "t1"})

    receipt = requester(handler).send(task_request())
    assert receipt.external_id == f"{BASE}/Task/t1"
    (request,) = seen
    assert str(request.url) == f"{BASE}/Task"
    assert request.headers["content-type"] == "application/fhir+json"
    assert request.headers["idempotency-key"] == "att-0002"
    assert request.headers["if-none-exist"] == f"identifier={ATTEMPT_SYSTEM}|att-0002"
    task = json.loads(request.content)
    assert (task["resourceType"], task["status"], task["intent"]) == ("Task", "requested", "order")
    assert task["code"]["coding"] == [{"system": CDEX_TEMP, "code": "data-request-code"}]
    assert task["for"]["identifier"]["value"] == "M-1"
    assert task["owner"]["identifier"] == {"system": NPI_SYSTEM, "value": "1234567893"}
    assert task["requester"]["identifier"]["value"] == "PAYER-1"
    assert task["authoredOn"] == "2026-03-02T15:00:00Z"
    assert task["reasonCode"]["text"] == "External review (958 CMR 3.409)"
    assert {"system": REFERENCE_SYSTEM, "value": "GF-ABCD1234"}.items() <= task["identifier"][
        0
    ].items()
    data_code, purpose, signature = task["input"]
    assert data_code["type"]["coding"][0] == {"system": HREX_TEMP, "code": "data-code"}
    assert [c["code"] for c in data_code["valueCodeableConcept"]["coding"]] == ["18842-5"]
    assert purpose["type"]["coding"][0] == {"system": CDEX_TEMP, "code": "purpose-of-use"}
    assert signature == {
        "type": {"coding": [{"system": CDEX_TEMP, "code": "signature-flag"}]},
        "valueBoolean": False,
    }


def test_send_takes_the_id_from_location_when_the_body_is_empty() -> None:
    """A 201 with only a Location header still yields the Task URL (without _history)."""
    response = httpx.Response(201, headers={"Location": f"{BASE}/Task/abc-9/_history/1"})
    assert requester(lambda request: response).send(task_request()).external_id == (
        f"{BASE}/Task/abc-9"
    )


def test_send_needs_the_owner_npi() -> None:
    """Without channel.owner_id there is no Task owner: InvalidDestination, nothing sent."""
    calls: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        return httpx.Response(201)

    with pytest.raises(InvalidDestination, match="NPI"):
        requester(handler).send(task_request(owner=None))
    assert calls == []


def test_send_retries_5xx() -> None:
    """A 503 from the FHIR server is retried within the attempt."""
    responses = [httpx.Response(503), httpx.Response(201, json={"id": "t2"})]
    r = requester(lambda request: responses.pop(0))
    assert r.send(task_request()).external_id.endswith("/Task/t2")


def task(status: str, **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "Task",
        "id": "t1",
        "status": status,
        "owner": {"identifier": {"system": NPI_SYSTEM, "value": "1234567893"}},
        **extra,
    }


def poll(body: dict[str, Any], extra_routes: dict[str, httpx.Response] | None = None) -> Any:
    def handler(request: httpx.Request) -> httpx.Response:
        if str(request.url) == f"{BASE}/Task/t1":
            return httpx.Response(200, json=body)
        if extra_routes and str(request.url) in extra_routes:
            return extra_routes[str(request.url)]
        return httpx.Response(404)

    return requester(handler).poll(f"{BASE}/Task/t1")


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        ("requested", AttemptOutcome.SENT),
        ("accepted", AttemptOutcome.DELIVERED),
        ("in-progress", AttemptOutcome.DELIVERED),
        ("on-hold", AttemptOutcome.DELIVERED),
    ],
)
def test_open_statuses_map_to_outcomes(status: str, outcome: AttemptOutcome) -> None:
    """requested is SENT; accepted/in-progress/on-hold mean the provider has it (DELIVERED)."""
    result = poll(task(status))
    assert (result.status, result.outcome, result.documents, result.no_records) == (
        status,
        outcome,
        (),
        False,
    )


def output(reference: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"type": {"coding": [{"system": HREX_TEMP, "code": "data-value"}]}, **reference}]


def test_completed_with_a_contained_document_reference_yields_the_pdf() -> None:
    """completed + output data-value → contained DocumentReference → the base64 PDF."""
    doc = {
        "resourceType": "DocumentReference",
        "id": "d1",
        "content": [
            {
                "attachment": {
                    "contentType": "application/pdf",
                    "data": base64.b64encode(PDF).decode(),
                }
            }
        ],
    }
    body = task(
        "completed", contained=[doc], output=output({"valueReference": {"reference": "#d1"}})
    )
    result = poll(body)
    assert result.outcome is AttemptOutcome.DELIVERED
    (document,) = result.documents
    assert (document.data, document.content_type, document.source) == (
        PDF,
        "application/pdf",
        ChannelKind.FHIR,
    )
    assert document.sender == "1234567893"
    assert document.external_id.startswith(f"{BASE}/Task/t1#output/")


def test_completed_with_a_resolvable_bundle_reference_is_fetched() -> None:
    """A relative reference to a Bundle is read from the same server; each PDF becomes a document."""
    bundle = {
        "resourceType": "Bundle",
        "entry": [
            {
                "resource": {
                    "resourceType": "Binary",
                    "contentType": "application/pdf",
                    "data": base64.b64encode(PDF).decode(),
                }
            },
            {
                "resource": {
                    "resourceType": "DocumentReference",
                    "content": [
                        {"attachment": {"contentType": "application/pdf", "url": "Binary/b2"}}
                    ],
                }
            },
        ],
    }
    routes = {
        f"{BASE}/Bundle/b1": httpx.Response(200, json=bundle),
        f"{BASE}/Binary/b2": httpx.Response(200, content=b"%PDF-second"),
    }
    body = task("completed", output=output({"valueReference": {"reference": "Bundle/b1"}}))
    result = poll(body, routes)
    assert [d.data for d in result.documents] == [PDF, b"%PDF-second"]
    assert len({d.external_id for d in result.documents}) == 2


@pytest.mark.parametrize(
    "reason",
    [
        {"text": "No records found for this patient"},
        {"coding": [{"code": "no-data"}]},
        {"text": "no matching results"},
    ],
)
@pytest.mark.parametrize("status", ["rejected", "failed"])
def test_rejected_for_no_records_is_a_no_records_answer(
    status: str, reason: dict[str, Any]
) -> None:
    """A rejected/failed Task whose statusReason says no records is a written no-records reply."""
    result = poll(task(status, statusReason=reason))
    assert result.no_records is True
    assert result.outcome is AttemptOutcome.DELIVERED


def test_rejected_for_another_reason_is_failed_with_the_reason() -> None:
    """Other rejections fail the attempt and keep the provider's reason."""
    result = poll(task("rejected", statusReason={"text": "Unknown patient identifier format"}))
    assert (result.outcome, result.no_records, result.reason) == (
        AttemptOutcome.FAILED,
        False,
        "Unknown patient identifier format",
    )


@pytest.mark.parametrize(
    "body", [{"resourceType": "Patient"}, {"resourceType": "Task"}, task("weird")]
)
def test_a_body_that_is_not_a_known_task_is_rejected(body: dict[str, Any]) -> None:
    """A non-Task, a Task without status or an unknown status is Rejected."""
    with pytest.raises(Rejected):
        poll(body)


def test_poll_needs_a_task_url() -> None:
    """poll() takes the Task URL returned by send(); a bare id is refused clearly."""
    with pytest.raises(Rejected, match="absolute URL"):
        requester(lambda request: httpx.Response(200)).poll("t1")
    assert split_task_url(f"{BASE}/Task/t1/_history/3") == (BASE, "t1")


@pytest.mark.parametrize(
    ("since", "delay"),
    [
        (timedelta(0), timedelta(minutes=1)),
        (timedelta(seconds=20), timedelta(seconds=40)),
        (timedelta(minutes=1), timedelta(minutes=5)),
        (timedelta(minutes=6), timedelta(minutes=5)),
        (timedelta(minutes=29, seconds=59), timedelta(minutes=5)),
        (timedelta(minutes=30), timedelta(hours=1)),
        (timedelta(hours=5), timedelta(hours=1)),
    ],
)
def test_poll_cadence_follows_cdex(since: timedelta, delay: timedelta) -> None:
    """First poll at 1 minute, then every 5 minutes until 30 minutes, then hourly."""
    assert next_poll_delay(since) == delay
