"""The CDex Task we post, checked with other people's tools: the FHIR R4B models of
``fhir.resources`` and the CDex Task Data Request profile's FHIRPath invariants (``fhirpathpy``),
plus the profile's cardinalities and must-supports this carrier relies on. Every check is shown
to fail on a Task missing the part it checks (negative controls)."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest
from fhir.resources.R4B.task import Task as R4BTask
from fhirpathpy import evaluate
from fhirpathpy.models import models
from pydantic import ValidationError

from connectors.base import RecordsRequest
from connectors.fhir.cdex import CDexIdentity, build_task
from worker.domain.types import Channel, ChannelKind

#: The profile's own invariants (StructureDefinition cdex-task-data-request, CDex STU 2.x),
#: expressions verbatim.
PROFILE_INVARIANTS = {
    "cdex-7": "Task.code.coding.code.where($this='data-request-code').exists() implies "
    "Task.input.type.coding.code.where($this='data-code').exists()",
    "cdex-12": "Task.code.coding.code.where($this='data-request-query').exists() implies "
    "Task.input.type.coding.code.where($this='data-query').exists()",
    "cdex-8": "Task.code.coding.code.where($this='data-request-questionnaire').exists() implies "
    "Task.input.type.coding.code.where($this='questionnaire').exists()",
    "cdex-9": "Task.input.type.coding.code.where($this='data-query' or $this='data-code' or "
    "$this='questionnaire').count()=1",
    "tdr-2": "(status = 'rejected' or status = 'failed') implies statusReason.exists()",
    "tdr-3": "(status = 'completed') implies output.exists()",
}

#: The profile's cardinalities, fixed values and slices (min=1, max=0, fixed, slice max 1), and
#: what this carrier promises on top (namespaced identifiers, the reason, the authorization),
#: as FHIRPath on the Task.
STRUCTURE = {
    "code is cdex-temp": "code.coding.exists() and code.coding.all(system = "
    "'http://hl7.org/fhir/us/davinci-cdex/CodeSystem/cdex-temp' and code.exists())",
    "intent fixed order": "intent = 'order'",
    "status in HRex set": "status in ('requested' | 'accepted' | 'rejected' | 'in-progress' | "
    "'on-hold' | 'failed' | 'completed')",
    "focus prohibited": "focus.empty()",
    "for, authoredOn, requester, owner": "for.exists() and authoredOn.exists() and "
    "requester.exists() and owner.exists()",
    "reasonCode.text": "reasonCode.exists() implies reasonCode.text.exists()",
    "input present": "input.exists()",
    "data-code: one coding": "input.where(type.coding.code = 'data-code').all("
    "value.ofType(CodeableConcept).coding.count() = 1 and "
    "value.ofType(CodeableConcept).coding.system = 'http://loinc.org')",
    "signature flag is boolean": "input.where(type.coding.code = 'signature-flag').count() = 1 and "
    "input.where(type.coding.code = 'signature-flag').value.ofType(boolean).exists()",
    "member id namespaced": "for.identifier.system.exists() and for.identifier.value.exists()",
    "requester namespaced": "requester.identifier.system.exists() and "
    "requester.identifier.value.exists()",
    "owner is an NPI": "owner.identifier.system = 'http://hl7.org/fhir/sid/us-npi'",
    "reason is a claim or coverage": "reasonReference.type in ('Claim' | 'Coverage') and "
    "reasonReference.identifier.system.exists() and reasonReference.identifier.value.exists()",
    "basedOn resolves to a fetchable authorization": "basedOn.exists() and basedOn.all("
    "reference.startsWith('#') and %resource.contained.where(resourceType = "
    "'DocumentReference' and content.attachment.url.exists()).id contains "
    "reference.substring(1))",
    # dom-3, simplified: every contained resource is referenced from the Task
    "contained are referenced": "contained.all(%resource.descendants().reference contains "
    "('#' + id))",
}


def problems(task: dict[str, Any]) -> list[str]:
    """Why ``task`` is not a valid CDex Task Data Request as we send it (empty: it is)."""
    found: list[str] = []
    try:
        R4BTask.model_validate(task)
    except ValidationError as exc:
        found.append(f"R4B: {exc.error_count()} error(s): {exc.errors()[0]['loc']}")
    env = {"resource": task}
    for key, expression in {**PROFILE_INVARIANTS, **STRUCTURE}.items():
        if evaluate(task, expression, env, models["r4"]) != [True]:
            found.append(key)
    return found


IDENTITY = CDexIdentity(
    requester_name="Acme Health",
    requester_identifier="12345",
    requester_identifier_system="urn:oid:2.16.840.1.113883.6.300",
    member_id_system="https://acme.example/fhir/sid/member-id",
    claim_id_system="https://acme.example/fhir/sid/claim",
    coverage_id_system="https://acme.example/fhir/sid/coverage",
    signature_required=True,
)


def request(**change: Any) -> RecordsRequest:
    fields: dict[str, Any] = {
        "idempotency_key": "att-0002",
        "reference": "GF-ABCD1234",
        "channel": Channel(ChannelKind.FHIR, "https://ehr.example/fhir", owner_id="1234567893"),
        "document_url": "https://carrier.example/v1/media/a1?token=t",
        "member_id": "M-1",
        "requester": "Acme Health",
        "purpose": "External review (MA): records",
        "authorization_url": "https://carrier.example/v1/media/a1?token=t",
        "claim_id": "CLM-77",
        "coverage_id": "COV-9",
    }
    fields.update(change)
    return RecordsRequest(**fields)


def task(**change: Any) -> dict[str, Any]:
    return build_task(request(**change), IDENTITY, authored_on="2026-03-02T15:00:00Z")


def test_the_task_passes_r4b_and_every_profile_check() -> None:
    """The Task we post validates as R4B and passes the profile's invariants and our checks."""
    assert problems(task()) == []


