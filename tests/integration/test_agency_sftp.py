"""SftpAgencyDeliverer against a real OpenSSH server (tests/integration/sshd.py): atomic
placement, idempotent re-delivery, host-key verification, and the error mapping."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from config.settings import Settings
from connectors.base import (
    AuthError,
    PacketDeliverer,
    PacketSubmission,
    Rejected,
    TransientError,
)
from connectors.delivery.https import HashMismatch
from connectors.delivery.sftp import (
    HostKeyMismatch,
    SftpAgencyDeliverer,
    SftpAgencySettings,
    stem,
)
from connectors.registry import BuildContext, build_deliverer
from connectors.retry import no_wait_retrying
from tests.integration.sshd import SshServer, new_key, running_sshd

PACKET = b"%PDF-1.7\n" + bytes(range(256)) * 4096 + b"\n%%EOF\n"  # ~1 MiB: several SFTP writes
SHA = hashlib.sha256(PACKET).hexdigest()


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshServer]:
    with running_sshd(tmp_path_factory.mktemp("sshd")) as server:
        yield server


@pytest.fixture
def inbox(sshd: SshServer, request: pytest.FixtureRequest) -> Path:
    folder = sshd.root / request.node.name.replace("[", "_").replace("]", "_")
    folder.mkdir()
    return folder


def settings(sshd: SshServer, inbox: Path, **overrides: Any) -> SftpAgencySettings:
    values: dict[str, Any] = {
        "name": "Agency S",
        "transport": "sftp",
        "host": sshd.host,
        "port": sshd.port,
        "username": sshd.username,
        "remote_dir": str(inbox),
        "known_host_key": sshd.host_key.public_line,
        "private_key": sshd.client_key.private_openssh,
        "timeout_s": 5,
    }
    values.update(overrides)
    return SftpAgencySettings.model_validate(values)


def deliverer(agency: SftpAgencySettings) -> SftpAgencyDeliverer:
    return SftpAgencyDeliverer({"ma-ocha": agency}, retrying=lambda: no_wait_retrying(2))


def submission(**overrides: Any) -> PacketSubmission:
    values: dict[str, Any] = {
        "idempotency_key": "dlv-1",
        "agency_id": "ma-ocha",
        "case_ref": "case-7",
        "notification_id": "N-100",
        "packet_pdf": PACKET,
        "manifest": {"documents": [{"name": "records.pdf", "sha256": "ab"}]},
        "sha256": SHA,
    }
    values.update(overrides)
    return PacketSubmission(**values)


def test_delivers_packet_and_manifest_under_their_final_names(sshd: SshServer, inbox: Path) -> None:
    """The packet lands byte for byte, then its manifest; no temporary file is left."""
    receipt = deliverer(settings(sshd, inbox)).deliver(submission())
    assert sorted(p.name for p in inbox.iterdir()) == [
        "N-100_dlv-1.manifest.json",
        "N-100_dlv-1.pdf",
    ]
    assert (inbox / "N-100_dlv-1.pdf").read_bytes() == PACKET
    manifest = json.loads((inbox / "N-100_dlv-1.manifest.json").read_text())
    assert manifest["sha256"] == SHA
    assert manifest["packet_file"] == "N-100_dlv-1.pdf"
    assert manifest["notification_id"] == "N-100"
    assert manifest["manifest"] == {"documents": [{"name": "records.pdf", "sha256": "ab"}]}
    assert receipt.sha256 == SHA
    assert receipt.receipt_id == f"sftp://{sshd.host}:{sshd.port}{inbox}/N-100_dlv-1.pdf"


def test_redelivery_after_a_crash_makes_no_second_file(sshd: SshServer, inbox: Path) -> None:
    """A re-send of the same delivery (crash after upload, before the receipt was recorded)
    adopts what is there: still one packet, one manifest, the same receipt."""
    d = deliverer(settings(sshd, inbox))
    first = d.deliver(submission())
    second = d.deliver(submission())
    assert sorted(p.name for p in inbox.iterdir()) == [
        "N-100_dlv-1.manifest.json",
        "N-100_dlv-1.pdf",
    ]
    assert second.receipt_id == first.receipt_id


def test_a_crash_between_packet_and_manifest_is_completed(sshd: SshServer, inbox: Path) -> None:
    """Packet in place, manifest missing, a stale part file left: the re-send completes the
    manifest and leaves no part file."""
    (inbox / "N-100_dlv-1.pdf").write_bytes(PACKET)
    (inbox / ".N-100_dlv-1.manifest.json.part").write_bytes(b"{half")
    deliverer(settings(sshd, inbox)).deliver(submission())
    assert sorted(p.name for p in inbox.iterdir()) == [
        "N-100_dlv-1.manifest.json",
        "N-100_dlv-1.pdf",
    ]
    assert json.loads((inbox / "N-100_dlv-1.manifest.json").read_text())["sha256"] == SHA


def test_other_bytes_under_our_name_are_never_overwritten(sshd: SshServer, inbox: Path) -> None:
    """A file with our name but other bytes is a HashMismatch; it stays as it was."""
    (inbox / "N-100_dlv-1.pdf").write_bytes(b"%PDF-1.7 someone else's")
    with pytest.raises(HashMismatch):
        deliverer(settings(sshd, inbox)).deliver(submission())
    assert (inbox / "N-100_dlv-1.pdf").read_bytes() == b"%PDF-1.7 someone else's"
    assert not (inbox / "N-100_dlv-1.manifest.json").exists()


def test_a_different_host_key_is_refused(sshd: SshServer, inbox: Path) -> None:
    """A server whose host key is not the configured one gets nothing (never auto-accepted)."""
    other = new_key().public_line
    with pytest.raises(HostKeyMismatch):
        deliverer(settings(sshd, inbox, known_host_key=other)).deliver(submission())
    assert list(inbox.iterdir()) == []


def test_a_wrong_client_key_is_an_auth_error(sshd: SshServer, inbox: Path) -> None:
    """A key the server does not authorize is permanent (AuthError), not retried forever."""
    with pytest.raises(AuthError) as caught:
        deliverer(settings(sshd, inbox, private_key=new_key().private_openssh)).deliver(
            submission()
        )
    assert not isinstance(caught.value, HostKeyMismatch)


def test_a_missing_remote_dir_is_rejected(sshd: SshServer, inbox: Path) -> None:
    """A remote_dir that does not exist is a permanent Rejected naming remote_dir."""
    with pytest.raises(Rejected, match="remote_dir"):
        deliverer(settings(sshd, inbox, remote_dir=str(inbox / "nope"))).deliver(submission())


def test_a_closed_port_is_transient(sshd: SshServer, inbox: Path) -> None:
    """Nothing listening: TransientError (tenacity retries it; delivery retries later)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        free = s.getsockname()[1]
    with pytest.raises(TransientError):
        deliverer(settings(sshd, inbox, port=free)).deliver(submission())


