"""A real PgBouncer for tests: ``pgbouncer`` in the foreground on a free loopback port, in
front of the test PostgreSQL (``GOODFAITH_DATABASE_URL``), with its own configuration in a
temporary folder. PgBouncer refuses to run as root: as root it is started with ``-u nobody``.

Under CI (``CI=true``) a missing ``pgbouncer`` is a failure, not a skip (.ci/run installs it).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import make_url

from simulator.serving import free_port
from tests.conftest import os_tool

CANDIDATES = ("/usr/sbin/pgbouncer", "/usr/bin/pgbouncer", "/usr/local/bin/pgbouncer")


@dataclass(frozen=True)
class PgBouncer:
    url: str  # the test database's URL, through PgBouncer
    port: int
    process: subprocess.Popen[bytes]
    log: Path


def find_pgbouncer() -> str:
    return os_tool("pgbouncer", CANDIDATES, "pgbouncer")


def _quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


@contextmanager
def running_pgbouncer(
    database_url: str, *, pool_mode: str = "transaction", server_connections: int = 2
) -> Iterator[PgBouncer]:
    """PgBouncer in ``pool_mode`` in front of ``database_url``'s server, holding at most
    ``server_connections`` server connections for the database (clients share them)."""
    binary = find_pgbouncer()
    target = make_url(database_url)
    folder = Path(tempfile.mkdtemp(prefix="goodfaith-pgbouncer-"))
    folder.chmod(0o755)  # read by the unprivileged user PgBouncer runs as
    port = free_port()
    server = " ".join(
        f"{key}={_quote(str(value))}"
        for key, value in (
            ("host", target.host or "127.0.0.1"),
            ("port", target.port or 5432),
            ("dbname", target.database),
            ("user", target.username or "postgres"),
            ("password", target.password),
        )
        if value is not None
    )
    user = target.username or "postgres"
    (folder / "userlist.txt").write_text(f'"{user}" ""\n')
    config = folder / "pgbouncer.ini"
    config.write_text(
        "\n".join(
            [
                "[databases]",
                f"{target.database} = {server}",
                "[pgbouncer]",
                "listen_addr = 127.0.0.1",
                f"listen_port = {port}",
                "unix_socket_dir =",
                "auth_type = trust",
                f"auth_file = {folder / 'userlist.txt'}",
                f"pool_mode = {pool_mode}",
                f"default_pool_size = {server_connections}",
                "max_client_conn = 200",
                "",
            ]
        )
    )
    for path in folder.iterdir():
        path.chmod(0o644)
    log = folder / "pgbouncer.log"
    command = [binary, str(config)]
    if os.geteuid() == 0:
        command[1:1] = ["-u", "nobody"]
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=out)
    try:
        deadline = time.monotonic() + 20
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"pgbouncer exited {process.returncode}: {log.read_text()}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"pgbouncer did not listen: {log.read_text()}") from None
                time.sleep(0.05)
        url = target.set(host="127.0.0.1", port=port, password=None)
        yield PgBouncer(url.render_as_string(hide_password=False), port, process, log)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        shutil.rmtree(folder, ignore_errors=True)
