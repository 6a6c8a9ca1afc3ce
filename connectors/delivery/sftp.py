"""Deliver a records packet to an external review agency over SFTP (SSH file transfer).

Layout (ours; what the agency's pickup job reads) in the agency's ``remote_dir``::

    <stem>.pdf             the packet, byte for byte as assembled
    <stem>.manifest.json   {"notification_id", "case_ref", "supplemental", "sha256",
                            "idempotency_key", "packet_file", "manifest": {...}}

``<stem>`` is ``<notification_id>_<idempotency_key>`` (characters outside ``[A-Za-z0-9._-]``
become ``_``), so one delivery always has the same names. Each file is written under a
dot-prefixed temporary name (``.<name>.part``), read back and hashed, then renamed into place:
the packet first, the manifest last, so a manifest on the server means its packet is complete.
A re-delivery after a crash finds the final files and does not write a second copy: a packet
already in place with our SHA-256 is adopted; one with other bytes is a :class:`HashMismatch`
(never overwritten).

Security: the server's host key must equal ``known_host_key`` (an OpenSSH public key line);
an unknown or different key refuses the connection (never auto-accepted). We authenticate with
a private key (OpenSSH/PEM text) or a password; agents and ``~/.ssh`` are never consulted.

Errors, translated at this boundary into ``connectors/base.py``::

    socket timeout, refused / reset connection,        → TransientError (retried)
    SSH negotiation failure, SFTP failure (e.g. disk full)
    paramiko.AuthenticationException                   → AuthError
    host key unknown or different                      → HostKeyMismatch (an AuthError)
    remote dir missing (ENOENT) or not writable (EACCES) → Rejected
    a file with our name holding other bytes            → HashMismatch

Settings: :class:`SftpAgencySettings` (``transport="sftp"`` in ``GOODFAITH_AGENCIES``).
Secrets never appear in messages, logs or reprs.
"""

from __future__ import annotations

import base64
import binascii
import errno
import hashlib
import io
import json
import posixpath
import re
import stat
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Literal

import paramiko
from pydantic import Field, SecretStr, field_validator, model_validator

from config.settings import AgencyTransportSettings
from connectors.base import (
    AgencyNotConfigured,
    AuthError,
    DeliveryReceipt,
    HashMismatch,
    PacketSubmission,
    Rejected,
    TransientError,
)
from connectors.retry import RetryingFactory, transport_retrying
from worker.domain.clock import Clock, SystemClock

__all__ = [
    "HostKeyMismatch",
    "SftpAgencyDeliverer",
    "SftpAgencySettings",
    "parse_host_key",
    "translate_sftp_error",
]

TRANSPORT = "sftp"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
_CHUNK = 1 << 20  # bytes read back per request when hashing an uploaded file


class SftpAgencySettings(AgencyTransportSettings):
    """One agency that takes packets over SFTP (``transport="sftp"``).

    ``known_host_key`` is the server's public host key as an OpenSSH line (``ssh-ed25519
    AAAA…``, as in ``known_hosts`` without the host name, or with it). Authenticate with
    ``private_key`` (the key file's text; ``private_key_passphrase`` if it is encrypted) or
    ``password``. ``timeout_s`` is seconds for the connection, the handshake and each reply.
    """

    transport: Literal["sftp"] = "sftp"  # type: ignore[assignment]
    host: str
    port: int = Field(default=22, ge=1, le=65535)
    username: str
    remote_dir: str  # absolute, or relative to the login directory; must exist
    known_host_key: str
    private_key: SecretStr | None = None
    private_key_passphrase: SecretStr | None = None
    password: SecretStr | None = None
    timeout_s: float = Field(default=30.0, gt=0)

    @field_validator("known_host_key")
    @classmethod
    def _host_key(cls, v: str) -> str:
        parse_host_key(v)  # raises ValueError naming the expected form
        return v.strip()

    @model_validator(mode="after")
    def _one_credential(self) -> SftpAgencySettings:
        if self.private_key is None and self.password is None:
            raise ValueError("set private_key (the key file's text) or password for SFTP")
        return self


class HostKeyMismatch(AuthError):
    """The server's host key is not the configured ``known_host_key``: a different server, or
    the agency rotated its key. Check with the agency before changing the setting."""


def parse_host_key(line: str) -> paramiko.PKey:
    """The public key of an OpenSSH line ``[host] type base64 [comment]``."""
    fields = line.split()
    for i, field in enumerate(fields[:2]):
        if field.startswith(("ssh-", "ecdsa-", "sk-")) and i + 1 < len(fields):
            try:
                return paramiko.PKey.from_type_string(field, _b64(fields[i + 1]))
            except (paramiko.SSHException, ValueError) as exc:
                raise ValueError(f"known_host_key: cannot read the {field} key: {exc}") from exc
    raise ValueError(
        "known_host_key must be an OpenSSH public key line, e.g. 'ssh-ed25519 AAAA…' "
        "(ssh-keyscan -p PORT HOST prints it; confirm it with the agency)"
    )


