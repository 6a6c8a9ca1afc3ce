"""The world around the simulator in unit tests: our side as the far side sees it (a carrier
serving letters and receiving webhooks), a virtual clock, and request letters."""

from __future__ import annotations

import base64
import io
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
from reportlab.pdfgen.canvas import Canvas

from simulator.app import Simulator
from simulator.documents import generate_records_pdf
from worker.domain.clock import VirtualClock

START = datetime(2026, 3, 2, 14, 0, tzinfo=UTC)
CARRIER = "https://carrier.example"
WEBHOOK = f"{CARRIER}/webhooks/telnyx"
SEED = bytes(range(32))
BUSY_FAX, SLOW_FAX, SILENT_FAX, NONE_FAX, OK_FAX = (
    "+16175550101",
    "+16175550102",
    "+16175550103",
    "+16175550104",
    "+16175550105",
)
NPI_OK, NPI_NONE = "1234567893", "1234567801"
NPI_PLAIN = "1234567819"  # a FHIR server that takes no Subscriptions


def letter(reference: str) -> bytes:
    """A one-page request letter quoting ``reference``, as the worker would produce."""
    buffer = io.BytesIO()
    canvas = Canvas(buffer, invariant=True)
    canvas.drawString(72, 720, "Request for medical records")
    canvas.drawString(72, 700, f"Our reference: {reference}")
    canvas.showPage()
    canvas.save()
    return buffer.getvalue()


@dataclass
class Carrier:
    """Our side as the simulator sees it: serves letters, receives webhooks."""

    letters: dict[str, bytes] = field(default_factory=dict)
    webhooks: list[tuple[bytes, dict[str, str]]] = field(default_factory=list)
    fail_next_webhooks: int = 0
    #: FHIR Subscription notifications received at ``/notify/...`` (body, headers)
    notifications: list[tuple[bytes, dict[str, str]]] = field(default_factory=list)

    def handler(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.startswith("/letters/"):
            name = request.url.path.removeprefix("/letters/")
            if name in self.letters:
                return httpx.Response(
                    200, content=self.letters[name], headers={"content-type": "application/pdf"}
                )
            return httpx.Response(404)
        if request.url.path.startswith("/notify/"):
            if self.fail_next_webhooks:
                self.fail_next_webhooks -= 1
                return httpx.Response(503)
            self.notifications.append((request.content, dict(request.headers)))
            return httpx.Response(200)
        if request.url.path == "/webhooks/telnyx":
            if self.fail_next_webhooks:
                self.fail_next_webhooks -= 1
                return httpx.Response(503)
            self.webhooks.append((request.content, dict(request.headers)))
            return httpx.Response(200)
        return httpx.Response(404)

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(body)["data"] for body, _ in self.webhooks]


@dataclass
class World:
    clock: VirtualClock
    carrier: Carrier
    sim: Simulator
    client: httpx.Client

    def send_fax(self, to: str, reference: str, key: str | None = None) -> str:
        name = f"{reference}.pdf"
        self.carrier.letters[name] = letter(reference)
        response = self.client.post(
            "/v2/faxes",
            json={
                "connection_id": "conn-1",
                "from": "+16175550000",
                "to": to,
                "media_url": f"{CARRIER}/letters/{name}",
                "client_state": base64.b64encode((key or reference).encode()).decode(),
            },
            headers={"Authorization": "Bearer k", "Idempotency-Key": key or reference},
        )
        assert response.status_code == 202, response.text
        return str(response.json()["data"]["id"])

    def run_until(self, until: datetime) -> None:
        """Advance the clock event by event up to ``until``, firing what is due."""
        while (at := self.sim.next_event_at()) is not None and at <= until:
            self.clock.advance_to(at)
            self.sim.fire_due()
        self.clock.advance_to(until)
        self.sim.fire_due()


PACKET = generate_records_pdf("GF-NNNN0001", "Packet", "M-1", 2)
"""A two-page records PDF, as a packet the agency receives."""