def test_the_task_carries_namespaced_identifiers_reason_authorization_and_signature() -> None:
    """Member and requester ids carry the configured systems; reasonReference names the claim
    (payer-assigned, FILL); basedOn points at a contained DocumentReference (LOINC 64292-6)
    whose attachment URL is our media route; the signature flag is the configured one."""
    t = task()
    assert t["for"]["identifier"]["system"] == "https://acme.example/fhir/sid/member-id"
    assert t["requester"]["identifier"] == {
        "system": "urn:oid:2.16.840.1.113883.6.300",
        "value": "12345",
    }
    assert t["reasonReference"]["type"] == "Claim"
    assert t["reasonReference"]["identifier"]["value"] == "CLM-77"
    assert t["reasonReference"]["identifier"]["type"]["coding"][0]["code"] == "FILL"
    (based_on,) = t["basedOn"]
    (authorization,) = t["contained"]
    assert based_on["reference"] == "#" + authorization["id"]
    assert authorization["type"]["coding"][0]["code"] == "64292-6"
    assert authorization["content"][0]["attachment"]["url"].startswith(
        "https://carrier.example/v1/media/a1?token="
    )
    flag = next(i for i in t["input"] if i["type"]["coding"][0]["code"] == "signature-flag")
    assert flag["valueBoolean"] is True
    (data_code,) = [i for i in t["input"] if i["type"]["coding"][0]["code"] == "data-code"]
    assert data_code["valueCodeableConcept"]["coding"] == [
        {"system": "http://loinc.org", "code": "11506-3"}
    ]


