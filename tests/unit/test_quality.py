"""Quality flags at intake, end to end through the services (worker/services/quality.py):
duplicates stored once and left out of packets, cloned notes and another patient's chart
flagged, repaired documents flagged, and the report's document contract."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pikepdf
import pytest
from pypdf import PdfReader
from reportlab.pdfgen.canvas import Canvas
from sqlalchemy import select

from simulator.documents import generate_records_pdf
from storage.db import transaction
from storage.models import Document, RecordRequest
from tests.conftest import at, notification
from tests.fakes import fax_received, make_container, run_until
from worker import services
from worker.readmodels.report import build_report

START = at("2026-04-17T09:00:00-04:00")
SENDER = "+16175550101"  # the provider's fax number: replies match its open request


@pytest.fixture
def env(tmp_path: Path):  # type: ignore[no-untyped-def]
    c, clock, fax, deliverer = make_container(tmp_path, START)
    services.intake(c, notification())
    yield c, clock, fax, deliverer
    c.close()


def _reference(c: Any) -> str:
    with transaction(c.sessions) as s:
        return s.scalars(select(RecordRequest)).one().reference


def _receive(c: Any, clock: Any, fax: Any, fax_id: str, data: bytes) -> None:
    fax.media[fax_id] = data
    c.dispatcher.enqueue(
        services.record_inbound_fax(c, fax_received(fax_id, fax_id, clock.now(), SENDER))
    )


def _docs(c: Any) -> dict[str, Document]:
    with transaction(c.sessions) as s:
        return {d.external_id: d for d in s.scalars(select(Document))}


def _deliver(c: Any, clock: Any) -> None:
    run_until(c, clock, at("2026-04-24T00:00:00-04:00"))


def _records(
    reference: str, pages: int = 5, name: str = "Jane Roe", dob: str = "1971-02-03"
) -> bytes:
    return generate_records_pdf(
        reference, "Example Orthopedics", "", pages, patient_name=name, birth_date=dob
    )


def _cloned_notes(reference: str) -> bytes:
    """Three visits; the third note is the second's text word for word under a new date."""
    body = [
        f"Line {k}: patient reports lumbar pain, gait antalgic, strength intact, plan unchanged "
        f"after therapy session number {k} with home exercise reviewed."
        for k in range(12)
    ]
    other = [
        f"Line {k}: initial consult, imaging ordered, risks discussed {k * 7}." for k in range(12)
    ]
    out = io.BytesIO()
    canvas = Canvas(out, invariant=True)
    for date, lines in (("2026-01-05", other), ("2026-02-02", body), ("2026-03-02", body)):
        canvas.drawString(72, 760, f"Re: {reference}   Patient: Jane Roe   DOB: 02/03/1971")
        canvas.drawString(72, 740, f"Date of service: {date}")
        for row, line in enumerate(lines):
            canvas.drawString(72, 700 - 16 * row, line)
        canvas.showPage()
    canvas.save()
    return out.getvalue()


def test_the_same_fax_twice_is_stored_once_noted_and_sent_once(env) -> None:  # type: ignore[no-untyped-def]
    """A second fax with the same bytes is a document flagged duplicate (same raw object),
    and the packet holds the records once."""
    c, clock, fax, deliverer = env
    data = _records(_reference(c))
    _receive(c, clock, fax, "in-1", data)
    _receive(c, clock, fax, "in-2", data)
    docs = _docs(c)
    assert docs["in-1"].flags == [] and docs["in-2"].flags == ["duplicate"]
    assert docs["in-2"].qa is not None and docs["in-2"].qa["duplicate_of"] == docs["in-1"].id
    assert docs["in-2"].qa["duplicate_by"] == "sha256"
    assert docs["in-1"].uri == docs["in-2"].uri  # content-addressed: the bytes stored once
    _deliver(c, clock)
    parts = [p for p in deliverer.submissions[0].manifest["parts"] if p["kind"] == "records"]
    assert [p["pages"] for p in parts] == [5]


def test_the_same_records_in_other_bytes_are_a_duplicate_by_text(env) -> None:  # type: ignore[no-untyped-def]
    """The same pages re-sent as a different file (another producer's bytes) are noted as a
    duplicate by their text."""
    c, clock, fax, deliverer = env
    data = _records(_reference(c))
    _receive(c, clock, fax, "in-1", data)
    _receive(c, clock, fax, "in-2", _resaved(data))
    second = _docs(c)["in-2"]
    assert second.flags == ["duplicate"] and second.qa is not None
    assert second.qa["duplicate_by"] == "text"
    _deliver(c, clock)
    parts = [p for p in deliverer.submissions[0].manifest["parts"] if p["kind"] == "records"]
    assert len(parts) == 1


