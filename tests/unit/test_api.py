"""The HTTP API over a container with fake connectors on a virtual clock (no network)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pypdf import PdfReader
from sqlalchemy import func, select

from api.app import create_app
from connectors.fax.telnyx import TelnyxFax, public_key_b64, sign_webhook
from simulator.documents import generate_records_pdf
from simulator.serving import asgi_client
from storage.db import transaction
from storage.models import Attempt, AuditEvent, Case, InboundItem, RecordRequest
from tests.conftest import at, notification
from tests.fakes import FakeFax, api_client, make_container
from worker.domain.clock import VirtualClock
from worker.readmodels.export import EXPORT_FIELDS
from worker.wiring import Container

START = at("2026-04-17T09:00:00-04:00")
MEDIA_URL = "https://media.telnyx.invalid/inbound/fax-in-1.pdf"
CARRIER_NUMBER = "+16175550000"


class Env:
    """``http`` sends no key (webhooks, media); ``intake``, ``ops`` and ``compliance`` each
    send a key of that role."""

    def __init__(self, c: Container, clock: VirtualClock, fax: FakeFax, http: httpx.Client):
        self.c, self.clock, self.fax, self.http = c, clock, fax, http
        self.intake = api_client(c, "intake")
        self.ops = api_client(c, "ops")
        self.compliance = api_client(c, "compliance")
        self.private_key = Ed25519PrivateKey.generate()
        self.media: dict[str, bytes] = {}

    def use_telnyx(self) -> None:
        """Swap the fake fax for the real Telnyx connector (webhook verification, media fetch)."""

        def handler(request: httpx.Request) -> httpx.Response:
            body = self.media.get(str(request.url))
            if body is None:
                return httpx.Response(404)
            return httpx.Response(200, content=body, headers={"content-type": "application/pdf"})

        client = httpx.Client(transport=httpx.MockTransport(handler))
        self.c.closers.append(client.close)
        self.c.fax = TelnyxFax(
            client,
            api_key="KEY-test",
            connection_id="conn-1",
            from_number=CARRIER_NUMBER,
            webhook_url=None,
            public_key=public_key_b64(self.private_key),
            clock=self.clock,
            media_hosts=["media.telnyx.invalid"],
        )

    def signed_headers(self, body: bytes, key: Ed25519PrivateKey | None = None) -> dict[str, str]:
        ts = int(self.clock.now().timestamp())
        return {
            "telnyx-timestamp": str(ts),
            "telnyx-signature-ed25519": sign_webhook(key or self.private_key, ts, body),
            "content-type": "application/json",
        }


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    c, clock, fax, _deliverer = make_container(tmp_path, START)
    http = asgi_client(create_app(lambda: c))
    e = Env(c, clock, fax, http)
    try:
        yield e
    finally:
        for client in (http, e.intake, e.ops, e.compliance):
            client.close()
        c.close()


def _count(c: Container, model: Any) -> int:
    with transaction(c.sessions) as s:
        return int(s.scalar(select(func.count()).select_from(model)) or 0)


def _attempts(c: Container) -> list[Attempt]:
    with transaction(c.sessions) as s:
        return list(s.scalars(select(Attempt).order_by(Attempt.planned_at)))


def _open_case(env: Env, **overrides: Any) -> str:
    r = env.intake.post("/v1/notifications", json=notification(**overrides))
    assert r.status_code == 201, r.text
    return str(r.json()["case_id"])


def _envelope(event_type: str, payload: dict[str, Any], event_id: str = "evt-1") -> bytes:
    return json.dumps(
        {
            "data": {
                "event_type": event_type,
                "id": event_id,
                "occurred_at": "2026-04-17T13:05:00Z",
                "record_type": "event",
                "payload": payload,
            },
            "meta": {"attempt": 1, "delivered_to": "https://example.invalid/webhook"},
        }
    ).encode()


# --- intake ------------------------------------------------------------------------------------


def test_notification_opens_case_with_201(env: Env) -> None:
    """A valid notification answers 201 with the new case id, and the case is stored."""
    r = env.intake.post("/v1/notifications", json=notification())
    assert r.status_code == 201
    body = r.json()
    assert body["created"] is True
    with transaction(env.c.sessions) as s:
        case = s.get(Case, body["case_id"])
        assert case is not None
        assert case.notification_id == "OPP-2026-000123"


def test_same_notification_again_is_200_not_created(env: Env) -> None:
    """Posting the same notification twice answers 200, created false, with the same case id."""
    first = env.intake.post("/v1/notifications", json=notification())
    second = env.intake.post("/v1/notifications", json=notification())
    assert (first.status_code, second.status_code) == (201, 200)
    assert second.json() == {"case_id": first.json()["case_id"], "created": False}
    assert _count(env.c, Case) == 1
    assert len(env.fax.sent) == 1


def test_invalid_notification_is_422_naming_each_field_and_stores_nothing(env: Env) -> None:
    """Each bad field appears in the 422 errors and no case, request or attempt is written."""
    doc = notification(review_type="urgent", received_at="2026-04-17T09:00:00", providers=[])
    r = env.intake.post("/v1/notifications", json=doc)
    assert r.status_code == 422
    fields = {e["field"] for e in r.json()["errors"]}
    assert fields == {"review_type", "received_at", "providers"}
    assert all(e["message"] for e in r.json()["errors"])
    assert (_count(env.c, Case), _count(env.c, RecordRequest), _count(env.c, Attempt)) == (0, 0, 0)
    assert env.fax.sent == []


def test_unknown_agency_is_422_naming_agency_id(env: Env) -> None:
    """An agency not configured is rejected as a field error, not a server error."""
    r = env.intake.post("/v1/notifications", json=notification(agency_id="agency-zz"))
    assert r.status_code == 422
    assert [e["field"] for e in r.json()["errors"]] == ["agency_id"]
    assert _count(env.c, Case) == 0


def test_non_json_body_is_422(env: Env) -> None:
    """A body that is not JSON answers 422 naming the body, and nothing is stored."""
    r = env.intake.post(
        "/v1/notifications", content=b"notification_id=1", headers={"content-type": "text/plain"}
    )
    assert r.status_code == 422
    assert r.json()["errors"][0]["field"] == "(body)"
    assert _count(env.c, Case) == 0


# --- webhooks ----------------------------------------------------------------------------------


def test_webhook_with_bad_signature_is_401_and_changes_nothing(env: Env) -> None:
    """A fax.delivered signed by another key is refused and the attempt stays 'sent'."""
    _open_case(env)
    env.use_telnyx()
    (attempt,) = _attempts(env.c)
    body = _envelope("fax.delivered", {"fax_id": attempt.external_id})
    r = env.http.post(
        "/v1/webhooks/telnyx",
        content=body,
        headers=env.signed_headers(body, key=Ed25519PrivateKey.generate()),
    )
    assert r.status_code == 401
    (after,) = _attempts(env.c)
    assert (after.outcome, after.completed_at) == ("sent", None)


def test_webhook_without_signature_is_401_and_changes_nothing(env: Env) -> None:
    """An unsigned fax.delivered is refused and the attempt stays 'sent'."""
    _open_case(env)
    env.use_telnyx()
    (attempt,) = _attempts(env.c)
    body = _envelope("fax.delivered", {"fax_id": attempt.external_id})
    r = env.http.post(
        "/v1/webhooks/telnyx", content=body, headers={"content-type": "application/json"}
    )
    assert r.status_code == 401
    assert _attempts(env.c)[0].outcome == "sent"


def test_webhook_with_tampered_body_is_401(env: Env) -> None:
    """A signature over a different body does not verify: 401 and no inbound item."""
    env.use_telnyx()
    signed = _envelope("fax.received", {"fax_id": "fax-in-1"})
    payload = {"fax_id": "fax-in-1", "from": "+1", "to": CARRIER_NUMBER, "media_url": MEDIA_URL}
    body = _envelope("fax.received", payload)
    r = env.http.post("/v1/webhooks/telnyx", content=body, headers=env.signed_headers(signed))
    assert r.status_code == 401
    assert _count(env.c, InboundItem) == 0


def test_a_progress_webhook_is_answered_without_a_worker_thread_or_a_write(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Telnyx sends three progress events a fax (queued, media processed, sending): they
    change nothing, so the endpoint answers them on its event loop; a final one is recorded
    and its follow-ups enqueued in one hand-off to a worker thread."""
    import api.app as app_module

    _open_case(env)
    env.use_telnyx()
    (attempt,) = _attempts(env.c)
    hand_offs: list[str] = []
    real = app_module.run_in_threadpool

    async def counted(fn: Any, *args: Any) -> Any:
        hand_offs.append(getattr(args[1], "__name__", "") if len(args) > 1 else fn.__name__)
        return await real(fn, *args)

    monkeypatch.setattr(app_module, "run_in_threadpool", counted)
    for kind in ("fax.queued", "fax.media.processed", "fax.sending.started"):
        body = _envelope(kind, {"fax_id": attempt.external_id})
        r = env.http.post("/v1/webhooks/telnyx", content=body, headers=env.signed_headers(body))
        assert r.status_code == 200
    assert hand_offs == []
    assert _attempts(env.c)[0].outcome == "sent"
    body = _envelope("fax.delivered", {"fax_id": attempt.external_id})
    r = env.http.post("/v1/webhooks/telnyx", content=body, headers=env.signed_headers(body))
    assert r.status_code == 200
    assert hand_offs == ["record_fax_status"]
    assert _attempts(env.c)[0].outcome == "delivered"


