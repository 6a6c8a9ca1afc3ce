"""S3 at scale (issue 11): each process builds one S3 client (storage/objects.py), shared by
the object store and the URI reader, whose connection pool matches the worker's threads and
whose retries are configured explicitly (botocore's default pool of 10 is smaller than a
worker's threads, and its legacy retry mode is not what we want under throttling)."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import storage.objects
from config.settings import AgencySettings, Settings, get_settings
from connectors.fax.telnyx import public_key_b64
from storage.objects import S3ObjectStore, make_s3_client
from tests.unit.simulator.world import SEED
from worker.wiring import Container, InlineDispatcher, build_container


@pytest.fixture
def aws() -> Iterator[None]:
    from moto import mock_aws

    with mock_aws():
        yield


def _settings(tmp_path: Path, **overrides: Any) -> Settings:
    return Settings(
        database_url=f"sqlite:///{tmp_path / 'gf.db'}",
        object_store="s3://gf-bucket/records",
        eoc_library="s3://gf-bucket/eoc",
        agencies={"agency-a": AgencySettings(name="A", submit_url="https://agency.invalid/x")},
        **overrides,
    )


def _container(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> tuple[Container, list[Any]]:
    """A container on ``settings`` and every S3 client built while it was made."""
    made: list[Any] = []
    original = storage.objects.make_s3_client

    def counting(*args: Any, **kwargs: Any) -> Any:
        made.append(original(*args, **kwargs))
        return made[-1]

    monkeypatch.setattr(storage.objects, "make_s3_client", counting)
    c = build_container(settings, dispatcher=InlineDispatcher(), clock=None)
    return c, made


def test_the_client_pool_matches_the_worker_threads_and_retries_are_explicit(
    tmp_path: Path, aws: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    c, made = _container(_settings(tmp_path, worker_threads=24), monkeypatch)
    try:
        assert len(made) == 1  # one client for the process
        store = c.store
        assert isinstance(store, S3ObjectStore)
        assert store.client is made[0] and c.reader.s3_client is made[0]
        config = store.client.meta.config
        assert config.max_pool_connections == 24
        assert config.retries == {"mode": "standard", "total_max_attempts": 5}
        # the same client serves every call: writing and reading build no other
        store.client.create_bucket(Bucket="gf-bucket")
        for n in range(5):
            body = f"%PDF-1.4 {n}".encode()
            uri = store.put(f"cases/c/{n}.pdf", body, "application/pdf")
            assert c.reader.read(uri) == body
        assert len(made) == 1
    finally:
        c.close()


def test_pool_and_retries_come_from_the_environment(
    tmp_path: Path, aws: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GOODFAITH_S3_MAX_POOL_CONNECTIONS", "64")
    monkeypatch.setenv("GOODFAITH_S3_RETRY_MODE", "adaptive")
    monkeypatch.setenv("GOODFAITH_S3_MAX_ATTEMPTS", "8")
    c, made = _container(_settings(tmp_path), monkeypatch)
    try:
        config = made[0].meta.config
        assert config.max_pool_connections == 64
        assert config.retries == {"mode": "adaptive", "total_max_attempts": 8}
    finally:
        c.close()


def test_the_pool_never_drops_below_botocores_default() -> None:
    assert Settings(worker_threads=2).s3_pool_connections() == 10
    assert Settings(worker_threads=16).s3_pool_connections() == 16
    assert Settings(worker_threads=16, s3_max_pool_connections=12).s3_pool_connections() == 12


def test_a_retry_mode_outside_botocores_is_refused() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="s3_retry_mode"):
        Settings(s3_retry_mode="legacy")  # type: ignore[arg-type]


def test_make_s3_client_defaults(aws: None) -> None:
    client = make_s3_client(None, "us-east-1")
    assert client.meta.config.max_pool_connections == 10
    assert client.meta.config.retries == {"mode": "standard", "total_max_attempts": 5}
    client.create_bucket(Bucket="gf-defaults")
    client.put_object(Bucket="gf-defaults", Key="k", Body=b"x")
    assert client.get_object(Bucket="gf-defaults", Key="k")["Body"].read() == b"x"


def test_worker_threads_option_reaches_the_worker_processes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``goodfaith worker -t 24`` hands its thread count to the processes dramatiq starts (they
    read settings from the environment), so their S3 pool is sized to 24."""
    import dramatiq.cli

    from worker.cli import main

    seen: dict[str, Any] = {}

    def fake_dramatiq() -> int:
        seen["argv"] = list(sys.argv)
        seen["settings"] = get_settings()
        return 0

    monkeypatch.setattr(dramatiq.cli, "main", fake_dramatiq)
    monkeypatch.setenv("GOODFAITH_MEDIA_SECRET", "a-long-enough-secret-for-this-test-" * 2)
    monkeypatch.setenv("GOODFAITH_FAX__WEBHOOK_PUBLIC_KEY", public_key_b64(SEED))
    monkeypatch.delenv("GOODFAITH_WORKER_THREADS", raising=False)
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(main, ["worker", "-t", "24", "--lanes", "bulk"])
        assert result.exit_code == 0, result.output
        assert seen["argv"][seen["argv"].index("--threads") + 1] == "24"
        assert seen["settings"].worker_threads == 24
        assert seen["settings"].s3_pool_connections() == 24
    finally:
        os.environ.pop("GOODFAITH_WORKER_THREADS", None)
        get_settings.cache_clear()
