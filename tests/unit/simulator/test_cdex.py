"""The CDex far side: the providers' FHIR server and its Task lifecycle."""

from __future__ import annotations

import base64
import json
from datetime import timedelta
from typing import Any

from simulator.cdex import CDexFarSide
from tests.unit.simulator.world import CARRIER, NPI_NONE, NPI_OK, NPI_PLAIN, START, World, letter
from worker.documents import extract_reference

HREX_TEMP = "http://hl7.org/fhir/us/davinci-hrex/CodeSystem/hrex-temp"


def task_body(npi: str, reference: str, loinc: str = "11506-3") -> dict[str, Any]:
    return {
        "resourceType": "Task",
        "status": "requested",
        "intent": "order",
        "identifier": [{"system": "urn:goodfaith:request-reference", "value": reference}],
        "for": {"identifier": {"system": "urn:goodfaith:member-id", "value": "M-1"}},
        "owner": {"identifier": {"system": "http://hl7.org/fhir/sid/us-npi", "value": npi}},
        "input": [
            {
                "type": {"coding": [{"system": HREX_TEMP, "code": "data-code"}]},
                "valueCodeableConcept": {"coding": [{"system": "http://loinc.org", "code": loinc}]},
            }
        ],
    }


def with_authorization(body: dict[str, Any], url: str) -> dict[str, Any]:
    body["contained"] = [
        {
            "resourceType": "DocumentReference",
            "id": "authorization",
            "status": "current",
            "content": [{"attachment": {"contentType": "application/pdf", "url": url}}],
        }
    ]
    body["basedOn"] = [{"reference": "#authorization"}]
    return body


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


def test_the_records_are_of_the_document_type_asked_for(world: World) -> None:
    """The contained DocumentReference of the reply carries the Task's one data-code coding."""
    body = task_body(NPI_OK, "GF-NNNN0001", loinc="18842-5")
    task_id = world.client.post("/fhir/Task", json=body).json()["id"]
    world.clock.advance(61 * 60)
    done = world.client.get(f"/fhir/Task/{task_id}").json()
    assert done["status"] == "completed"
    assert done["contained"][-1]["type"]["coding"] == [
        {"system": "http://loinc.org", "code": "18842-5"}
    ]


def test_a_task_with_no_or_several_document_types_is_refused(world: World) -> None:
    """cdex-9: no data-code input, two of them, or two codings in one → 422 on Task.input."""
    none = task_body(NPI_OK, "GF-PPPP0001")
    none["input"] = []
    two_inputs = task_body(NPI_OK, "GF-PPPP0002")
    two_inputs["input"] = two_inputs["input"] * 2
    two_codings = task_body(NPI_OK, "GF-PPPP0003")
    two_codings["input"][0]["valueCodeableConcept"]["coding"].append(
        {"system": "http://loinc.org", "code": "18842-5"}
    )
    for body in (none, two_inputs, two_codings):
        response = world.client.post("/fhir/Task", json=body)
        assert response.status_code == 422
        assert response.json()["issue"][0]["expression"] == ["Task.input"]
    assert world.sim.far_side(CDexFarSide).tasks() == []


def test_a_based_on_naming_nothing_contained_is_refused(world: World) -> None:
    """basedOn '#x' with no contained resource x → 422 on Task.basedOn."""
    body = task_body(NPI_OK, "GF-QQQQ0001")
    body["basedOn"] = [{"reference": "#authorization"}]
    response = world.client.post("/fhir/Task", json=body)
    assert response.status_code == 422
    assert response.json()["issue"][0]["expression"] == ["Task.basedOn"]


def test_the_provider_fetches_the_authorization_the_task_is_based_on(world: World) -> None:
    """When the provider takes the Task up (+1 min) it GETs the basedOn DocumentReference's
    attachment URL; the bytes it got are inspectable, and a URL that fails is recorded."""
    world.carrier.letters["auth.pdf"] = letter("GF-RRRR0001")
    good = with_authorization(task_body(NPI_OK, "GF-RRRR0001"), f"{CARRIER}/letters/auth.pdf")
    bad = with_authorization(task_body(NPI_OK, "GF-RRRR0002"), f"{CARRIER}/letters/none.pdf")
    good_id = world.client.post("/fhir/Task", json=good).json()["id"]
    bad_id = world.client.post("/fhir/Task", json=bad).json()["id"]
    side = world.sim.far_side(CDexFarSide)
    assert side.authorizations() == {good_id: (None, None), bad_id: (None, None)}
    world.run_until(START + timedelta(minutes=1))
    got = side.authorizations()
    assert got[good_id] == (200, world.carrier.letters["auth.pdf"])
    assert got[bad_id] == (404, None)
    # the provider's own contained resources stay beside the records it returns
    world.clock.advance(60 * 60)
    done = world.client.get(f"/fhir/Task/{good_id}").json()
    assert [r["id"] for r in done["contained"]] == ["authorization", "records"]


# --- Subscriptions (R4 backport, HRex Task topic) ------------------------------------------------

BACKPORT = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition"
TASK_TOPIC = "http://hl7.org/fhir/us/davinci-hrex/SubscriptionTopic/Task"