def test_signed_fax_delivered_marks_attempt_delivered(env: Env) -> None:
    """A valid fax.delivered webhook for our fax id records the attempt as delivered."""
    _open_case(env)
    env.use_telnyx()
    (attempt,) = _attempts(env.c)
    assert attempt.external_id and attempt.external_id.startswith("fax-1-")
    body = _envelope("fax.delivered", {"fax_id": attempt.external_id})
    r = env.http.post("/v1/webhooks/telnyx", content=body, headers=env.signed_headers(body))
    assert r.status_code == 200
    (after,) = _attempts(env.c)
    assert after.outcome == "delivered"
    assert after.completed_at == at("2026-04-17T13:05:00+00:00")


def test_signed_fax_received_creates_one_inbound_item_when_posted_twice(env: Env) -> None:
    """A redelivered fax.received webhook is recognised: one InboundItem for the fax id."""
    _open_case(env)
    env.use_telnyx()
    with transaction(env.c.sessions) as s:
        reference = s.scalars(select(RecordRequest.reference)).one()
    env.media[MEDIA_URL] = generate_records_pdf(reference, "Example Orthopedics", "M1001", 2)
    payload = {
        "fax_id": "fax-in-1",
        "from": "+16175550101",
        "to": CARRIER_NUMBER,
        "media_url": MEDIA_URL,
        "page_count": 2,
    }
    for event_id in ("evt-a", "evt-b"):
        body = _envelope("fax.received", payload, event_id=event_id)
        r = env.http.post("/v1/webhooks/telnyx", content=body, headers=env.signed_headers(body))
        assert r.status_code == 200
    with transaction(env.c.sessions) as s:
        items = list(s.scalars(select(InboundItem)))
        assert [(i.source, i.external_id) for i in items] == [("fax", "fax-in-1")]
        assert items[0].payload["media_url"] == MEDIA_URL