def test_secrets_stay_out_of_errors_and_logs(sshd: SshServer, inbox: Path) -> None:
    """The private key never appears in an error message, a log line or the settings' repr."""
    agency = settings(sshd, inbox, private_key=new_key().private_openssh)
    secret_line = agency.private_key.get_secret_value().splitlines()[1]  # type: ignore[union-attr]
    with capture_logs() as logs, pytest.raises(AuthError) as caught:
        deliverer(agency).deliver(submission())
    assert secret_line not in str(caught.value)
    assert secret_line not in repr(agency)
    assert secret_line not in json.dumps(logs, default=str)


def test_registry_builds_sftp_from_goodfaith_agencies(sshd: SshServer, inbox: Path) -> None:
    """GOODFAITH_AGENCIES with transport "sftp" builds the SFTP deliverer for that agency,
    beside an HTTPS one, and the router hands it the packet."""
    import httpx

    s = Settings.model_validate(
        {
            "agencies": {
                "ma-ocha": settings(sshd, inbox).model_dump(mode="json")
                | {"private_key": sshd.client_key.private_openssh},
                "other": {"name": "Agency H", "submit_url": "https://agency.invalid/x"},
            }
        }
    )
    assert isinstance(s.agencies["ma-ocha"], SftpAgencySettings)
    router = build_deliverer(
        s.agencies,
        BuildContext(
            http=httpx.Client(), retrying=lambda: no_wait_retrying(1), public_base_url="http://x"
        ),
    )
    assert isinstance(router.routes["ma-ocha"], SftpAgencyDeliverer)
    assert isinstance(router.routes["ma-ocha"], PacketDeliverer)
    router.deliver(submission())
    assert (inbox / f"{stem(submission())}.pdf").read_bytes() == PACKET
