"""The production processes as an operator starts them: `goodfaith simulator`, `api`, `worker`
and `scheduler` as separate processes on one Redis, a notification taken in by `intake`."""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from connectors.registry import webhook_url
from simulator.documents import generate_authorization_pdf, generate_eoc_pdf
from simulator.telnyx import public_key_of
from tests.conftest import notification

BIN = Path(sys.executable).parent
SEED = bytes(range(32))  # the simulator's webhook signing key (32-byte Ed25519 seed)


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def stack(tmp_path: Path, redis_url: str) -> Iterator[tuple[dict[str, str], str, Path]]:
    api_port, sim_port = _port(), _port()
    (tmp_path / "eoc").mkdir()
    (tmp_path / "eoc" / "PPO-2026.pdf").write_bytes(generate_eoc_pdf("PPO-2026"))
    (tmp_path / "auth.pdf").write_bytes(generate_authorization_pdf("M1001", "Jane Roe"))
    sim = f"http://127.0.0.1:{sim_port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("GOODFAITH_")}
    env.update(
        {
            "GOODFAITH_REDIS_URL": redis_url,
            "GOODFAITH_DATABASE_URL": f"sqlite:///{tmp_path / 'gf.db'}",
            "GOODFAITH_OBJECT_STORE": f"file://{tmp_path / 'objects'}",
            "GOODFAITH_EOC_LIBRARY": f"file://{tmp_path / 'eoc'}",
            "GOODFAITH_PUBLIC_BASE_URL": f"http://127.0.0.1:{api_port}",
            "GOODFAITH_FAX__API_BASE": sim,
            "GOODFAITH_FAX__API_KEY": "key",
            "GOODFAITH_FAX__CONNECTION_ID": "conn",
            "GOODFAITH_AGENCIES": json.dumps(
                {"agency-a": {"name": "A", "submit_url": f"{sim}/agency/agency-a/submissions"}}
            ),
            "GOODFAITH_SCHEDULER_INTERVAL_S": "1",
            "GOODFAITH_MEDIA_SECRET": "processes-test-media-secret",
            "GOODFAITH_FAX__WEBHOOK_PUBLIC_KEY": public_key_of(SEED),
            "GOODFAITH_SIMULATOR_SIGNING_KEY": base64.b64encode(SEED).decode(),
        }
    )
    subprocess.run([BIN / "goodfaith", "db", "upgrade"], env=env, check=True, capture_output=True)
    commands = [
        [
            "simulator",
            "--port",
            str(sim_port),
            "--webhook-url",
            webhook_url(f"http://127.0.0.1:{api_port}", "telnyx"),
        ],
        ["api", "--port", str(api_port)],
        ["worker", "--processes", "1", "--threads", "2"],
        ["scheduler"],
    ]
    logs = [open(tmp_path / f"{cmd[0]}.log", "wb") for cmd in commands]  # noqa: SIM115
    procs = [
        subprocess.Popen(
            [BIN / "goodfaith", *cmd],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=log,
            start_new_session=True,
        )
        for cmd, log in zip(commands, logs, strict=True)
    ]
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{api_port}/healthz", timeout=1).is_success:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the API did not come up"
            time.sleep(0.2)
        yield env, f"http://127.0.0.1:{api_port}", tmp_path
    finally:
        for p in procs:
            os.killpg(p.pid, signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait(timeout=15)
        for log in logs:
            log.close()


def _key(env: dict[str, str], role: str) -> dict[str, str]:
    """A new API key from `goodfaith keys create` (the key is alone on the last line)."""
    out = subprocess.run(
        [BIN / "goodfaith", "keys", "create", "--role", role],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return {"Authorization": f"Bearer {out.stdout.strip().splitlines()[-1]}"}


def test_intake_reaches_the_provider_through_the_production_processes(
    stack: tuple[dict[str, str], str, Path],
) -> None:
    """`goodfaith intake` → the worker process writes and sends attempt 1 over the fax API.
    Expedited: its attempt 1 goes at once at any hour of the wall clock (a standard review's
    would wait for the provider's next business opening)."""
    env, api, tmp = stack
    doc = notification(
        authorization_uri=f"file://{tmp / 'auth.pdf'}",
        received_at=datetime.now(UTC).isoformat(),  # real time: the wall clock
        review_type="expedited",
    )
    (tmp / "n.json").write_text(json.dumps(doc))
    out = subprocess.run(
        [BIN / "goodfaith", "intake", str(tmp / "n.json")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    case_id = json.loads(out.stdout)["case_id"]
    compliance, ops = _key(env, "compliance"), _key(env, "ops")
    assert httpx.get(f"{api}/v1/exports/attempts").status_code == 401
    deadline = time.monotonic() + 60
    while True:
        rows = httpx.get(
            f"{api}/v1/exports/attempts", params={"format": "json"}, headers=compliance
        ).json()["attempts"]
        if rows and rows[0]["outcome"] == "sent":
            break
        assert time.monotonic() < deadline, (tmp / "worker.log").read_text()[-2000:]
        time.sleep(0.3)
    assert rows[0]["case_id"] == case_id and rows[0]["destination"] == "+16175550101"
    assert rows[0]["external_id"]
    case = httpx.get(f"{api}/v1/cases/{case_id}", headers=ops).json()
    assert case["status"] == "open" and case["attention"] is None
