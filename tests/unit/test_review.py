"""The ops review queue (worker/services/review.py, the API's /v1/review routes and
``goodfaith review``): flagged documents wait for a person; released ones are sent, rejected
ones never; at the deadline an unreviewed one is sent marked so; every decision is audited."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from pypdf import PdfReader
from sqlalchemy import select

from simulator.documents import generate_records_pdf
from storage.db import transaction
from storage.models import AuditEvent, Case, Document, RecordRequest
from tests.conftest import at, notification
from tests.fakes import api_client, fax_received, make_container, run_until
from worker import services
from worker.scheduler import tick
from worker.services.review import Decision, ReviewOutcome

START = at("2026-04-17T09:00:00-04:00")
SENDER = "+16175550101"


@pytest.fixture
def env(tmp_path: Path):  # type: ignore[no-untyped-def]
    c, clock, fax, deliverer = make_container(tmp_path, START)
    services.intake(c, notification())
    yield c, clock, fax, deliverer
    c.close()


def _receive_wrong_patient(c: Any, clock: Any, fax: Any) -> str:
    """Another patient's chart quoting our reference: it closes the request, flagged."""
    with transaction(c.sessions) as s:
        reference = s.scalars(select(RecordRequest)).one().reference
    fax.media["m1"] = generate_records_pdf(
        reference, "Example Orthopedics", "", 4, patient_name="John Smith", birth_date="1980-05-06"
    )
    c.dispatcher.enqueue(
        services.record_inbound_fax(c, fax_received("in-1", "m1", clock.now(), SENDER))
    )
    with transaction(c.sessions) as s:
        d = s.scalars(select(Document)).one()
        assert (d.flags, d.review_status) == (["wrong_patient"], "pending")
        return d.id


def _assemble_at(c: Any) -> Any:
    with transaction(c.sessions) as s:
        return s.scalars(select(Case)).one().assemble_at


def _audit(c: Any, kind: str) -> list[dict[str, Any]]:
    with transaction(c.sessions) as s:
        return [e.detail for e in s.scalars(select(AuditEvent).where(AuditEvent.kind == kind))]


def test_a_flagged_document_holds_the_packet_until_released(env) -> None:  # type: ignore[no-untyped-def]
    """Every request is closed but a flagged document waits: no packet; once a person
    releases it the packet goes at once, listing it as released (audited)."""
    c, clock, fax, deliverer = env
    doc_id = _receive_wrong_patient(c, clock, fax)
    clock.advance(3600)
    tick(c)
    assert deliverer.submissions == []
    [item] = services.review_queue(c)
    assert (item.document_id, item.flags, item.pages) == (doc_id, ["wrong_patient"], 4)
    assert services.review_document(c, doc_id, Decision.RELEASE, "ops-ann") is ReviewOutcome.DONE
    tick(c)
    [submission] = deliverer.submissions
    assert clock.now() < _assemble_at(c)  # went before the cutoff: nothing waited any more
    [part] = [p for p in submission.manifest["parts"] if p["kind"] == "records"]
    assert (part["flags"], part["unreviewed"]) == (["wrong_patient"], False)
    assert (
        "wrong patient, released"
        in PdfReader(io.BytesIO(submission.packet_pdf)).pages[0].extract_text()
    )
    [released] = _audit(c, "document.released")
    assert released == {"document_id": doc_id, "flags": ["wrong_patient"], "reviewer": "ops-ann"}
    assert services.review_queue(c) == []


def test_at_the_deadline_an_unreviewed_document_goes_marked_unreviewed(env) -> None:  # type: ignore[no-untyped-def]
    """Nobody decided before the assembly cutoff: the deadline comes first, the document is
    sent and the index says "unreviewed"."""
    c, clock, fax, deliverer = env
    _receive_wrong_patient(c, clock, fax)
    run_until(c, clock, at("2026-04-24T00:00:00-04:00"))
    [submission] = deliverer.submissions
    [part] = [p for p in submission.manifest["parts"] if p["kind"] == "records"]
    assert (part["pages"], part["unreviewed"]) == (4, True)
    text = PdfReader(io.BytesIO(submission.packet_pdf)).pages[0].extract_text()
    assert "wrong patient, unreviewed" in text
    assert _audit(c, "packet.waiting_review")


