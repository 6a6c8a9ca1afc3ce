"""The vendor registry: settings pick each port's adapter, and a new vendor is one entry."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import httpx
import pytest
from pydantic import ValidationError

from api.app import create_app
from config.settings import AgencySettings, FaxVendorSettings, FhirSettings, Settings
from connectors.base import (
    AgencyNotConfigured,
    FaxChannel,
    FaxReceivedEvent,
    FaxStatusEvent,
    InboundDocument,
    PacketSubmission,
    PollingRequester,
    RecordsRequest,
    SendReceipt,
)
from connectors.fax.telnyx import TelnyxFax, TelnyxSettings
from connectors.fhir.cdex import CDexTaskRequester
from connectors.registry import (
    FAX_VENDORS,
    BuildContext,
    Vendor,
    build_deliverer,
    webhook_url,
)
from connectors.retry import no_wait_retrying
from simulator.serving import asgi_client
from worker.domain.types import ChannelKind
from worker.wiring import build_container

PUBLIC = "https://carrier.example/"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings read the environment: start each test without fax, FHIR or agency variables."""
    for key in [k for k in os.environ if k.startswith(("GOODFAITH_FAX", "GOODFAITH_FHIR"))]:
        monkeypatch.delenv(key)
    monkeypatch.delenv("GOODFAITH_AGENCIES", raising=False)


def _local(tmp: Path, **kwargs: Any) -> Settings:
    return Settings(
        database_url=f"sqlite:///{tmp / 'gf.db'}",
        object_store=f"file://{tmp / 'objects'}",
        eoc_library=f"file://{tmp / 'eoc'}",
        public_base_url=PUBLIC,
        **kwargs,
    )


# --- settings: the discriminator ----------------------------------------------------------------


def test_fax_vendor_defaults_to_telnyx() -> None:
    """With no GOODFAITH_FAX__VENDOR the fax settings are Telnyx's model."""
    s = Settings()
    assert type(s.fax) is TelnyxSettings and s.fax.vendor == "telnyx"


def test_existing_telnyx_env_vars_still_work(monkeypatch: pytest.MonkeyPatch) -> None:
    """GOODFAITH_FAX__VENDOR=telnyx with the old GOODFAITH_FAX__* names fills TelnyxSettings."""
    monkeypatch.setenv("GOODFAITH_FAX__VENDOR", "telnyx")
    monkeypatch.setenv("GOODFAITH_FAX__API_KEY", "KEY-1")
    monkeypatch.setenv("GOODFAITH_FAX__CONNECTION_ID", "conn-9")
    monkeypatch.setenv("GOODFAITH_FAX__API_BASE", "https://fax.example")
    monkeypatch.setenv("GOODFAITH_FAX__FROM_NUMBER", "+16175559999")
    monkeypatch.setenv("GOODFAITH_FAX__WEBHOOK_PUBLIC_KEY", "cHVi")
    fax = Settings().fax
    assert isinstance(fax, TelnyxSettings)
    assert (fax.api_key, fax.connection_id, fax.api_base) == (
        "KEY-1",
        "conn-9",
        "https://fax.example",
    )
    assert (fax.from_number, fax.webhook_public_key) == ("+16175559999", "cHVi")
    assert "KEY-1" not in repr(fax)
    monkeypatch.delenv("GOODFAITH_FAX__VENDOR")
    assert Settings().fax == fax  # the vendor defaults to telnyx


