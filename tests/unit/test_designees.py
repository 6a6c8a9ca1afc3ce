"""Designees (retrieval vendors) come from the notification and from the provider directory in
config; vendor channels and vendor settings are validated with clear errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from sqlalchemy import select

from config.providers import ProviderDirectory, ProviderDirectoryError, load_provider_directory
from config.settings import Settings
from storage.db import transaction
from storage.models import RecordRequest
from tests.conftest import at, notification
from tests.fakes import make_container
from worker import services
from worker.notification import Designee, IntakeError, parse_notification

NPI = "1234567893"


def _provider(**overrides: Any) -> dict[str, Any]:
    provider = dict(notification()["providers"][0])
    provider.update(overrides)
    return provider


def test_a_vendor_channel_names_its_vendor() -> None:
    n = parse_notification(
        notification(providers=[_provider(channels=[{"kind": "vendor", "vendor_id": "ciox"}])])
    )
    (channel,) = n.providers[0].channels
    assert (channel.kind, channel.destination) == ("vendor", "ciox")


@pytest.mark.parametrize(
    ("channel", "says"),
    [
        ({"kind": "vendor"}, "needs 'vendor_id'"),
        ({"kind": "vendor", "vendor_id": "ciox", "number": "+16175550101"}, "takes only"),
        ({"kind": "fax", "number": "+16175550101", "vendor_id": "x"}, "takes only"),
        ({"kind": "vendor", "vendor_id": "no spaces allowed"}, "pattern"),
        ({"kind": "courier", "vendor_id": "ciox"}, "kind"),
    ],
)
def test_bad_vendor_channels_are_refused_naming_the_field(
    channel: dict[str, Any], says: str
) -> None:
    with pytest.raises(IntakeError) as caught:
        parse_notification(notification(providers=[_provider(channels=[channel])]))
    assert any("providers.0.channels.0" in loc for loc, _ in caught.value.errors)
    assert says in str(caught.value)


def test_a_designee_without_channels_is_reached_by_an_order_to_it() -> None:
    n = parse_notification(
        notification(providers=[_provider(designee={"vendor_id": "ciox", "name": "Ciox"})])
    )
    designee = n.providers[0].designee
    assert designee is not None
    assert [(c.kind, c.destination) for c in designee.channels] == [("vendor", "ciox")]


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "providers.toml"
    path.write_text(text)
    return path


def test_the_directory_loads_designees_by_npi(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        f"""
[providers."{NPI}"]
name = "Example Orthopedics"
designee = {{ vendor_id = "ciox", name = "Ciox Health" }}
""",
    )
    directory = load_provider_directory(path)
    designee = directory.designee(NPI)
    assert designee is not None and designee.vendor_id == "ciox"
    assert directory.designee("1000000004") is None and directory.designee(None) is None
    assert len(load_provider_directory(None)) == 0


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ('[providers."1234567890"]\ndesignee = { vendor_id = "a", name = "A" }', "not an NPI"),
        (
            f'[providers."{NPI}"]\ncolour = "red"\ndesignee = {{ vendor_id = "a", name = "A" }}',
            "colour: unknown key",
        ),
        (f'[providers."{NPI}"]\nname = "x"', "designee: Field required"),
        ("[providers\n", "not readable TOML"),
    ],
)
def test_a_bad_directory_is_refused_naming_the_file_and_key(
    tmp_path: Path, text: str, says: str
) -> None:
    with pytest.raises(ProviderDirectoryError) as caught:
        load_provider_directory(_write(tmp_path, text))
    assert str(tmp_path) in str(caught.value) and says in str(caught.value)


def test_a_missing_directory_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ProviderDirectoryError, match="no such provider directory"):
        load_provider_directory(tmp_path / "nope.toml")


def _channels(c: Any) -> list[dict[str, Any]]:
    with transaction(c.sessions) as s:
        return list(s.scalars(select(RecordRequest)).one().channels)


def test_intake_takes_the_directory_designee_when_the_notification_names_none(
    tmp_path: Path,
) -> None:
    c, *_ = make_container(tmp_path, at("2026-04-17T09:00:00-04:00"))
    try:
        c.directory = ProviderDirectory({NPI: Designee(vendor_id="ciox", name="Ciox Health")})
        services.intake(c, notification())
        chans = _channels(c)
        assert [(ch["kind"], ch["designee"]) for ch in chans] == [("fax", False), ("vendor", True)]
        assert chans[1]["destination"] == "ciox" and chans[1]["designee_name"] == "Ciox Health"
    finally:
        c.close()


def test_the_notification_designee_wins_over_the_directory(tmp_path: Path) -> None:
    c, *_ = make_container(tmp_path, at("2026-04-17T09:00:00-04:00"))
    try:
        c.directory = ProviderDirectory({NPI: Designee(vendor_id="ciox", name="Ciox Health")})
        own = {"vendor_id": "mro", "name": "MRO Corp"}
        services.intake(c, notification(providers=[_provider(designee=own)]))
        assert [ch["destination"] for ch in _channels(c)] == ["+16175550101", "mro"]
    finally:
        c.close()


def test_vendor_settings_are_validated_with_the_setting_named() -> None:
    good = {"name": "Ciox", "api_base": "https://v.example/api", "api_key": "k"}
    with pytest.raises(ValidationError, match="at least 16 characters"):
        Settings(retrieval_vendors={"ciox": {**good, "webhook_secret": "short"}})
    with pytest.raises(ValidationError, match=r"GOODFAITH_RETRIEVAL_VENDORS\['ciox'\]\.adapter"):
        Settings(
            retrieval_vendors={"ciox": {**good, "webhook_secret": "x" * 20, "adapter": "nope"}}
        )
    with pytest.raises(ValidationError, match="api_base must be an http"):
        Settings(
            retrieval_vendors={"ciox": {**good, "webhook_secret": "x" * 20, "api_base": "ftp:/"}}
        )
    ok = Settings(retrieval_vendors={"ciox": {**good, "webhook_secret": "x" * 20}})
    assert "x" * 20 not in repr(ok)  # secrets never printed
