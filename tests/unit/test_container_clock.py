"""Every connector takes its clock from the container: ``build_container``'s virtual clock
reaches the CDex Task's ``authoredOn``, the Telnyx and Sinch webhook timestamp checks and the
SFTP deliverer; and the FHIR settings (namespaces, signature flag) reach the Task. Driven through
the real wiring (``worker.wiring.build_container`` → ``connectors.registry``), our API and the
simulator's FHIR server, on one virtual clock."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from api.app import create_app
from config.settings import AgencySettings, FhirSettings, Settings
from connectors.base import WebhookError
from connectors.delivery.sftp import SftpAgencyDeliverer, SftpAgencySettings
from connectors.fax.sinch import SinchSettings
from connectors.fax.telnyx import TelnyxSettings
from connectors.registry import AgencyRouter
from simulator.app import Simulator
from simulator.cdex import CDexFarSide
from simulator.providers import ProviderBehaviour
from simulator.serving import asgi_client
from simulator.telnyx import public_key_of, sign_webhook
from tests.conftest import at, notification
from worker import services
from worker.domain.clock import VirtualClock
from worker.wiring import Container, build_container

START = at("2026-04-17T09:00:00-04:00")  # months away from the wall clock
NPI = "1234567893"
SEED = bytes(range(32))
FHIR = FhirSettings(
    requester_name="Acme Health",
    requester_identifier="12345",
    requester_identifier_system="urn:oid:2.16.840.1.113883.6.300",
    member_id_system="https://acme.example/fhir/sid/member-id",
    claim_id_system="https://acme.example/fhir/sid/claim",
    signature_required=True,
)


def _settings(tmp: Path, **change: Any) -> Settings:
    fields: dict[str, Any] = {
        "database_url": f"sqlite:///{tmp / 'gf.db'}",
        "object_store": f"file://{tmp / 'objects'}",
        "eoc_library": f"file://{tmp / 'eoc'}",
        "public_base_url": "http://carrier.test",
        "media_secret": "a-secret-for-tests-only",
        "agencies": {"agency-a": AgencySettings(name="A", submit_url="https://agency.invalid/x")},
        "fax": TelnyxSettings(api_key="k", webhook_public_key=public_key_of(SEED)),
        "fhir": FHIR,
    }
    fields.update(change)
    return Settings(**fields)


@dataclass
class World:
    c: Container
    clock: VirtualClock
    sim: Simulator


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    """Our container (real wiring, virtual clock) whose HTTP client reaches the simulator, and
    the simulator whose HTTP client reaches our API, both in-process."""
    from simulator.documents import generate_authorization_pdf, generate_eoc_pdf

    clock = VirtualClock(START)
    holder: list[Container] = []
    api = asgi_client(create_app(lambda: holder[0]))
    sim = Simulator(
        clock=clock,
        webhook_url="http://carrier.test/v1/webhooks/telnyx",
        behaviours={"ok-clinic": ProviderBehaviour(reply_delay_minutes=60)},
        directory={NPI: "ok-clinic"},
        http=api,
        public_base_url="http://sim.test",
    )
    to_sim = asgi_client(sim.app)
    c = build_container(
        _settings(tmp_path),
        clock=clock,
        http=to_sim,
        eoc_fallback=generate_eoc_pdf,
        authorization_fallback=generate_authorization_pdf,
    )
    holder.append(c)
    try:
        yield World(c, clock, sim)
    finally:
        c.close()
        to_sim.close()
        api.close()


def _fhir_notification(**dispute: Any) -> dict[str, Any]:
    doc = notification()
    provider = dict(doc["providers"][0])
    provider["channels"] = [{"kind": "fhir", "base_url": "http://sim.test/fhir"}]
    doc["providers"] = [provider]
    doc["dispute"] = {**doc["dispute"], **dispute}
    doc["coverage"] = {**doc["coverage"], "coverage_id": "COV-9"}
    return doc


def test_the_containers_clock_and_fhir_settings_reach_the_cdex_task(world: World) -> None:
    """A case opened on the virtual clock sends a Task authored at virtual now (not wall time),
    with the configured namespaces, the claim from the notification as its reason, the signature
    flag, and basedOn our media route: the simulated provider fetches the authorization from our
    API when it takes the Task up."""
    services.intake(world.c, _fhir_notification(claim_id="CLM-77"))
    side = world.sim.far_side(CDexFarSide)
    (task,) = side.tasks()
    assert task["authoredOn"] == "2026-04-17T13:00:00Z"
    assert task["for"]["identifier"]["system"] == "https://acme.example/fhir/sid/member-id"
    assert task["requester"]["identifier"] == {
        "system": "urn:oid:2.16.840.1.113883.6.300",
        "value": "12345",
    }
    assert task["reasonReference"]["type"] == "Claim"
    assert task["reasonReference"]["identifier"]["system"] == "https://acme.example/fhir/sid/claim"
    assert task["reasonReference"]["identifier"]["value"] == "CLM-77"
    flag = next(i for i in task["input"] if i["type"]["coding"][0]["code"] == "signature-flag")
    assert flag["valueBoolean"] is True
    url = task["contained"][0]["content"][0]["attachment"]["url"]
    assert url.startswith("http://carrier.test/v1/media/")
    world.clock.advance(60)
    world.sim.fire_due()
    ((status, pdf),) = side.authorizations().values()
    assert status == 200 and pdf is not None and pdf.startswith(b"%PDF")


def test_without_a_claim_the_reason_is_the_coverage_from_the_notification(world: World) -> None:
    """No dispute.claim_id: the Task's reason is the coverage by coverage.coverage_id."""
    services.intake(world.c, _fhir_notification())
    (task,) = world.sim.far_side(CDexFarSide).tasks()
    assert task["reasonReference"]["type"] == "Coverage"
    assert task["reasonReference"]["identifier"]["value"] == "COV-9"


