"""The CDex far side: the providers' FHIR server and its Task lifecycle."""

from __future__ import annotations

import base64
from typing import Any

from tests.unit.simulator.world import NPI_NONE, NPI_OK, World
from worker.documents import extract_reference


def task_body(npi: str, reference: str) -> dict[str, Any]:
    return {
        "resourceType": "Task",
        "status": "requested",
        "intent": "order",
        "identifier": [{"system": "urn:goodfaith:request-reference", "value": reference}],
        "for": {"identifier": {"value": "M-1"}},
        "owner": {"identifier": {"system": "http://hl7.org/fhir/sid/us-npi", "value": npi}},
    }


def test_task_lifecycle_requested_in_progress_completed(world: World) -> None:
    """A Task is requested, in-progress after 1 min, completed with the records at +delay."""
    created = world.client.post("/fhir/Task", json=task_body(NPI_OK, "GF-JJJJ0001"))
    assert created.status_code == 201
    task_id = created.json()["id"]
    assert created.headers["location"].startswith(f"http://testserver/fhir/Task/{task_id}")

    def status() -> dict[str, Any]:
        return dict(world.client.get(f"/fhir/Task/{task_id}").json())

    assert status()["status"] == "requested"
    world.clock.advance(60)
    assert status()["status"] == "in-progress"
    world.clock.advance(60 * 60 - 1)
    assert status()["status"] == "in-progress"
    world.clock.advance(1)
    done = status()
    assert done["status"] == "completed"
    assert done["output"][0]["valueReference"]["reference"] == "#records"
    attachment = done["contained"][0]["content"][0]["attachment"]
    assert attachment["contentType"] == "application/pdf"
    assert extract_reference(base64.b64decode(attachment["data"])) == "GF-JJJJ0001"


def test_task_no_records_is_rejected_with_a_reason(world: World) -> None:
    """reply='no_records': the Task ends rejected with statusReason 'no records'."""
    task_id = world.client.post("/fhir/Task", json=task_body(NPI_NONE, "GF-KKKK0001")).json()["id"]
    world.clock.advance(60 * 12)
    task = world.client.get(f"/fhir/Task/{task_id}").json()
    assert task["status"] == "rejected"
    assert task["statusReason"]["text"] == "no records"


def test_task_create_is_conditional_on_if_none_exist(world: World) -> None:
    """A second POST with the same If-None-Exist identifier returns the first Task (200)."""
    headers = {"If-None-Exist": "identifier=urn:goodfaith:request-reference|GF-LLLL0001"}
    first = world.client.post("/fhir/Task", json=task_body(NPI_OK, "GF-LLLL0001"), headers=headers)
    second = world.client.post("/fhir/Task", json=task_body(NPI_OK, "GF-LLLL0001"), headers=headers)
    assert (first.status_code, second.status_code) == (201, 200)
    assert first.json()["id"] == second.json()["id"]


def test_task_without_owner_is_422_operation_outcome(world: World) -> None:
    """A Task without owner NPI is refused with an OperationOutcome pointing at Task.owner."""
    body = task_body(NPI_OK, "GF-MMMM0001")
    del body["owner"]
    response = world.client.post("/fhir/Task", json=body)
    assert response.status_code == 422
    assert response.json()["issue"][0]["expression"] == ["Task.owner"]
    assert world.client.get("/fhir/Task/nope").status_code == 404
