"""The unmatched inbox: an inbound fax with no reference from an unknown number waits there;
ops list it, open it and assign it (API and CLI, audited); assigned, it counts for its
request. Matching by reference and by a known sender still needs no one."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from sqlalchemy import select

from simulator.documents import generate_no_records_letter, generate_records_pdf
from storage.db import transaction
from storage.models import AuditEvent, Document, RecordRequest
from tests.conftest import at, notification
from tests.fakes import FakeFax, Recorded, api_client, fax_received, make_container
from worker import services
from worker.wiring import Container

START = at("2026-04-17T09:00:00-04:00")
STRANGER = "+19785550199"  # a number no open request uses


@dataclass
class Env:
    c: Container
    fax: FakeFax
    http: httpx.Client

    def request(self) -> RecordRequest:
        with transaction(self.c.sessions) as s:
            r = s.scalars(select(RecordRequest).order_by(RecordRequest.reference)).first()
            assert r is not None
            s.expunge(r)
            return r

    def inbound(self, fax_id: str, pdf: bytes, sender: str = STRANGER) -> None:
        self.fax.media[fax_id] = pdf
        event = fax_received(fax_id, fax_id, self.c.clock.now(), sender)
        self.c.dispatcher.enqueue(services.record_inbound_fax(self.c, event))

    def document(self, fax_id: str) -> Document:
        with transaction(self.c.sessions) as s:
            d = s.scalars(select(Document).where(Document.external_id == fax_id)).one()
            s.expunge(d)
            return d


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    c, _clock, fax, _deliverer = make_container(tmp_path, START)
    services.intake(c, notification())
    http = api_client(c, "ops")  # the inbox is ops' (issue 8's roles)
    try:
        yield Env(c, fax, http)
    finally:
        http.close()
        c.close()


def _unreferenced() -> bytes:
    """Records that quote no GF- reference (a provider's own cover sheet)."""
    return generate_records_pdf("see attached", "Example Orthopedics", "M1001", 3)


def test_matching_by_reference_and_by_sender_needs_no_one(env: Env) -> None:
    """A reply quoting our reference, and one from the number we faxed, both find their
    request: nothing waits in the inbox."""
    r = env.request()
    env.inbound("by-sender", _unreferenced(), sender=r.channels[0]["destination"])
    assert env.document("by-sender").request_id == r.id
    assert env.request().status == "fulfilled"
    # a later reply quoting the reference still finds its (now closed) request
    env.inbound("by-ref", generate_records_pdf(r.reference, "Example Orthopedics", "M1001", 2))
    assert env.document("by-ref").request_id == r.id
    assert env.http.get("/v1/inbox").json()["total"] == 0


def test_a_sender_with_two_open_requests_is_not_guessed(env: Env) -> None:
    """The same provider's number on two open requests for two members (two chases): an
    unreferenced reply from it waits in the inbox rather than being filed with either."""
    other = {"member_id": "M2002", "name": "John Doe", "birth_date": "1980-05-06"}
    services.intake(env.c, notification(notification_id="N-2", insured=other))
    with transaction(env.c.sessions) as s:
        numbers = {r.channels[0]["destination"] for r in s.scalars(select(RecordRequest))}
    (number,) = numbers
    env.inbound("ambiguous", _unreferenced(), sender=number)
    assert env.document("ambiguous").request_id is None
    assert env.http.get("/v1/inbox").json()["total"] == 1


def test_an_unmatched_fax_waits_in_the_inbox_and_can_be_opened(env: Env) -> None:
    """No reference, unknown sender: listed, its details and its bytes can be read; the
    request stays open."""
    pdf = _unreferenced()
    env.inbound("stray", pdf)
    page = env.http.get("/v1/inbox").json()
    assert page["total"] == 1
    (item,) = page["documents"]
    assert (item["sender"], item["pages"], item["status"]) == (STRANGER, 3, "quarantined")
    assert item["reason"].startswith("unmatched")
    assert env.http.get(f"/v1/inbox/{item['id']}").json()["id"] == item["id"]
    content = env.http.get(f"/v1/inbox/{item['id']}/content")
    assert content.headers["content-type"] == "application/pdf" and content.content == pdf
    assert env.http.get("/v1/inbox/nope").status_code == 404
    assert env.request().status == "open"


def test_assigning_by_reference_fulfils_the_request_and_is_audited(env: Env) -> None:
    """POST /v1/inbox/{id}/assign with the request's GF- reference: the document is accepted
    and filed with the request, the request is fulfilled (no further attempts), the packet
    follows, and the audit trail names who did it."""
    env.inbound("stray", _unreferenced())
    (item,) = env.http.get("/v1/inbox").json()["documents"]
    r = env.request()
    answer = env.http.post(
        f"/v1/inbox/{item['id']}/assign", json={"request": r.reference, "by": "ops-alice"}
    )
    assert answer.status_code == 200, answer.text
    d = env.document("stray")
    assert (d.request_id, d.case_id, d.status, d.reason) == (r.id, r.case_id, "accepted", None)
    assert env.request().status == "fulfilled"
    assert env.http.get("/v1/inbox").json()["total"] == 0
    with transaction(env.c.sessions) as s:
        (event,) = s.scalars(select(AuditEvent).where(AuditEvent.kind == "document.assigned"))
        assert event.case_id == r.case_id
        assert event.detail["by"] == "ops-alice" and event.detail["request_id"] == r.id
    again = env.http.post(f"/v1/inbox/{item['id']}/assign", json={"request": r.id, "by": "bob"})
    assert again.status_code == 409


def test_an_assigned_no_records_letter_closes_the_request_as_no_records(env: Env) -> None:
    """A written "no records" reply with no reference, assigned by request id, counts as the
    provider's written answer."""
    env.inbound("letter", generate_no_records_letter("no reference", "Example Orthopedics"))
    (item,) = env.http.get("/v1/inbox").json()["documents"]
    r = env.request()
    assert services.assign_document(env.c, item["id"], r.id, "ops-bob").value == "assigned"
    assert env.request().status == "no_records"


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"request": "GF-NOTHERE", "by": "ops"}, 404),
        ({"request": "", "by": "ops"}, 422),
        ({"request": "x"}, 422),
        ("not an object", 422),
    ],
)
def test_bad_assignments_are_refused(env: Env, body: Any, status: int) -> None:
    """An unknown request is 404, a body without request and by 422; nothing changes."""
    env.inbound("stray", _unreferenced())
    (item,) = env.http.get("/v1/inbox").json()["documents"]
    answer = env.http.post(f"/v1/inbox/{item['id']}/assign", json=body)
    assert answer.status_code == status
    assert env.document("stray").request_id is None
    assert (
        env.http.post("/v1/inbox/nope/assign", json={"request": "x", "by": "y"}).status_code == 404
    )


