"""The API against its own OpenAPI document, fuzzed with schemathesis: every operation, keys of
every role (its own most often, others and none too), a bounded number of examples. Checks:
no server error, responses that match their declared schema, status code and content type.

The document fuzzed is the one served at /openapi.json; tests/unit/test_openapi.py pins it to
docs/openapi.json, so this is the published contract. The fax vendor is the real Telnyx
connector (webhooks verified with an Ed25519 key); everything else is the in-memory fakes.
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from api.app import create_app
from connectors.fax.telnyx import TelnyxFax
from connectors.fax.telnyx_events import public_key_b64
from tests.conftest import IN_CI, _fresh_postgres, at, notification, postgres_url
from tests.fakes import api_client, bearer, make_container, run_until
from worker.services.keys import Role
from worker.wiring import Container

START = at("2026-04-17T09:00:00-04:00")
ROLES = [r.value for r in Role]
#: examples per operation; GOODFAITH_FUZZ_EXAMPLES raises it for a longer local run
EXAMPLES = int(os.environ.get("GOODFAITH_FUZZ_EXAMPLES", "30"))
CHECKS = [
    not_a_server_error,
    response_schema_conformance,
    content_type_conformance,
    status_code_conformance,
]


class World:
    """The container the app serves, a key of each role, and the ids that exist: a case
    delivered (its packet, manifest and attestation can be read) and an API key."""

    c: Container
    keys: dict[str, dict[str, str]]
    known: dict[str, str]


WORLD = World()
#: Built at import so schemathesis can read its document; it reaches the container only
#: when a request comes, after the fixture below has made it.
APP = create_app(lambda: WORLD.c)
schema = schemathesis.openapi.from_asgi("/openapi.json", APP)


@pytest.fixture(scope="module", autouse=True, params=["sqlite", "postgresql"])
def world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    """One container per database: a case opened (so some ids exist), Telnyx as the fax.
    PostgreSQL refuses what SQLite stores (a NUL in text), so the contract is fuzzed on both."""
    tmp: Path = tmp_path_factory.mktemp("fuzz")
    url = None
    if request.param == "postgresql":
        found = postgres_url()
        if found is None:
            if IN_CI:
                pytest.fail("CI needs GOODFAITH_DATABASE_URL naming a PostgreSQL database")
            pytest.skip("GOODFAITH_DATABASE_URL does not name a PostgreSQL database")
        url = _fresh_postgres(found)
    c, clock, _fax, _d = make_container(tmp, START, database_url=url)
    client = httpx.Client(transport=httpx.MockTransport(lambda r: httpx.Response(404)))
    c.closers.append(client.close)
    c.fax = TelnyxFax(
        client,
        api_key="KEY-test",
        connection_id="conn-1",
        from_number="+16175550000",
        webhook_url=None,
        public_key=public_key_b64(Ed25519PrivateKey.generate()),
        media_hosts=["media.telnyx.invalid"],
    )
    WORLD.c = c
    WORLD.keys = {role: bearer(c, role, name=f"fuzz-{role}") for role in ROLES}
    with api_client(c, "intake") as intake:
        opened = intake.post("/v1/notifications", json=notification())
    assert opened.status_code == 201, opened.text
    run_until(c, clock, at("2026-04-24T00:00:00-04:00"))  # past the cutoff: packet delivered
    with api_client(c, "admin") as admin:
        spare = admin.post("/v1/keys", json={"role": "ops", "name": "fuzz-spare"}).json()["id"]
    WORLD.known = {"case_id": opened.json()["case_id"], "sequence": "1", "key_id": spare}
    yield WORLD
    c.close()


def _required_role(case: Any) -> str | None:
    """The role the operation's ``security`` names (None: an open operation)."""
    security = case.operation.definition.raw.get("security") or []
    roles = [role for requirement in security for role in requirement.get("apiKey", [])]
    return roles[0] if roles else None


#: whose key a request carries: the operation's own role most often, then each other role
#: and no key at all (401/403 answers are part of the contract too)
WHO = ["own", "own", "own", "own", *ROLES, "none"]


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    database=None,
)
def test_api_honours_its_openapi_contract(case: Any) -> None:
    """Any request the document allows (and many it does not) gets an answer the document
    declares: its status, its content type, a body of its schema, and never a 5xx. Half the
    time the path names what exists (the delivered case, its packet, a key), so the answers
    with bodies (PDFs, manifests, attestations, timelines) are checked too, not only 404s."""
    # schemathesis forbids @schema.given() beside the document's examples (the notification
    # example is what opens a case here), so the choices are drawn from the generated request
    # itself: a failure replays with the same key and ids
    draw = zlib.crc32(repr((case.path_parameters, case.query, case.body)).encode())
    who = WHO[draw % len(WHO)]
    if (draw >> 8) % 2 and isinstance(case.path_parameters, dict):
        for name in case.path_parameters.keys() & WORLD.known.keys():
            case.path_parameters[name] = WORLD.known[name]
    role = _required_role(case)
    chosen = role if who == "own" else who
    headers = dict(WORLD.keys[chosen]) if chosen in WORLD.keys else {}
    if role is None and who == "own":
        headers = {}
    case.call_and_validate(headers=headers, checks=CHECKS)