def test_a_rejected_document_is_never_sent(env) -> None:  # type: ignore[no-untyped-def]
    """Rejecting quarantines the document with the note; the packet goes without it."""
    c, clock, fax, deliverer = env
    doc_id = _receive_wrong_patient(c, clock, fax)
    outcome = services.review_document(c, doc_id, Decision.REJECT, "ops-bo", "another patient")
    assert outcome is ReviewOutcome.DONE
    tick(c)
    [submission] = deliverer.submissions
    assert not [p for p in submission.manifest["parts"] if p["kind"] == "records"]
    with transaction(c.sessions) as s:
        d = s.get(Document, doc_id)
        assert d is not None
        assert (d.status, d.review_status, d.reason) == (
            "quarantined",
            "rejected",
            "rejected in review: another patient",
        )
    assert services.review_document(c, doc_id, Decision.RELEASE, "x") is ReviewOutcome.NOT_PENDING
    assert services.review_document(c, "nope", Decision.RELEASE, "x") is ReviewOutcome.UNKNOWN


def test_review_api_lists_releases_and_rejects(env) -> None:  # type: ignore[no-untyped-def]
    """GET /v1/review lists flagged documents (no document text); POST release needs a
    reviewer (422), answers 404 for an unknown id and 409 once decided."""
    c, clock, fax, _ = env
    doc_id = _receive_wrong_patient(c, clock, fax)
    http = api_client(c, "ops")  # the review queue is ops'
    listed = http.get("/v1/review").json()
    assert listed["count"] == 1 and listed["documents"][0]["document_id"] == doc_id
    assert "John Smith" not in http.get("/v1/review").text
    assert http.post(f"/v1/review/{doc_id}/release", json={}).status_code == 422
    assert http.post("/v1/review/nope/release", json={"reviewer": "a"}).status_code == 404
    r = http.post(f"/v1/review/{doc_id}/release", json={"reviewer": "ops-ann", "note": "ok"})
    assert r.status_code == 200 and r.json() == {"document_id": doc_id, "status": "released"}
    assert http.post(f"/v1/review/{doc_id}/reject", json={"reviewer": "a"}).status_code == 409
    assert http.get("/v1/review").json()["count"] == 0


def test_cli_lists_the_review_queue(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`goodfaith review list` prints the documents waiting for review as JSON."""
    from config.settings import get_settings
    from worker.cli import main

    url = f"sqlite:///{tmp_path / 'cli.db'}"
    monkeypatch.setenv("GOODFAITH_DATABASE_URL", url)
    monkeypatch.setenv("GOODFAITH_OBJECT_STORE", f"file://{tmp_path / 'objects'}")
    get_settings.cache_clear()
    try:
        c, clock, fax, _ = make_container(tmp_path, START, url)
        services.intake(c, notification())
        doc_id = _receive_wrong_patient(c, clock, fax)
        c.close()
        result = CliRunner().invoke(main, ["review", "list"])
        assert result.exit_code == 0, result.output
        page = json.loads(result.output)
        assert page["count"] == 1
        assert page["documents"][0]["document_id"] == doc_id
        assert page["documents"][0]["flags"] == ["wrong_patient"]
    finally:
        get_settings.cache_clear()


def test_cli_packet_show_prints_the_index_and_get_writes_the_pdf(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`goodfaith packet show CASE` prints the index (page ranges and QA flags, matching the
    packet), `packet get CASE --out FILE` writes the PDF with its recorded SHA-256."""
    import hashlib

    from config.settings import get_settings
    from worker.cli import main

    url = f"sqlite:///{tmp_path / 'cli.db'}"
    monkeypatch.setenv("GOODFAITH_DATABASE_URL", url)
    monkeypatch.setenv("GOODFAITH_OBJECT_STORE", f"file://{tmp_path / 'objects'}")
    get_settings.cache_clear()
    try:
        c, clock, fax, deliverer = make_container(tmp_path, START, url)
        services.intake(c, notification())
        _receive_wrong_patient(c, clock, fax)
        run_until(c, clock, at("2026-04-24T00:00:00-04:00"))
        [submission] = deliverer.submissions
        with transaction(c.sessions) as s:
            case_id = s.scalars(select(Case)).one().id
        c.close()
        shown = CliRunner().invoke(main, ["packet", "show", case_id])
        assert shown.exit_code == 0, shown.output
        [records] = [p for p in submission.manifest["parts"] if p["kind"] == "records"]
        line = f"  {records['first_page']}-{records['last_page']}  records: {records['title']}"
        assert f"{line}  [wrong_patient, unreviewed]" in shown.output.splitlines()
        assert f"{submission.manifest['pages']} pages" in shown.output
        out = tmp_path / "packet.pdf"
        got = CliRunner().invoke(main, ["packet", "get", case_id, "--out", str(out)])
        assert got.exit_code == 0, got.output
        assert hashlib.sha256(out.read_bytes()).hexdigest() == submission.sha256
        missing = CliRunner().invoke(main, ["packet", "show", "no-such-case"])
        assert missing.exit_code != 0 and "no packet for case" in missing.output
    finally:
        get_settings.cache_clear()
