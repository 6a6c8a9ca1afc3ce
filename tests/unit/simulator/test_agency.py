"""The agency far side: packet submissions, receipts and the agency's own errors."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from tests.unit.simulator.world import PACKET, World


def submit(world: World, packet: bytes = PACKET, sha: str | None = None, key: str = "d-1") -> Any:
    metadata = {
        "notification_id": "N-1",
        "case_ref": "c-1",
        "supplemental": False,
        "sha256": sha or hashlib.sha256(packet).hexdigest(),
    }
    return world.client.post(
        "/agency/ma-ocha/submissions",
        files={
            "metadata": (None, json.dumps(metadata), "application/json"),
            "packet": ("packet.pdf", packet, "application/pdf"),
            "manifest": ("manifest.json", b"{}", "application/json"),
        },
        headers={"Idempotency-Key": key},
    )


def test_agency_accepts_a_packet_and_replays_on_the_same_key(world: World) -> None:
    """A submission gets a receipt; the same Idempotency-Key returns the same receipt only once."""
    first = submit(world)
    again = submit(world)
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json() == again.json()
    assert first.json()["sha256"] == hashlib.sha256(PACKET).hexdigest()
    assert first.json()["pages"] == 2
    (stored,) = world.sim.submissions
    assert stored.packet == PACKET
    receipt_id = first.json()["receipt_id"]
    fetched = world.client.get(f"/agency/ma-ocha/submissions/{receipt_id}")
    assert fetched.json()["receipt_id"] == receipt_id
    assert world.client.get("/agency/ma-ocha/submissions/R-NOPE").status_code == 404


def test_agency_checks_hash_and_pdf(world: World) -> None:
    """A wrong sha256 or a non-PDF packet is refused with 422; nothing is stored."""
    assert submit(world, sha="0" * 64, key="d-2").json()["errors"][0]["code"] == "sha256_mismatch"
    assert submit(world, packet=b"hello", key="d-3").json()["errors"][0]["code"] == "not_a_pdf"
    assert world.sim.submissions == []


def test_agency_errors_are_its_own_plain_format(world: World) -> None:
    """The agency answers errors as {"errors": [{"code", "title"}]}, without Telnyx's JSON:API
    detail and source."""
    missing = world.client.get("/agency/ma-ocha/submissions/R-NOPE")
    assert missing.json() == {"errors": [{"code": "not_found", "title": "no such submission"}]}
    mismatch = submit(world, sha="0" * 64, key="d-4").json()
    assert mismatch == {
        "errors": [{"code": "sha256_mismatch", "title": "packet sha256 does not match metadata"}]
    }