def subscription_body(task_id: str, **channel: Any) -> dict[str, Any]:
    return {
        "resourceType": "Subscription",
        "status": "requested",
        "criteria": TASK_TOPIC,
        "_criteria": {
            "extension": [
                {
                    "url": f"{BACKPORT}/backport-filter-criteria",
                    "valueString": f"Task?_id={task_id}",
                }
            ]
        },
        "channel": {
            "type": "rest-hook",
            "endpoint": f"{CARRIER}/notify/k1",
            "payload": "application/fhir+json",
            "_payload": {
                "extension": [
                    {"url": f"{BACKPORT}/backport-payload-content", "valueCode": "id-only"}
                ]
            },
            "header": ["Authorization: Bearer tok-1"],
            **channel,
        },
    }


def _notified(world: World) -> list[tuple[str, list[str]]]:
    """Each notification received: its type and the Task URLs it names."""
    out = []
    for body, headers in world.carrier.notifications:
        assert headers["authorization"] == "Bearer tok-1"
        (status,) = [e["resource"] for e in json.loads(body)["entry"]]
        params = {p["name"]: p for p in status["parameter"]}
        focus = [
            part["valueReference"]["reference"]
            for p in status["parameter"]
            if p["name"] == "notification-event"
            for part in p["part"]
            if part["name"] == "focus"
        ]
        out.append((params["type"]["valueCode"], focus))
    return out


def test_a_subscriber_is_notified_when_the_task_is_taken_up_and_answered(world: World) -> None:
    """id-only notifications with the channel's header: at +1 min (in-progress) and when the
    records are ready (+60 min), each naming the Task; nothing in between."""
    task_id = world.client.post("/fhir/Task", json=task_body(NPI_OK, "GF-SSSS0001")).json()["id"]
    made = world.client.post("/fhir/Subscription", json=subscription_body(task_id))
    assert made.status_code == 201 and made.json()["status"] == "active"
    url = f"http://testserver/fhir/Task/{task_id}"
    world.run_until(START + timedelta(minutes=30))
    assert _notified(world) == [("event-notification", [url])]
    world.run_until(START + timedelta(hours=2))
    assert _notified(world) == [("event-notification", [url])] * 2
    assert b"M-1" not in b"".join(body for body, _ in world.carrier.notifications)  # id-only


def test_a_deleted_subscription_notifies_no_more(world: World) -> None:
    """``DELETE /fhir/Subscription/<id>``: 204, then 404; the Task's later change (its
    answer) is notified to nobody."""
    (side,) = [f for f in world.sim.far_sides if isinstance(f, CDexFarSide)]
    task_id = world.client.post("/fhir/Task", json=task_body(NPI_OK, "GF-SSSS0007")).json()["id"]
    made = world.client.post("/fhir/Subscription", json=subscription_body(task_id)).json()
    world.run_until(START + timedelta(minutes=30))  # taken up: notified once
    assert side.live_subscriptions() == {made["id"]: "in-progress"}
    assert world.client.delete(f"/fhir/Subscription/{made['id']}").status_code == 204
    gone = world.client.delete(f"/fhir/Subscription/{made['id']}")
    assert gone.status_code == 404 and gone.json()["resourceType"] == "OperationOutcome"
    world.run_until(START + timedelta(hours=2))  # answered at +60 min
    assert len(_notified(world)) == 1 and side.live_subscriptions() == {}


def test_a_refused_notification_is_sent_again(world: World) -> None:
    task_id = world.client.post("/fhir/Task", json=task_body(NPI_OK, "GF-SSSS0002")).json()["id"]
    world.client.post("/fhir/Subscription", json=subscription_body(task_id))
    world.carrier.fail_next_webhooks = 2
    world.run_until(START + timedelta(minutes=30))
    assert len(_notified(world)) == 1  # the third try got through


def test_a_server_without_subscriptions_answers_404(world: World) -> None:
    (side,) = [f for f in world.sim.far_sides if isinstance(f, CDexFarSide)]
    side.subscriptions = False
    task_id = world.client.post("/fhir/Task", json=task_body(NPI_OK, "GF-SSSS0003")).json()["id"]
    assert (
        world.client.post("/fhir/Subscription", json=subscription_body(task_id)).status_code == 404
    )
    world.run_until(START + timedelta(hours=2))
    assert world.carrier.notifications == []


def test_a_provider_whose_server_takes_no_subscriptions_answers_404(world: World) -> None:
    """``fhir_subscriptions: false`` (a scenario's provider): its Tasks are only polled."""
    plain = world.client.post("/fhir/Task", json=task_body(NPI_PLAIN, "GF-SSSS0005")).json()["id"]
    ok = world.client.post("/fhir/Task", json=task_body(NPI_OK, "GF-SSSS0006")).json()["id"]
    assert world.client.post("/fhir/Subscription", json=subscription_body(plain)).status_code == 404
    assert world.client.post("/fhir/Subscription", json=subscription_body(ok)).status_code == 201


def test_a_subscription_the_server_cannot_serve_is_refused(world: World) -> None:
    task_id = world.client.post("/fhir/Task", json=task_body(NPI_OK, "GF-SSSS0004")).json()["id"]
    unknown = subscription_body("no-such-task")
    websocket = subscription_body(task_id, type="websocket")
    full = subscription_body(task_id)
    full["channel"]["_payload"]["extension"][0]["valueCode"] = "full-resource"
    other_topic = dict(subscription_body(task_id), criteria="Patient?name=x")
    for body in (unknown, websocket, full, other_topic):
        answer = world.client.post("/fhir/Subscription", json=body)
        assert answer.status_code == 422
        assert answer.json()["resourceType"] == "OperationOutcome"