def _telnyx_webhook(sent_at: int) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(
        {
            "data": {
                "event_type": "fax.delivered",
                "id": "e-1",
                "occurred_at": "2026-04-17T13:00:00Z",
                "record_type": "event",
                "payload": {"fax_id": "f-1", "status": "delivered"},
            }
        }
    ).encode()
    headers = {
        "telnyx-timestamp": str(sent_at),
        "telnyx-signature-ed25519": sign_webhook(SEED, str(sent_at), body),
    }
    return body, headers


def test_telnyx_webhook_timestamps_are_checked_against_the_containers_clock(
    world: World,
) -> None:
    """A webhook signed at virtual now verifies; the same webhook signed at wall-clock now is
    refused as too far from (virtual) now."""
    virtual_now = int(world.clock.now().timestamp())
    event = world.c.fax.parse_webhook(*_telnyx_webhook(virtual_now))
    assert event is not None and event.fax_id == "f-1"
    with pytest.raises(WebhookError, match="timestamp"):
        world.c.fax.parse_webhook(*_telnyx_webhook(int(time.time())))


def test_every_connector_built_by_the_container_holds_its_clock(tmp_path: Path) -> None:
    """Telnyx, Sinch, CDex and the SFTP deliverer built by build_container hold the container's
    clock (the HTTPS deliverer reads no clock: the agency's receipt carries its time)."""
    key = (
        Ed25519PrivateKey.generate()
        .public_key()
        .public_bytes(Encoding.OpenSSH, PublicFormat.OpenSSH)
    )
    sftp = SftpAgencySettings(
        name="S",
        host="sftp.invalid",
        username="u",
        remote_dir="/in",
        known_host_key=key.decode(),
        password="p",
    )
    clock = VirtualClock(START)
    for fax in (
        TelnyxSettings(api_key="k", webhook_public_key=public_key_of(SEED)),
        SinchSettings(project_id="p", key_id="k", key_secret="s", webhook_password="w"),
    ):
        c = build_container(
            _settings(tmp_path, fax=fax, agencies={"agency-s": sftp}),
            clock=clock,
            http=httpx.Client(),
        )
        try:
            assert c.clock is clock
            assert c.fax.clock is clock, fax.vendor  # type: ignore[attr-defined]
            assert c.requesters[next(iter(c.requesters))] is c.fax
            fhir = [r for r in c.requesters.values() if r.vendor == "cdex"]
            assert [r.clock for r in fhir] == [clock]  # type: ignore[attr-defined]
            assert isinstance(c.deliverer, AgencyRouter)
            deliverer = c.deliverer.routes["agency-s"]
            assert isinstance(deliverer, SftpAgencyDeliverer) and deliverer.clock is clock
        finally:
            c.close()


def test_the_fhir_namespaces_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """GOODFAITH_FHIR__*_SYSTEM and __SIGNATURE_REQUIRED are read; a system that is not an
    absolute URI is refused at start-up with an example of one."""
    from pydantic import ValidationError

    monkeypatch.setenv("GOODFAITH_FHIR__MEMBER_ID_SYSTEM", "https://acme.example/sid/member")
    monkeypatch.setenv("GOODFAITH_FHIR__SIGNATURE_REQUIRED", "true")
    fhir = Settings().fhir
    assert fhir.member_id_system == "https://acme.example/sid/member"
    assert fhir.signature_required is True
    assert fhir.claim_id_system == "urn:goodfaith:claim-id"
    monkeypatch.setenv("GOODFAITH_FHIR__CLAIM_ID_SYSTEM", "claims")
    with pytest.raises(ValidationError, match="absolute URI"):
        Settings()