def test_cli_lists_shows_and_assigns(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`goodfaith inbox list | show ID --out F | assign ID REQUEST --by NAME` over the same
    database: the document is listed, saved, then filed with the request, whose closing
    commands are enqueued."""
    from config.settings import get_settings
    from worker import cli

    url = f"sqlite:///{tmp_path / 'cli.db'}"
    monkeypatch.setenv("GOODFAITH_DATABASE_URL", url)
    monkeypatch.setenv("GOODFAITH_OBJECT_STORE", f"file://{tmp_path / 'objects'}")
    recorded = Recorded()
    monkeypatch.setattr(cli, "_broker_dispatcher", lambda: recorded)
    get_settings.cache_clear()
    try:
        c, _clock, fax, _d = make_container(tmp_path, START, url)
        services.intake(c, notification())
        env = Env(c, fax, httpx.Client())
        pdf = _unreferenced()
        env.inbound("stray", pdf)
        reference = env.request().reference
        c.close()
        runner = CliRunner()
        listed = runner.invoke(cli.main, ["inbox", "list"])
        assert listed.exit_code == 0, listed.output
        (item,) = json.loads(listed.output)["documents"]
        out = tmp_path / "stray.pdf"
        shown = runner.invoke(cli.main, ["inbox", "show", item["id"], "--out", str(out)])
        assert shown.exit_code == 0, shown.output
        assert out.read_bytes() == pdf
        refused = runner.invoke(
            cli.main, ["inbox", "assign", item["id"], "GF-NOTHERE", "--by", "x"]
        )
        assert refused.exit_code != 0 and "GF-NOTHERE" in refused.output
        assigned = runner.invoke(
            cli.main, ["inbox", "assign", item["id"], reference, "--by", "ops-carol"]
        )
        assert assigned.exit_code == 0, assigned.output
        assert recorded.commands  # the request closed: what follows was enqueued
        assert json.loads(runner.invoke(cli.main, ["inbox", "list"]).output)["total"] == 0
    finally:
        get_settings.cache_clear()
