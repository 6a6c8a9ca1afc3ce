"""The published OpenAPI document: the committed docs/openapi.json is what the API serves,
and it declares every request body, every response and error, and content types as served."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from api.app import create_app
from api.contract import PROBLEM_SCHEMA, render
from tests.conftest import REPO
from worker.cli import main
from worker.notification import Notification

COMMITTED = REPO / "docs" / "openapi.json"
REGENERATE = "goodfaith openapi -o docs/openapi.json (or `make openapi`), then commit it"


@pytest.fixture(scope="module")
def served() -> dict[str, Any]:
    """The document as the app serves it (built without a container: it needs none)."""
    from simulator.serving import asgi_client

    with asgi_client(create_app(lambda: None)) as http:  # type: ignore[arg-type, return-value]
        answer = http.get("/openapi.json")
    assert answer.status_code == 200
    return answer.json()  # type: ignore[no-any-return]


def _operations(doc: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            yield method.upper(), path, operation


def test_the_committed_document_is_the_served_one(served: dict[str, Any]) -> None:
    """docs/openapi.json is byte for byte the document /openapi.json serves (rendered)."""
    committed = COMMITTED.read_text(encoding="utf-8") if COMMITTED.is_file() else ""
    assert committed == render(served), (
        f"docs/openapi.json differs from the served OpenAPI document: run {REGENERATE}"
    )


def test_cli_writes_and_checks_the_document(tmp_path: Path, served: dict[str, Any]) -> None:
    """`goodfaith openapi -o F` writes the served document; `--check` passes on it, and fails
    on a stale copy with a message saying how to regenerate."""
    out = tmp_path / "openapi.json"
    runner = CliRunner()
    assert runner.invoke(main, ["openapi", "-o", str(out)]).exit_code == 0
    assert json.loads(out.read_text(encoding="utf-8")) == served
    assert runner.invoke(main, ["openapi", "-o", str(out), "--check"]).exit_code == 0
    out.write_text("{}\n", encoding="utf-8")
    stale = runner.invoke(main, ["openapi", "-o", str(out), "--check"])
    assert stale.exit_code == 1
    assert "goodfaith openapi -o" in stale.output


#: POST routes that read no body (the action is in the path)
BODILESS = {("POST", "/v1/dead-letters/{letter_id}/retry"), ("POST", "/v1/keys/{key_id}/revoke")}


def test_every_post_declares_its_request_body(served: dict[str, Any]) -> None:
    """Each POST that reads a body declares it; the notification's is intake's own model."""
    for method, path, operation in _operations(served):
        if method == "POST":
            reads = (method, path) not in BODILESS
            assert ("requestBody" in operation) == reads, f"{method} {path}: request body"
    intake = served["paths"]["/v1/notifications"]["post"]["requestBody"]
    ref = intake["content"]["application/json"]["schema"]["$ref"]
    assert ref == "#/components/schemas/Notification"
    declared = served["components"]["schemas"]["Notification"]
    assert declared["required"] == Notification.model_json_schema()["required"]
    assert declared["additionalProperties"] is False


def test_every_error_is_a_problem_document(served: dict[str, Any]) -> None:
    """Every 4xx a route declares is application/problem+json with the Problem schema; no
    FastAPI-default validation shape is left (it is never served)."""
    assert served["components"]["schemas"]["Problem"] == PROBLEM_SCHEMA
    assert "HTTPValidationError" not in json.dumps(served)
    for method, path, operation in _operations(served):
        for status, response in operation["responses"].items():
            if status.startswith("4"):
                content = response["content"]
                assert list(content) == ["application/problem+json"], (method, path, status)
                assert content["application/problem+json"]["schema"] == {
                    "$ref": "#/components/schemas/Problem"
                }


def test_protected_operations_name_their_role_and_declare_401_and_403(
    served: dict[str, Any],
) -> None:
    """Each operation behind a key names its role in ``security`` and declares 401 and 403;
    the roles are those test_access.py checks against the code."""
    from tests.unit.test_access import PROTECTED, _templated

    expected = {(m, _templated(p)): role for m, p, role in PROTECTED}
    found = {}
    for method, path, operation in _operations(served):
        if "security" in operation:
            (requirement,) = operation["security"]
            found[(method, path)] = ",".join(requirement["apiKey"])
            assert {"401", "403"} <= set(operation["responses"]), (method, path)
    assert found == expected


@pytest.mark.parametrize(
    ("method", "path", "status", "media"),
    [
        ("GET", "/metrics", "200", ["text/plain"]),
        ("GET", "/v1/media/{attempt_id}", "200", ["application/pdf"]),
        ("GET", "/v1/cases/{case_id}/packets/{sequence}", "200", ["application/pdf"]),
        ("GET", "/v1/inbox/{document_id}/content", "200", ["application/pdf"]),
        ("GET", "/v1/exports/attempts", "200", ["application/json", "text/csv"]),
        ("GET", "/v1/cases/{case_id}/attestation", "200", ["application/pdf", "application/json"]),
        ("POST", "/v1/notifications", "201", ["application/json"]),
        ("GET", "/dashboard", "200", ["text/html"]),
    ],
)
def test_content_types_are_declared_as_served(
    served: dict[str, Any], method: str, path: str, status: str, media: list[str]
) -> None:
    """Text is text, PDFs are PDFs, CSV is CSV: the declared media types of success answers."""
    response = served["paths"][path][method.lower()]["responses"][status]
    assert sorted(response["content"]) == sorted(media)


def test_limits_and_rate_limits_are_declared(served: dict[str, Any]) -> None:
    """Routes that read a body declare 413 and 422; rate-limited ones declare 429."""
    for method, path, operation in _operations(served):
        if "requestBody" in operation:
            assert {"413", "422"} <= set(operation["responses"]), (method, path)
    for path in ("/v1/notifications", "/v1/webhooks/{vendor}"):
        assert "429" in served["paths"][path]["post"]["responses"]


def test_the_notification_example_is_the_readme_one_and_valid(served: dict[str, Any]) -> None:
    """The request body's example is examples/notification.json, and intake's model takes it."""
    media = served["paths"]["/v1/notifications"]["post"]["requestBody"]["content"]
    example = media["application/json"]["example"]
    assert example == json.loads((REPO / "examples" / "notification.json").read_text())
    Notification.model_validate(example)