def _b64(text: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except binascii.Error as exc:
        raise ValueError("known_host_key: the key is not base64") from exc


def _private_key(text: str, passphrase: str | None) -> paramiko.PKey:
    key_types: tuple[type[paramiko.PKey], ...] = (
        paramiko.Ed25519Key,
        paramiko.ECDSAKey,
        paramiko.RSAKey,
    )
    for key_type in key_types:
        try:
            return key_type.from_private_key(io.StringIO(text), password=passphrase)
        except paramiko.PasswordRequiredException as exc:
            raise AuthError("SFTP private_key is encrypted: set private_key_passphrase") from exc
        except (paramiko.SSHException, ValueError):
            continue
    raise AuthError("SFTP private_key is not an Ed25519, ECDSA or RSA private key")


def translate_sftp_error(exc: BaseException, *, what: str) -> Exception:
    """Our error for an outside one raised while talking SFTP (the table in the docstring)."""
    if isinstance(exc, paramiko.BadHostKeyException):
        return HostKeyMismatch(
            f"{what}: the server's host key is not the configured known_host_key; "
            "confirm the key with the agency before changing the setting"
        )
    if isinstance(exc, paramiko.AuthenticationException):
        return AuthError(f"{what}: authentication failed; check username and key or password")
    if isinstance(exc, paramiko.SSHException) and "known_hosts" in str(exc):
        return HostKeyMismatch(f"{what}: the server offered a host key we do not know")
    if isinstance(exc, TimeoutError):
        return TransientError(f"{what}: timed out")
    if isinstance(exc, (paramiko.SSHException, EOFError, ConnectionError)):
        return TransientError(f"{what}: {type(exc).__name__}")
    if isinstance(exc, OSError):
        if exc.errno == errno.ENOENT:
            return Rejected(f"{what}: no such file or directory on the server; check remote_dir")
        if exc.errno == errno.EACCES:
            return Rejected(f"{what}: permission denied on the server; check remote_dir")
        return TransientError(f"{what}: {type(exc).__name__} {exc.errno or ''}".rstrip())
    return TransientError(f"{what}: {type(exc).__name__}")


def stem(submission: PacketSubmission) -> str:
    """The base name of one delivery's files (the same on every re-delivery)."""
    return _UNSAFE.sub("_", f"{submission.notification_id}_{submission.idempotency_key}")


class SftpAgencyDeliverer:
    """``PacketDeliverer`` writing packets into each agency's SFTP directory.

    The receipt's ``received_at`` is the uploaded file's modification time on the server; a
    server that reports none gets ``clock``'s now (the container's clock; the system clock by
    default)."""

    transport = TRANSPORT

    def __init__(
        self,
        agencies: Mapping[str, SftpAgencySettings],
        *,
        retrying: RetryingFactory = transport_retrying,
        clock: Clock | None = None,
    ) -> None:
        self._agencies = dict(agencies)
        self._retrying = retrying
        self.clock: Clock = clock if clock is not None else SystemClock()

    def deliver(self, submission: PacketSubmission) -> DeliveryReceipt:
        agency = self._agencies.get(submission.agency_id)
        if agency is None:
            raise AgencyNotConfigured(
                f"no SFTP settings for agency {submission.agency_id!r}; "
                "add host, username, remote_dir and known_host_key to GOODFAITH_AGENCIES"
            )
        ours = hashlib.sha256(submission.packet_pdf).hexdigest()
        if ours != submission.sha256.lower():
            raise HashMismatch(
                f"packet bytes hash to {ours} but the submission records {submission.sha256}: "
                "the stored packet changed since assembly; do not deliver it"
            )
        for attempt in self._retrying():
            with attempt:
                return self._deliver_once(agency, submission, ours)
        raise AssertionError("unreachable: tenacity re-raises the last error")  # pragma: no cover

    def _deliver_once(
        self, agency: SftpAgencySettings, submission: PacketSubmission, ours: str
    ) -> DeliveryReceipt:
        what = f"agency {submission.agency_id} SFTP delivery"
        base = stem(submission)
        pdf_name, manifest_name = f"{base}.pdf", f"{base}.manifest.json"
        manifest = json.dumps(
            {
                "notification_id": submission.notification_id,
                "case_ref": submission.case_ref,
                "supplemental": submission.supplemental,
                "sha256": ours,
                "idempotency_key": submission.idempotency_key,
                "packet_file": pdf_name,
                "manifest": dict(submission.manifest),
            },
            sort_keys=True,
            default=str,
        ).encode()
        try:
            with _session(agency) as sftp:
                pdf_path = posixpath.join(agency.remote_dir, pdf_name)
                manifest_path = posixpath.join(agency.remote_dir, manifest_name)
                _place(sftp, pdf_path, submission.packet_pdf, ours, what=what)
                _place(
                    sftp, manifest_path, manifest, hashlib.sha256(manifest).hexdigest(), what=what
                )
                mtime = sftp.stat(pdf_path).st_mtime
        except (HashMismatch, AuthError, Rejected, TransientError):
            raise
        except Exception as exc:  # paramiko and socket errors: translate at the boundary
            raise translate_sftp_error(exc, what=what) from exc
        received_at = datetime.fromtimestamp(mtime, UTC) if mtime else self.clock.now()
        return DeliveryReceipt(
            receipt_id=f"sftp://{agency.host}:{agency.port}{_absolute(pdf_path)}"[:256],
            received_at=received_at,
            sha256=ours,
            extra={"manifest_file": manifest_name, "transport": TRANSPORT},
        )


def _absolute(path: str) -> str:
    return path if path.startswith("/") else "/~/" + path


@contextmanager
def _session(agency: SftpAgencySettings) -> Iterator[paramiko.SFTPClient]:
    """An SFTP session to ``agency``, its host key checked against ``known_host_key`` only."""
    client = paramiko.SSHClient()
    # RejectPolicy: a server whose key is not the configured one is refused, never learned.
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    expected = parse_host_key(agency.known_host_key)
    host_entry = agency.host if agency.port == 22 else f"[{agency.host}]:{agency.port}"
    client.get_host_keys().add(host_entry, expected.get_name(), expected)
    pkey = None
    if agency.private_key is not None:
        passphrase = agency.private_key_passphrase
        pkey = _private_key(
            agency.private_key.get_secret_value(),
            passphrase.get_secret_value() if passphrase else None,
        )
    try:
        client.connect(
            agency.host,
            port=agency.port,
            username=agency.username,
            pkey=pkey,
            password=agency.password.get_secret_value() if agency.password else None,
            timeout=agency.timeout_s,
            banner_timeout=agency.timeout_s,
            auth_timeout=agency.timeout_s,
            channel_timeout=agency.timeout_s,
            allow_agent=False,
            look_for_keys=False,
        )
        sftp = client.open_sftp()
        sftp.get_channel().settimeout(agency.timeout_s)  # type: ignore[union-attr]
        try:
            yield sftp
        finally:
            sftp.close()
    finally:
        client.close()


def _place(sftp: paramiko.SFTPClient, path: str, data: bytes, sha: str, *, what: str) -> None:
    """Put ``data`` at ``path`` atomically, once: write ``.<name>.part``, check it, rename.

    A file already at ``path`` with ``sha`` is ours from an earlier try (adopted); with other
    bytes it is someone else's (HashMismatch, never overwritten)."""
    if _hash_of(sftp, path) is not None:
        _check_existing(sftp, path, sha, what=what)
        return
    directory, name = posixpath.split(path)
    part = posixpath.join(directory, f".{name}.part")
    with sftp.open(part, "wb") as f:  # truncates a part left by a crashed try
        f.set_pipelined(True)
        f.write(data)
    if _hash_of(sftp, part) != sha:
        sftp.remove(part)
        raise TransientError(f"{what}: {name} read back with other bytes than were written")
    try:
        sftp.rename(part, path)  # SFTP v3 rename refuses to replace an existing file
    except OSError:
        if _hash_of(sftp, path) is None:
            raise
        sftp.remove(part)
        _check_existing(sftp, path, sha, what=what)


def _check_existing(sftp: paramiko.SFTPClient, path: str, sha: str, *, what: str) -> None:
    theirs = _hash_of(sftp, path)
    if theirs != sha:
        raise HashMismatch(
            f"{what}: {posixpath.basename(path)} is already on the server with other bytes "
            f"(sha256 {theirs}, ours {sha}); it was not overwritten: investigate before re-sending"
        )


def _hash_of(sftp: paramiko.SFTPClient, path: str) -> str | None:
    """SHA-256 of the remote file, read back; None when there is no regular file there."""
    try:
        attrs = sftp.stat(path)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            return None
        raise
    if attrs.st_mode is not None and not stat.S_ISREG(attrs.st_mode):
        raise Rejected(f"{posixpath.basename(path)} on the server is not a regular file")
    digest = hashlib.sha256()
    with sftp.open(path, "rb") as f:
        f.prefetch(attrs.st_size)
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