def test_unknown_fax_vendor_names_the_setting_and_the_known_vendors(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """GOODFAITH_FAX__VENDOR=vonage (unregistered) fails at start-up, saying what to set."""
    monkeypatch.setenv("GOODFAITH_FAX__VENDOR", "vonage")
    with pytest.raises(ValidationError) as info:
        Settings()
    message = str(info.value)
    assert "GOODFAITH_FAX__VENDOR='vonage'" in message
    assert "known: sinch, telnyx" in message and "connectors/registry.py" in message


def test_unknown_fhir_vendor_and_agency_transport_are_clear_errors(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An unregistered FHIR vendor or agency transport names its setting and the known names."""
    monkeypatch.setenv("GOODFAITH_FHIR__VENDOR", "epic")
    with pytest.raises(ValidationError, match=r"GOODFAITH_FHIR__VENDOR='epic'.*known: cdex"):
        Settings()
    monkeypatch.delenv("GOODFAITH_FHIR__VENDOR")
    agencies = {"agency-a": {"name": "A", "submit_url": "https://a.example", "transport": "as2"}}
    monkeypatch.setenv("GOODFAITH_AGENCIES", json.dumps(agencies))
    with pytest.raises(ValidationError) as info:
        Settings()
    assert "GOODFAITH_AGENCIES['agency-a'].transport='as2'" in str(info.value)
    assert "known: fax, https, sftp" in str(info.value)


def test_agency_settings_default_to_https_with_credentials_as_secrets(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """GOODFAITH_AGENCIES entries default to transport https; credentials are SecretStr."""
    agencies = {
        "a": {"name": "A", "submit_url": "https://a.example", "bearer_token": "SECRET-A"},
        "b": {
            "name": "B",
            "submit_url": "https://b.example",
            "basic_username": "carrier",
            "basic_password": "SECRET-B",
        },
    }
    monkeypatch.setenv("GOODFAITH_AGENCIES", json.dumps(agencies))
    s = Settings()
    assert {a.transport for a in s.agencies.values()} == {"https"}
    a_token = s.agencies["a"].bearer_token
    b_password = s.agencies["b"].basic_password
    assert a_token is not None and a_token.get_secret_value() == "SECRET-A"
    assert b_password is not None and b_password.get_secret_value() == "SECRET-B"
    assert "SECRET" not in repr(s) and "SECRET" not in str(s.model_dump())


@pytest.mark.parametrize(
    "fields",
    [
        {"basic_username": "u"},
        {"basic_password": "p"},
        {"bearer_token": "t", "basic_username": "u", "basic_password": "p"},
    ],
)
def test_agency_credentials_must_be_one_complete_kind(fields: dict[str, str]) -> None:
    """Basic auth needs both parts, and bearer and basic together are refused."""
    with pytest.raises(ValidationError, match="basic_username"):
        AgencySettings.model_validate({"name": "A", "submit_url": "https://a", **fields})


def test_fhir_vendor_defaults_to_cdex() -> None:
    """With no GOODFAITH_FHIR__VENDOR the FHIR adapter is CDex."""
    assert Settings().fhir.vendor == "cdex"


# --- the webhook URL, built in one place ------------------------------------------------------


def test_webhook_url_is_public_base_plus_vendor() -> None:
    """A vendor's webhook URL is our public base URL + /v1/webhooks/<vendor>."""
    assert webhook_url(PUBLIC, "telnyx") == "https://carrier.example/v1/webhooks/telnyx"
    assert webhook_url("http://127.0.0.1:8000", "toy") == "http://127.0.0.1:8000/v1/webhooks/toy"


# --- build_container builds through the registry -----------------------------------------------


def test_build_container_wires_the_registered_adapters(tmp_path: Path) -> None:
    """Default settings give TelnyxFax (told its webhook URL) and CDex, each naming its vendor."""
    c = build_container(_local(tmp_path))
    try:
        assert isinstance(c.fax, TelnyxFax) and c.requesters[ChannelKind.FAX] is c.fax
        assert c.fax._webhook_url == "https://carrier.example/v1/webhooks/telnyx"
        fhir = c.requesters[ChannelKind.FHIR]
        assert isinstance(fhir, CDexTaskRequester) and isinstance(fhir, PollingRequester)
        assert (c.fax.vendor, fhir.vendor) == ("telnyx", "cdex")
    finally:
        c.close()


def test_deliverer_routes_unknown_agencies_to_a_configuration_error() -> None:
    """A submission for an agency with no settings is AgencyNotConfigured, naming it."""
    ctx = BuildContext(httpx.Client(), no_wait_retrying, PUBLIC)
    submission = PacketSubmission("k", "nh-doi", "case", "N-1", b"%PDF", {}, "00")
    with pytest.raises(AgencyNotConfigured, match="nh-doi"):
        build_deliverer({}, ctx).deliver(submission)


# --- adding a vendor: adapter + settings model + one registry line ----------------------------


class ToySettings(FaxVendorSettings):
    """A toy fax vendor's settings: GOODFAITH_FAX__VENDOR=toy GOODFAITH_FAX__GREETING=..."""

    vendor: Literal["toy"] = "toy"
    greeting: str = "hello"


class ToyFax:
    """A toy fax adapter: records what it is asked to do."""

    kind = ChannelKind.FAX
    vendor = "toy"

    def __init__(self, settings: ToySettings, webhook_url: str) -> None:
        self.settings, self.webhook_url = settings, webhook_url
        self.webhooks: list[bytes] = []

    def send(self, request: RecordsRequest) -> SendReceipt:
        return SendReceipt(external_id=f"toy-{request.idempotency_key}")

    def status(self, external_id: str) -> FaxStatusEvent | None:
        return None

    def find_sent(self, request: RecordsRequest, since: datetime) -> SendReceipt | None:
        return None

    def parse_webhook(
        self, body: bytes, headers: Mapping[str, str]
    ) -> FaxStatusEvent | FaxReceivedEvent | None:
        self.webhooks.append(body)
        return None

    def fetch_media(self, url: str) -> InboundDocument:
        raise NotImplementedError


@pytest.fixture
def toy_registered(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # The one registry line a new vendor needs (setitem so the table is restored afterwards):
    monkeypatch.setitem(
        FAX_VENDORS, "toy", Vendor(ToySettings, lambda s, ctx: ToyFax(s, ctx.webhook_url("toy")))
    )
    yield


def test_a_registered_toy_vendor_is_wired_and_receives_its_webhooks(
    toy_registered: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """GOODFAITH_FAX__VENDOR=toy builds ToyFax through build_container, with its own settings
    and webhook URL, and POST /v1/webhooks/toy reaches it (while /v1/webhooks/telnyx is 404):
    no change outside the adapter, its settings model and the registry line."""
    monkeypatch.setenv("GOODFAITH_FAX__VENDOR", "toy")
    monkeypatch.setenv("GOODFAITH_FAX__GREETING", "ahoy")
    c = build_container(_local(tmp_path))
    http = asgi_client(create_app(lambda: c))
    try:
        fax = c.fax
        assert isinstance(fax, ToyFax) and isinstance(fax, FaxChannel)
        assert c.requesters[ChannelKind.FAX] is fax
        assert fax.settings.greeting == "ahoy"
        assert fax.webhook_url == "https://carrier.example/v1/webhooks/toy"
        r = http.post("/v1/webhooks/toy", content=b'{"toy": 1}')
        assert r.status_code == 200 and fax.webhooks == [b'{"toy": 1}']
        assert http.post("/v1/webhooks/telnyx", content=b"{}").status_code == 404
    finally:
        http.close()
        c.close()


def test_an_unregistered_webhook_vendor_is_404(tmp_path: Path) -> None:
    """POST /v1/webhooks/<vendor> for a vendor we do not use answers 404; Telnyx keeps its URL."""
    c = build_container(_local(tmp_path))
    http = asgi_client(create_app(lambda: c))
    try:
        assert http.post("/v1/webhooks/sinch", content=b"{}").status_code == 404
        assert http.post("/v1/webhooks/toy", content=b"{}").status_code == 404
        r = http.post("/v1/webhooks/telnyx", content=b"not json")
        assert r.status_code == 401  # reached TelnyxFax, which rejects the body
    finally:
        http.close()
        c.close()


def test_fhir_settings_are_the_cdex_model() -> None:
    """The cdex entry uses FhirSettings: the carrier's FHIR identity, vendor-neutral."""
    from connectors.registry import FHIR_VENDORS

    assert FHIR_VENDORS["cdex"].settings is FhirSettings