# --- letter media ------------------------------------------------------------------------------


def test_media_with_right_token_returns_the_letter_pdf(env: Env) -> None:
    """The attempt's letter is served as a PDF quoting the request reference."""
    _open_case(env)
    (attempt,) = _attempts(env.c)
    with transaction(env.c.sessions) as s:
        reference = s.scalars(select(RecordRequest.reference)).one()
    r = env.http.get(f"/v1/media/{attempt.id}", params={"token": env.c.media_token(attempt.id)})
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/pdf"
    assert r.content.startswith(b"%PDF")
    assert reference in PdfReader(io.BytesIO(r.content)).pages[0].extract_text()


def test_media_with_wrong_token_is_404(env: Env) -> None:
    """A token for another attempt does not open this attempt's letter."""
    _open_case(env)
    (attempt,) = _attempts(env.c)
    r = env.http.get(f"/v1/media/{attempt.id}", params={"token": env.c.media_token("other")})
    assert r.status_code == 404
    assert b"%PDF" not in r.content


def test_a_withdrawn_case_s_letter_is_no_longer_handed_out(env: Env) -> None:
    """Once the case is cancelled, its letter's media URL answers 404: a fax still queued at
    the vendor fails at the fetch rather than reach the provider after the withdrawal."""
    case_id = _open_case(env)
    (attempt,) = _attempts(env.c)
    params = {"token": env.c.media_token(attempt.id)}
    assert env.http.get(f"/v1/media/{attempt.id}", params=params).status_code == 200
    assert env.intake.post(f"/v1/cases/{case_id}/cancel").status_code == 200
    r = env.http.get(f"/v1/media/{attempt.id}", params=params)
    assert r.status_code == 404 and b"%PDF" not in r.content


# --- ops views ---------------------------------------------------------------------------------


def test_dashboard_lists_the_open_case(env: Env) -> None:
    """GET /v1/cases shows the open case with its due instant and status counts."""
    case_id = _open_case(env)
    r = env.ops.get("/v1/cases")
    assert r.status_code == 200
    body = r.json()
    assert [row["case_id"] for row in body["active"]] == [case_id]
    row = body["active"][0]
    assert at(row["due_at"]) == at("2026-04-23T17:00:00-04:00")
    assert row["requests_open"] == 1
    assert body["counts"] == {"open": 1}


