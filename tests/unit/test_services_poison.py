"""Through the real service path: one document that breaks assembly (it got past intake's
normalization) is left out of the packet, and the case is still assembled and delivered."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from simulator.documents import generate_records_pdf
from storage.db import transaction
from storage.models import AuditEvent, Case, Document
from storage.objects import content_key
from tests.conftest import at, notification
from tests.damage import damaged
from tests.fakes import fax_received, make_container, run_until
from tests.unit.test_services import START, _request
from worker import services


@pytest.mark.parametrize("poison", ["unreadable", "unstampable"])
def test_poison_document_is_excluded_and_the_case_still_delivered(
    tmp_path: Path, poison: str
) -> None:
    """Given accepted records whose usable copy is then replaced by bytes that fail assembly,
    when the packet is assembled, then it is delivered without them, the manifest and the
    audit trail name the document and its reason, the document is quarantined and the case
    is flagged for ops."""
    c, clock, fax, deliverer = make_container(tmp_path, START)
    try:
        services.intake(c, notification())
        r = _request(c)
        clock.advance(3600)
        fax.media["m1"] = generate_records_pdf(r.reference, "Example Orthopedics", "M1001", 3)
        [ingest] = services.record_inbound_fax(
            c, fax_received("in-1", "m1", clock.now(), "+16175550199")
        )
        follow = services.run_command(c, ingest)  # accepted; the packet is not built yet
        bad = (
            b"%PDF-1.4 nope"
            if poison == "unreadable"
            else damaged(generate_records_pdf(r.reference, "X", "M1001", 2), "font-integer")
        )
        assert bad is not None
        with transaction(c.sessions) as s:
            doc = s.scalars(select(Document)).one()
            assert doc.status == "accepted"
            doc.usable_uri = c.store.put(content_key(r.case_id, "usable", bad, "pdf"), bad)
            doc_id, doc_sha = doc.id, doc.sha256
        c.dispatcher.enqueue(follow)
        run_until(c, clock, at("2026-04-24T00:00:00-04:00"))

        assert len(deliverer.submissions) == 1
        manifest = deliverer.submissions[0].manifest
        [excluded] = manifest["excluded"]
        assert (excluded["document_id"], excluded["source_sha256"]) == (doc_id, doc_sha)
        assert excluded["reason"].startswith("part 1 (records) ")
        assert [p["kind"] for p in manifest["parts"]] == ["eoc"]
        with transaction(c.sessions) as s:
            case = s.scalars(select(Case)).one()
            assert case.status == "delivered"
            assert "left out of packet 1" in (case.attention or "")
            doc = s.get(Document, doc_id)
            assert doc is not None and doc.status == "quarantined" and doc.packet_id is None
            assert (doc.reason or "").startswith("excluded from packet 1: part 1 (records) ")
            events = s.scalars(
                select(AuditEvent).where(AuditEvent.kind == "document.excluded")
            ).all()
            assert [e.detail["document_id"] for e in events] == [doc_id]
            assert events[0].detail["sha256"] == doc_sha
    finally:
        c.close()
