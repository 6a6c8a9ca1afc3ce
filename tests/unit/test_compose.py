"""docker-compose.yml: every goodfaith service runs a real CLI command with real settings."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import click
import pytest

from config.settings import Settings
from connectors.registry import FAX_VENDORS, FHIR_VENDORS
from worker.cli import main

yaml = pytest.importorskip("yaml")  # PyYAML arrives with the dev extras (via moto)

COMPOSE = Path(__file__).resolve().parents[2] / "docker-compose.yml"
GOODFAITH_SERVICES = {"migrate", "api", "worker", "worker-expedited", "scheduler", "simulator"}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(data, dict)
    return data


def _goodfaith_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        name: svc
        for name, svc in compose["services"].items()
        if str(svc.get("image", "")).startswith("goodfaith") or "build" in svc
    }


def _resolve(argv: list[str]) -> click.Command:
    """The click command that ``goodfaith *argv`` runs (descending through groups)."""
    cmd: click.Command = main
    rest = list(argv)
    while isinstance(cmd, click.Group):
        assert rest, f"goodfaith {' '.join(argv)}: stops at a group"
        name = rest.pop(0)
        assert name in cmd.commands, f"goodfaith has no command {name!r} (argv {argv})"
        cmd = cmd.commands[name]
    return cmd


def test_goodfaith_services_are_the_expected_ones(compose: dict[str, Any]) -> None:
    """The image built from this repo runs exactly migrate, api, the workers, scheduler, simulator."""
    assert set(_goodfaith_services(compose)) == GOODFAITH_SERVICES


def test_every_service_runs_a_real_subcommand(compose: dict[str, Any]) -> None:
    """Each goodfaith service's command names a subcommand of the CLI and only its options."""
    for name, svc in _goodfaith_services(compose).items():
        argv = svc["command"]
        assert isinstance(argv, list) and all(isinstance(a, str) for a in argv), name
        cmd = _resolve(argv)
        depth = 2 if argv[0] == "db" else 1
        known = {opt for p in cmd.params for opt in p.opts}
        for arg in argv[depth:]:
            if arg.startswith("--"):
                assert arg in known, f"{name}: goodfaith {argv[0]} has no option {arg}"
        # and click accepts the whole line
        cmd.make_context(argv[depth - 1], list(argv[depth:]))


def test_env_names_are_settings_fields(compose: dict[str, Any]) -> None:
    """Every GOODFAITH_* variable in the shared env names a Settings field (nested via __)."""
    env = compose["x-goodfaith-env"]
    names = [k for k in env if k.startswith("GOODFAITH_")]
    assert names
    # A port's settings model is the one its vendor names in the registry (discriminated union).
    vendor_tables = {"fax": FAX_VENDORS, "fhir": FHIR_VENDORS}
    for key in names:
        parts = key.removeprefix("GOODFAITH_").lower().split("__")
        model: Any = Settings
        for part in parts:
            assert part in model.model_fields, f"{key}: {part!r} is not a settings field"
            field = model.model_fields[part]
            model = field.annotation
            if part in vendor_tables and field is Settings.model_fields.get(part):
                vendor = env.get(f"GOODFAITH_{part.upper()}__VENDOR")
                default = Settings.model_fields[part].get_default(call_default_factory=True)
                model = vendor_tables[part][vendor or default.vendor].settings
    for svc_name, svc in _goodfaith_services(compose).items():
        assert svc["environment"] == env, f"{svc_name} does not use x-goodfaith-env"


def test_env_builds_valid_settings(
    compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The shared env parses into Settings: PostgreSQL, Redis, MinIO and both agencies."""
    for key in [k for k in os.environ if k.startswith("GOODFAITH_")]:
        monkeypatch.delenv(key)
    for key, value in compose["x-goodfaith-env"].items():
        monkeypatch.setenv(key, str(value))
    s = Settings()
    assert s.database_url.startswith("postgresql://")
    assert s.redis_url == "redis://redis:6379/0"
    assert s.object_store.startswith("s3://") and s.eoc_library.startswith("s3://")
    assert s.s3_endpoint_url == "http://minio:9000"
    assert set(s.agencies) == {"agency-a", "agency-b"}
    for agency_id, agency in s.agencies.items():
        assert agency.submit_url == f"http://simulator:8100/agency/{agency_id}/submissions"
    assert s.fax.api_base == "http://simulator:8100" and s.fax.api_key


def test_the_stack_verifies_the_simulators_webhooks(compose: dict[str, Any]) -> None:
    """The compose stack runs verified: the shared env's webhook public key is the public half
    of the simulator's --signing-key, and the env passes the production secret checks."""
    import base64

    from config.settings import secret_problems
    from simulator.telnyx import public_key_of

    env = compose["x-goodfaith-env"]
    argv = compose["services"]["simulator"]["command"]
    seed = base64.b64decode(argv[argv.index("--signing-key") + 1])
    assert env["GOODFAITH_FAX__WEBHOOK_PUBLIC_KEY"] == public_key_of(seed)
    settings = Settings(
        media_secret=env["GOODFAITH_MEDIA_SECRET"],
        fax={"vendor": "telnyx", "webhook_public_key": env["GOODFAITH_FAX__WEBHOOK_PUBLIC_KEY"]},
    )
    assert secret_problems(settings) == []