def test_the_reason_falls_back_to_the_coverage_then_the_member_id() -> None:
    """Without a claim id the reason is the coverage by its payer id; without that, the
    coverage by the member id (type MB) that identifies it; each passes the checks."""
    by_coverage = task(claim_id=None)
    assert by_coverage["reasonReference"]["type"] == "Coverage"
    assert by_coverage["reasonReference"]["identifier"]["value"] == "COV-9"
    by_member = task(claim_id=None, coverage_id=None)
    assert by_member["reasonReference"]["identifier"]["value"] == "M-1"
    assert by_member["reasonReference"]["identifier"]["type"]["coding"][0]["code"] == "MB"
    assert problems(by_coverage) == problems(by_member) == []


def test_without_an_authorization_the_task_claims_none() -> None:
    """A case without an authorization for release sends no basedOn and nothing contained;
    the only failing check is the authorization's own."""
    t = task(authorization_url=None)
    assert "basedOn" not in t and "contained" not in t
    assert problems(t) == ["basedOn resolves to a fetchable authorization"]


def _drop_input(code: str) -> Callable[[dict[str, Any]], None]:
    def change(t: dict[str, Any]) -> None:
        t["input"] = [i for i in t["input"] if i["type"]["coding"][0]["code"] != code]

    return change


def _second_code(t: dict[str, Any]) -> None:
    t["input"].append(copy.deepcopy(t["input"][0]))


def _two_codings(t: dict[str, Any]) -> None:
    t["input"][0]["valueCodeableConcept"]["coding"].append(
        {"system": "http://loinc.org", "code": "18842-5"}
    )


def _unset(*path: str) -> Callable[[dict[str, Any]], None]:
    def change(t: dict[str, Any]) -> None:
        node = t
        for key in path[:-1]:
            node = node[key]
        del node[path[-1]]

    return change


def _set(key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(t: dict[str, Any]) -> None:
        t[key] = value

    return change


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (_drop_input("data-code"), {"cdex-7", "cdex-9"}),
        (_second_code, {"cdex-9"}),
        (_two_codings, {"data-code: one coding"}),
        (_drop_input("signature-flag"), {"signature flag is boolean"}),
        (_unset("for", "identifier", "system"), {"member id namespaced"}),
        (_unset("requester", "identifier", "system"), {"requester namespaced"}),
        (_unset("reasonReference"), {"reason is a claim or coverage"}),
        (_unset("requester"), {"for, authoredOn, requester, owner", "requester namespaced"}),
        (_unset("authoredOn"), {"for, authoredOn, requester, owner"}),
        (
            _set("basedOn", [{"reference": "#elsewhere"}]),
            {
                "basedOn resolves to a fetchable authorization",
                "contained are referenced",
            },
        ),
        (_set("intent", "plan"), {"intent fixed order"}),
        (_set("status", "completed"), {"tdr-3"}),
        (_set("status", "rejected"), {"tdr-2"}),
        (_set("focus", {"reference": "Claim/1"}), {"focus prohibited"}),
        (
            _set("code", {"coding": [{"system": "urn:x", "code": "data-request-code"}]}),
            {"code is cdex-temp"},
        ),
    ],
)
def test_a_task_missing_a_part_fails_the_check_for_it(
    change: Callable[[dict[str, Any]], None], expected: set[str]
) -> None:
    """Negative controls: each mutation of a good Task fails exactly the checks named."""
    t = task()
    change(t)
    assert set(problems(t)) == expected


def test_the_r4b_models_refuse_a_malformed_task() -> None:
    """Negative control for the R4B check: an authoredOn that is no FHIR dateTime, or a Task
    without its required intent, fails model validation (a status outside the HRex set is the
    FHIRPath check's: fhir.resources does not check code sets)."""
    bad_date = task()
    bad_date["authoredOn"] = "yesterday"
    no_intent = task()
    del no_intent["intent"]
    bad_status = task()
    bad_status["status"] = "bogus"
    assert len(problems(bad_date)) == 1 and problems(bad_date)[0].startswith("R4B:")
    assert problems(no_intent) == [problems(no_intent)[0], "intent fixed order"]
    assert problems(no_intent)[0].startswith("R4B:")
    assert problems(bad_status) == ["status in HRex set"]
