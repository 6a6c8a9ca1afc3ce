"""A real OpenSSH server for tests: ``sshd -D -e`` on a free loopback port, with its own host
key, configuration and authorized key in a temporary folder, SFTP only (``internal-sftp``).

Under CI (``CI=true``) a missing ``sshd`` is a failure, not a skip (.ci/run installs
``openssh-server``).
"""

from __future__ import annotations

import getpass
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from simulator.serving import free_port
from tests.conftest import os_tool

SSHD_CANDIDATES = ("/usr/sbin/sshd", "/usr/local/sbin/sshd")


@dataclass(frozen=True)
class KeyPair:
    private_openssh: str  # the private key file's text
    public_line: str  # "ssh-ed25519 AAAA…"


@dataclass(frozen=True)
class SshServer:
    host: str
    port: int
    username: str
    host_key: KeyPair
    client_key: KeyPair
    root: Path  # a folder the user may write; tests make their remote dirs under it
    process: subprocess.Popen[bytes]
    log: Path


def new_key() -> KeyPair:
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        .decode()
    )
    return KeyPair(private, public)


def find_sshd() -> str:
    return os_tool("sshd", SSHD_CANDIDATES, "openssh-server")


@contextmanager
def running_sshd(folder: Path) -> Iterator[SshServer]:
    sshd = find_sshd()
    if os.geteuid() == 0:
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # root's sshd needs its privsep dir
    folder.mkdir(parents=True, exist_ok=True)
    host_key, client_key = new_key(), new_key()
    host_key_file = folder / "host_ed25519"
    host_key_file.write_text(host_key.private_openssh)
    host_key_file.chmod(0o600)
    authorized = folder / "authorized_keys"
    authorized.write_text(client_key.public_line + "\n")
    authorized.chmod(0o600)
    root = folder / "files"
    root.mkdir()
    port = free_port()
    config = folder / "sshd_config"
    config.write_text(
        "\n".join(
            [
                f"ListenAddress 127.0.0.1:{port}",
                f"HostKey {host_key_file}",
                f"PidFile {folder / 'sshd.pid'}",
                f"AuthorizedKeysFile {authorized}",
                "PubkeyAuthentication yes",
                "PasswordAuthentication no",
                "KbdInteractiveAuthentication no",
                "UsePAM no",
                "StrictModes no",  # the temporary folder is under a world-writable /tmp
                "PermitRootLogin prohibit-password",
                f"AllowUsers {getpass.getuser()}",
                "Subsystem sftp internal-sftp",
                "ForceCommand internal-sftp",
                "LogLevel VERBOSE",
                "",
            ]
        )
    )
    log = folder / "sshd.log"
    with log.open("wb") as out:
        process = subprocess.Popen([sshd, "-D", "-e", "-f", str(config)], stdout=out, stderr=out)
    try:
        deadline = time.monotonic() + 10
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"sshd exited {process.returncode}: {log.read_text()}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5) as probe:
                    if probe.recv(4).startswith(b"SSH-"):
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"sshd did not listen on {port}: {log.read_text()}")
            time.sleep(0.05)
        yield SshServer(
            host="127.0.0.1",
            port=port,
            username=getpass.getuser(),
            host_key=host_key,
            client_key=client_key,
            root=root,
            process=process,
            log=log,
        )
    finally:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
