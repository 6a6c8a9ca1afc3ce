"""Fail closed: the production processes refuse default or missing secrets, webhooks are
verified or refused, and the simulator publishes the key its webhooks verify with."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from api.app import create_app
from config.settings import Settings, get_settings, secret_problems
from connectors.fax.telnyx import TelnyxSettings, public_key_b64, sign_webhook
from simulator.serving import asgi_client
from simulator.telnyx import PUBLIC_KEY_ROUTE, public_key_of
from tests.unit.simulator.world import SEED
from worker.cli import EXIT_CONFIG, main
from worker.wiring import build_container

KEY = public_key_b64(SEED)


def _settings(tmp: Path, **kw: object) -> Settings:
    return Settings(
        database_url=f"sqlite:///{tmp / 'gf.db'}",
        object_store=f"file://{tmp / 'objects'}",
        eoc_library=f"file://{tmp / 'eoc'}",
        **kw,  # type: ignore[arg-type]
    )


def test_embedded_defaults_name_both_secrets(tmp_path: Path) -> None:
    """On the embedded defaults the media secret and the webhook key are both reported."""
    problems = secret_problems(_settings(tmp_path))
    assert len(problems) == 2
    assert problems[0].startswith("GOODFAITH_MEDIA_SECRET")
    assert problems[1].startswith("GOODFAITH_FAX__WEBHOOK_PUBLIC_KEY")


def test_set_secrets_have_no_problem_and_a_bad_key_is_named(tmp_path: Path) -> None:
    """A non-default media secret and a base64 Ed25519 key pass; a key that is not one is named."""
    good = TelnyxSettings(webhook_public_key=KEY)
    assert secret_problems(_settings(tmp_path, media_secret="s3cret-value", fax=good)) == []
    bad = TelnyxSettings(webhook_public_key="bm90IGEga2V5")  # base64 of "not a key"
    (problem,) = secret_problems(_settings(tmp_path, media_secret="s3cret-value", fax=bad))
    assert "GOODFAITH_FAX__WEBHOOK_PUBLIC_KEY is not a base64 Ed25519" in problem


@pytest.fixture
def clean_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in ("GOODFAITH_MEDIA_SECRET", "GOODFAITH_FAX__WEBHOOK_PUBLIC_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("GOODFAITH_DATABASE_URL", f"sqlite:///{tmp_path / 'gf.db'}")
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.mark.parametrize("process", ["api", "worker", "scheduler"])
def test_production_processes_refuse_default_secrets_in_one_line(
    process: str, clean_env: None, tmp_path: Path
) -> None:
    """`goodfaith api|worker|scheduler` on the defaults exit 78 with one line naming both
    settings, before touching the database."""
    result = CliRunner().invoke(main, [process])
    assert result.exit_code == EXIT_CONFIG
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "GOODFAITH_MEDIA_SECRET" in lines[0]
    assert "GOODFAITH_FAX__WEBHOOK_PUBLIC_KEY" in lines[0]
    assert "Traceback" not in result.output
    assert not (tmp_path / "gf.db").exists()


def test_api_names_only_the_missing_webhook_key(
    clean_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the media secret set, only the webhook key is named."""
    monkeypatch.setenv("GOODFAITH_MEDIA_SECRET", "a-real-secret")
    result = CliRunner().invoke(main, ["api"])
    assert result.exit_code == EXIT_CONFIG
    assert "GOODFAITH_FAX__WEBHOOK_PUBLIC_KEY" in result.stderr
    assert "GOODFAITH_MEDIA_SECRET" not in result.stderr


def test_without_a_key_a_correctly_signed_webhook_is_still_refused(tmp_path: Path) -> None:
    """The embedded default (no public key) refuses every Telnyx webhook with 401."""
    c = build_container(_settings(tmp_path))
    http = asgi_client(create_app(lambda: c))
    try:
        body = b'{"data": {"event_type": "fax.delivered", "id": "e", "payload": {}}}'
        ts = int(c.clock.now().timestamp())
        headers = {
            "telnyx-timestamp": str(ts),
            "telnyx-signature-ed25519": sign_webhook(Ed25519PrivateKey.generate(), ts, body),
        }
        assert http.post("/v1/webhooks/telnyx", content=body, headers=headers).status_code == 401
    finally:
        http.close()
        c.close()


def test_simulator_publishes_the_public_key_of_its_signing_key() -> None:
    """GET /_sim/telnyx-public-key answers the base64 public key its webhooks verify with."""
    from simulator.app import Simulator
    from simulator.serving import asgi_client as client_for
    from tests.unit.simulator.world import START
    from worker.domain.clock import VirtualClock
    from worker.wiring import make_http_client

    http = make_http_client()
    try:
        for seed, expected in ((SEED, 200), (None, 404)):
            sim = Simulator(
                clock=VirtualClock(START),
                webhook_url="http://127.0.0.1:9/v1/webhooks/telnyx",
                behaviours={},
                directory={},
                http=http,
                public_base_url="http://sim",
                signing_key=seed,
            )
            r = client_for(sim.app).get(PUBLIC_KEY_ROUTE)
            assert r.status_code == expected
            if seed is not None:
                assert r.json() == {"public_key": KEY} == {"public_key": public_key_of(SEED)}
    finally:
        http.close()


def test_simulator_refuses_a_signing_key_that_is_not_a_seed() -> None:
    """`goodfaith simulator --signing-key` that is not a base64 32-byte seed: one line, exit 2."""
    result = CliRunner().invoke(main, ["simulator", "--signing-key", "c2hvcnQ="])
    assert result.exit_code == 2
    assert "--signing-key" in result.stderr and "Traceback" not in result.output
