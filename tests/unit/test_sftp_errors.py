"""connectors/delivery/sftp.py: every outside error maps into our tree, and the settings refuse
what cannot work (no credential, a host key that is not an OpenSSH public key line)."""

from __future__ import annotations

import errno

import paramiko
import pytest
from pydantic import ValidationError

from connectors.base import AuthError, Rejected, TransientError
from connectors.delivery.sftp import (
    HostKeyMismatch,
    SftpAgencySettings,
    parse_host_key,
    translate_sftp_error,
)

HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIN2gFHqkCvfrlH7ESG0yIUN4sY40XG7nXwy/o1dVYRHJ"
KEY = parse_host_key(HOST_KEY)
OTHER = parse_host_key(
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKGS/ru/10Pl6aknqlD2g/wQLFj94jPjSVfv0azm+N02"
)


@pytest.mark.parametrize(
    ("outside", "ours"),
    [
        (paramiko.BadHostKeyException("h", KEY, OTHER), HostKeyMismatch),
        (paramiko.SSHException("Server '[h]:2222' not found in known_hosts"), HostKeyMismatch),
        (paramiko.AuthenticationException("no"), AuthError),
        (TimeoutError(), TransientError),
        (ConnectionRefusedError(errno.ECONNREFUSED, "refused"), TransientError),
        (ConnectionResetError(errno.ECONNRESET, "reset"), TransientError),
        (EOFError(), TransientError),
        (paramiko.SSHException("Error reading SSH protocol banner"), TransientError),
        (OSError(errno.ENOENT, "No such file"), Rejected),
        (OSError(errno.EACCES, "Permission denied"), Rejected),
        (OSError("Failure"), TransientError),  # SFTP's generic failure, e.g. a full disk
        (RuntimeError("boom"), TransientError),
    ],
)
def test_every_outside_error_has_its_place(outside: BaseException, ours: type[Exception]) -> None:
    """Each paramiko / socket error becomes the error of the table in the module docstring."""
    got = translate_sftp_error(outside, what="agency X SFTP delivery")
    assert type(got) is ours
    assert str(got).startswith("agency X SFTP delivery")


def test_auth_error_is_not_a_host_key_mismatch() -> None:
    """A refused login is an AuthError but not a HostKeyMismatch (different fixes)."""
    got = translate_sftp_error(paramiko.AuthenticationException(), what="x")
    assert isinstance(got, AuthError) and not isinstance(got, HostKeyMismatch)


def base(**overrides: object) -> dict[str, object]:
    values: dict[str, object] = {
        "name": "A",
        "host": "sftp.agency.example",
        "username": "carrier",
        "remote_dir": "/inbox",
        "known_host_key": HOST_KEY,
        "password": "pw",
    }
    values.update(overrides)
    return values


def test_settings_need_a_credential() -> None:
    """Neither private_key nor password: refused, naming both."""
    with pytest.raises(ValidationError, match="private_key"):
        SftpAgencySettings.model_validate(base(password=None))


@pytest.mark.parametrize("line", ["", "AAAA", "ssh-ed25519 not-base64!", "ssh-ed25519 AAAA"])
def test_settings_need_a_readable_host_key(line: str) -> None:
    """known_host_key must be an OpenSSH public key line; there is no 'accept any' value."""
    with pytest.raises(ValidationError, match="known_host_key"):
        SftpAgencySettings.model_validate(base(known_host_key=line))


def test_settings_take_a_known_hosts_line_and_hide_secrets() -> None:
    """A known_hosts line (with the host name first) is read; the password never shows."""
    s = SftpAgencySettings.model_validate(base(known_host_key=f"[sftp.example]:2222 {HOST_KEY}"))
    assert s.port == 22 and s.transport == "sftp"
    assert "pw" not in repr(s)