@pytest.mark.parametrize("stored_by", ["pdfium", "pypdf", None])
def test_signatures_compare_only_with_those_read_by_the_same_library(env, stored_by) -> None:  # type: ignore[no-untyped-def]
    """Signatures record which library read their text; a document stored with another's
    (pypdf, or nothing recorded: every document taken in before PDFium read the text) is
    not compared by text, since two libraries' texts of one page differ too much to say
    "duplicate". The same bytes are still a duplicate by SHA-256."""
    c, clock, fax, _ = env
    data = _records(_reference(c))
    other = _resaved(data)
    _receive(c, clock, fax, "in-1", data)
    first = _docs(c)["in-1"]
    assert first.qa is not None and first.qa["settings"]["text"] == "pdfium"
    with transaction(c.sessions) as s:
        stored = s.get(Document, first.id)
        assert stored is not None and stored.qa is not None
        qa = {**stored.qa, "settings": dict(stored.qa["settings"])}
        if stored_by is None:
            del qa["settings"]["text"]
        else:
            qa["settings"]["text"] = stored_by
        stored.qa = qa
    _receive(c, clock, fax, "in-2", other)
    _receive(c, clock, fax, "in-3", data)
    docs = _docs(c)
    assert docs["in-2"].flags == (["duplicate"] if stored_by == "pdfium" else [])
    assert docs["in-3"].flags == ["duplicate"] and docs["in-3"].qa is not None
    assert docs["in-3"].qa["duplicate_by"] == "sha256"


def _resaved(data: bytes) -> bytes:
    """The same pages as another producer's bytes."""
    with pikepdf.open(io.BytesIO(data)) as pdf:
        out = io.BytesIO()
        pdf.docinfo["/Producer"] = "another fax server"
        pdf.save(out, object_stream_mode=pikepdf.ObjectStreamMode.generate)
    assert out.getvalue() != data
    return out.getvalue()


def test_cloned_notes_are_flagged_and_still_sent_marked_unreviewed(env) -> None:  # type: ignore[no-untyped-def]
    """A note repeated under a later date of service is flagged cloned (pages named); it is
    never dropped: the packet holds it, its index line and manifest carry the flag."""
    c, clock, fax, deliverer = env
    _receive(c, clock, fax, "in-1", _cloned_notes(_reference(c)))
    doc = _docs(c)["in-1"]
    assert doc.flags == ["cloned"] and doc.qa is not None
    assert [(x["page"], x["other_page"]) for x in doc.qa["cloned_pages"]] == [(2, 3), (3, 2)]
    _deliver(c, clock)
    submission = deliverer.submissions[0]
    [part] = [p for p in submission.manifest["parts"] if p["kind"] == "records"]
    assert (part["pages"], part["flags"], part["unreviewed"]) == (3, ["cloned"], True)
    text = PdfReader(io.BytesIO(submission.packet_pdf)).pages[0].extract_text()
    assert "cloned, unreviewed" in text


def test_another_patients_chart_is_flagged_wrong_patient(env) -> None:  # type: ignore[no-untyped-def]
    """Records whose text never names the insured (name, birth date, member id) are flagged
    wrong_patient; the insured's own records are not."""
    c, clock, fax, _ = env
    reference = _reference(c)
    _receive(c, clock, fax, "in-1", _records(reference, 4, "John Smith", "1980-05-06"))
    _receive(c, clock, fax, "in-2", _records(reference, 3))
    docs = _docs(c)
    assert docs["in-1"].flags == ["wrong_patient"]
    assert docs["in-2"].flags == []


def test_a_repaired_document_is_flagged_repaired(env) -> None:  # type: ignore[no-untyped-def]
    """A file pypdf cannot read but qpdf repairs (its cross-reference table cut off) is
    accepted with the repaired flag."""
    c, clock, fax, _ = env
    data = _records(_reference(c), 3)
    broken = data[: data.rindex(b"xref")]  # no xref table, no trailer: qpdf rebuilds them
    _receive(c, clock, fax, "in-1", broken)
    doc = _docs(c)["in-1"]
    assert doc.status == "accepted", doc.reason
    assert "repaired" in (doc.flags or [])


def test_report_documents_carry_status_pages_reason_and_flags(env) -> None:  # type: ignore[no-untyped-def]
    """The report's contract: every document entry has status, flags (a list, empty when
    none), pages when accepted and reason when quarantined."""
    c, clock, fax, _ = env
    reference = _reference(c)
    _receive(c, clock, fax, "in-1", b"%PDF-1.4 nothing here")  # matched by its sender
    _receive(c, clock, fax, "in-2", _records(reference, 2))
    _receive(c, clock, fax, "in-3", _records(reference, 2))
    [case] = build_report(c)["cases"]
    entries = [d for r in case["requests"] for d in r["documents"]]
    assert [(d["status"], d["flags"]) for d in entries] == [
        ("quarantined", []),
        ("accepted", []),
        ("accepted", ["duplicate"]),
    ]
    for d in entries:
        assert isinstance(d["flags"], list)
        if d["status"] == "accepted":
            assert d["pages"] == 2
        else:
            assert d["reason"]


def test_a_white_scan_inside_a_reply_is_flagged_blank_pages_and_waits_for_review(env) -> None:  # type: ignore[no-untyped-def]
    """A reply whose third page is a scan of a white sheet (it draws an image, so it has
    content) is flagged blank_pages from its rendering, and waits in the review queue."""
    from PIL import Image

    c, clock, fax, _ = env
    white = io.BytesIO()
    Image.new("L", (1700, 2200), 255).save(white, "PDF", resolution=200)
    merged = pikepdf.Pdf.new()
    for part in (_records(_reference(c), 2), white.getvalue()):
        with pikepdf.open(io.BytesIO(part)) as src:
            merged.pages.extend(src.pages)
    out = io.BytesIO()
    merged.save(out)
    _receive(c, clock, fax, "in-1", out.getvalue())
    doc = _docs(c)["in-1"]
    assert doc.status == "accepted" and doc.flags == ["blank_pages"]
    assert doc.review_status == "pending"