def test_case_detail_has_the_report_shape(env: Env) -> None:
    """GET /v1/cases/{id} returns one report case with its requests and attempts."""
    case_id = _open_case(env)
    r = env.ops.get(f"/v1/cases/{case_id}")
    assert r.status_code == 200
    body = r.json()
    assert body["case_id"] == case_id
    assert at(body["due_at"]) == at("2026-04-23T17:00:00-04:00")
    assert (body["status"], body["packet"], body["delivered_at"]) == ("open", None, None)
    (request,) = body["requests"]
    assert request["provider_id"] == "prov-1"
    assert [a["number"] for a in request["attempts"]] == [1]
    assert request["attempts"][0]["outcome"] == "sent"


def test_unknown_case_is_404(env: Env) -> None:
    """An id that names no case answers 404, not an empty report."""
    _open_case(env)
    assert env.ops.get("/v1/cases/" + "0" * 32).status_code == 404


def test_cancel_then_cancel_again_is_409(env: Env) -> None:
    """Cancelling an open case answers 200 and records the reason; a second cancel is 409."""
    case_id = _open_case(env)
    first = env.intake.post(f"/v1/cases/{case_id}/cancel", json={"reason": "insurer reversed"})
    assert first.status_code == 200
    assert first.json() == {"case_id": case_id, "status": "cancelled"}
    second = env.intake.post(f"/v1/cases/{case_id}/cancel")
    assert second.status_code == 409
    with transaction(env.c.sessions) as s:
        case = s.get(Case, case_id)
        assert case is not None and case.status == "cancelled"
        kinds = s.scalars(select(AuditEvent.detail).where(AuditEvent.kind == "case.cancelled"))
        assert list(kinds) == [{"reason": "insurer reversed"}]


def test_cancel_unknown_case_is_409(env: Env) -> None:
    """Cancelling an id that names no case is refused."""
    assert env.intake.post("/v1/cases/" + "0" * 32 + "/cancel").status_code == 409


# --- exports and metrics -----------------------------------------------------------------------


def test_attempts_csv_has_header_and_one_row_per_attempt(env: Env) -> None:
    """The CSV export has the documented header and one row for each attempt."""
    two = notification()["providers"] + [
        {
            "provider_id": "prov-2",
            "name": "Example Imaging",
            "npi": "1234567893",
            "role": "treating",
            "network": "in",
            "channels": [{"kind": "fax", "number": "+16175550102"}],
        }
    ]
    case_id = _open_case(env, providers=two)
    r = env.compliance.get("/v1/exports/attempts", params={"format": "csv"})
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/csv")
    lines = r.text.splitlines()
    assert lines[0].split(",") == EXPORT_FIELDS
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert len(rows) == len(_attempts(env.c)) == 2
    assert {(row["case_id"], row["provider_id"]) for row in rows} == {
        (case_id, "prov-1"),
        (case_id, "prov-2"),
    }


def test_attempts_export_in_xml_is_422(env: Env) -> None:
    """Only csv and json are offered; anything else is a 422."""
    r = env.compliance.get("/v1/exports/attempts", params={"format": "xml"})
    assert r.status_code == 422


def test_metrics_expose_case_counts(env: Env) -> None:
    """/metrics is Prometheus text with a goodfaith_cases gauge per status."""
    _open_case(env)
    r = env.http.get("/metrics")
    assert r.status_code == 200
    assert "# TYPE goodfaith_cases gauge" in r.text
    assert 'goodfaith_cases{status="open"} 1' in r.text.splitlines()


def test_cancel_with_a_body_that_is_not_a_json_object_is_a_client_error(tmp_path: Path) -> None:
    """A cancel body that is not a JSON object gets 422 and leaves the case open."""
    c, _clock, _fax, _d = make_container(tmp_path, START)
    try:
        client = api_client(c, "intake")
        case_id = client.post("/v1/notifications", json=notification()).json()["case_id"]
        for body in (b"not json", b"[1]", b'"x"'):
            assert client.post(f"/v1/cases/{case_id}/cancel", content=body).status_code == 422
        with transaction(c.sessions) as s:
            assert s.get(Case, case_id).status == "open"  # type: ignore[union-attr]
    finally:
        c.close()


def test_export_takes_the_notification_id_and_refuses_an_unknown_case(env: Env) -> None:
    """?case_id= takes the case id or the notification id; an unknown one is 404, not []."""
    case_id = _open_case(env)
    by_id = env.compliance.get("/v1/exports/attempts", params={"case_id": case_id}).json()
    by_nid = env.compliance.get("/v1/exports/attempts", params={"case_id": "OPP-2026-000123"})
    assert by_nid.json()["attempts"] == by_id["attempts"] and len(by_id["attempts"]) == 1
    missing = env.compliance.get("/v1/exports/attempts", params={"case_id": "OPP-404"})
    assert missing.status_code == 404
