"""Packet v1 assembly (worker/packet.py): order, page ranges, stamps, attestation, manifest."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import itertools
import json
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pikepdf
import pytest
from pypdf import PdfReader, PdfWriter
from pypdf.generic import RectangleObject

from config.jurisdictions import get_jurisdiction
from simulator.documents import (
    generate_authorization_pdf,
    generate_eoc_pdf,
    generate_records_pdf,
)
from worker.documents import check_document
from worker.packet import (
    AttemptLine,
    BuiltPacket,
    CoverInfo,
    PacketError,
    PacketPart,
    ProviderAttestation,
    ReplyLine,
    build_packet,
)
from worker.packet.stamps import stamped

NOW = datetime(2026, 3, 2, 14, 30, tzinfo=UTC)
MA, TX = get_jurisdiction("MA"), get_jurisdiction("TX")
COVER = CoverInfo(
    case_id="CASE-0001",
    notification_id="NOTIF-77",
    agency_name="Example External Review Agency",
    jurisdiction="MA",
    review_type="standard",
    insured_name="Jane Q. Sample",
    member_id="M00012345",
    due_at=NOW + timedelta(days=3),
    generated_at=NOW,
    carrier_name="Bay State Health Plan",
    citation=MA.citation,
    tz=MA.tz,
)
REFS = ("GF-AAAA0001", "GF-BBBB0002")


def _part(kind: str, title: str, data: bytes, provider_id: str | None = None) -> PacketPart:
    return PacketPart(kind, title, data, hashlib.sha256(data).hexdigest(), provider_id)


def _parts() -> list[PacketPart]:
    return [
        _part("eoc", "Evidence of coverage", generate_eoc_pdf("PLAN-9", pages=6)),
        _part("records", "Records: Acme", generate_records_pdf(REFS[0], "Acme", "M1", 4), "P-1"),
        _part("records", "Records: Beta", generate_records_pdf(REFS[1], "Beta", "M1", 3), "P-2"),
        _part("authorization", "Authorization", generate_authorization_pdf("M1", "Jane")),
    ]


ATTESTATION = (
    ProviderAttestation(
        "Acme Orthopedics",
        "P-1",
        "fulfilled",
        (
            AttemptLine(1, NOW, "fax", "+16175550101", "failed", "initial", "permanent: busy", 3),
            AttemptLine(
                2,
                NOW + timedelta(hours=4),
                "fhir",
                "https://fhir.acme.example",
                "delivered",
                "escalation",
                designee="Records Retrieval Co. (vendor-1)",
            ),
        ),
        designee="Records Retrieval Co. (vendor-1)",
        replies=(
            ReplyLine(NOW + timedelta(hours=5), "records", "quarantined", 0, "unreadable: X"),
            ReplyLine(NOW + timedelta(hours=6), "records", "accepted", 4),
        ),
        business_windows=3,
        attempts_before_cutoff=2,
        standard_met=True,
    ),
    ProviderAttestation(
        "Beta Imaging",
        "P-2",
        "exhausted",
        tuple(
            AttemptLine(n, NOW + timedelta(days=n), "fax", "+16175550102", "delivered", "follow_up")
            for n in (1, 2, 3)
        ),
        business_windows=2,
        attempts_before_cutoff=2,
        standard_met=False,
    ),
)


@pytest.fixture(scope="module")
def packet() -> BuiltPacket:
    return build_packet(COVER, _parts(), ATTESTATION)


@pytest.fixture(scope="module")
def reader(packet: BuiltPacket) -> PdfReader:
    return PdfReader(io.BytesIO(packet.pdf))


def _flat(text: str) -> str:
    return " ".join(text.split())


def test_page_count_is_cover_plus_parts_plus_attestation(
    packet: BuiltPacket, reader: PdfReader
) -> None:
    """pages = 1 cover + 6 + 4 + 3 + 1 part pages + 1 attestation page, and the PDF agrees."""
    assert packet.pages == 1 + 6 + 4 + 3 + 1 + 1
    assert len(reader.pages) == packet.pages
    assert packet.manifest["pages"] == packet.pages


def test_sha256_is_of_the_output(packet: BuiltPacket) -> None:
    """sha256 and the manifest's packet_sha256 are the SHA-256 of the PDF bytes."""
    digest = hashlib.sha256(packet.pdf).hexdigest()
    assert packet.sha256 == digest == packet.manifest["packet_sha256"]


def test_every_page_is_stamped_with_case_and_page_number(
    packet: BuiltPacket, reader: PdfReader
) -> None:
    """Each page's text carries "<case_id> · page N of M" with its own N."""
    for number, page in enumerate(reader.pages, start=1):
        assert f"CASE-0001 \u00b7 page {number} of {packet.pages}" in page.extract_text()


def test_cover_names_case_insured_agency_and_due_time(reader: PdfReader) -> None:
    """The cover prints the case, insured, member, agency, carrier and due time."""
    text = _flat(reader.pages[0].extract_text())
    for expected in (
        "CASE-0001",
        "NOTIF-77",
        "Jane Q. Sample",
        "M00012345",
        "Example External Review Agency",
        "Bay State Health Plan",
        "Due: 2026-03-05 09:30 EST (-05:00)",
        "Generated: 2026-03-02 09:30 EST (-05:00)",
        "Rule: 958 CMR 3.409",
        "standard",
    ):
        assert expected in text, expected


def test_cover_contents_list_page_ranges(reader: PdfReader) -> None:
    """The cover's contents give each part's page range and the attestation's."""
    text = _flat(reader.pages[0].extract_text())
    for expected in (
        "Evidence of coverage eoc 2-7",
        "Records: Acme records 8-11",
        "Records: Beta records 12-14",
        "Authorization authorization 15",
        "Good-faith attestation attestation 16",
    ):
        assert expected in text, expected


def test_manifest_ranges_point_at_the_right_pages(packet: BuiltPacket, reader: PdfReader) -> None:
    """Each records part's first_page is its fax cover (with its reference) and ranges tile the
    body without gaps."""
    parts = packet.manifest["parts"]
    assert [p["kind"] for p in parts] == ["eoc", "records", "records", "authorization"]
    assert parts[0]["first_page"] == packet.manifest["cover_pages"]["last_page"] + 1
    for before, after in itertools.pairwise(parts):
        assert after["first_page"] == before["last_page"] + 1
    for part in parts:
        assert part["pages"] == part["last_page"] - part["first_page"] + 1
    assert packet.manifest["attestation_pages"]["first_page"] == parts[-1]["last_page"] + 1
    for part, ref in zip(parts[1:3], REFS, strict=True):
        assert ref in reader.pages[part["first_page"] - 1].extract_text()
        assert ref not in reader.pages[part["first_page"] - 2].extract_text()


def test_manifest_records_sources_and_is_json(packet: BuiltPacket) -> None:
    """The manifest is JSON-able and carries each part's provider id and source hash."""
    manifest = json.loads(json.dumps(packet.manifest))
    parts = _parts()
    assert [p["source_sha256"] for p in manifest["parts"]] == [p.source_sha256 for p in parts]
    assert [p["provider_id"] for p in manifest["parts"]] == [None, "P-1", "P-2", None]
    assert manifest["case_id"] == "CASE-0001"
    assert manifest["notification_id"] == "NOTIF-77"
    assert (manifest["supplemental"], manifest["sequence"]) == (False, 1)
    assert manifest["generated_at"] == NOW.isoformat()


def test_attestation_lists_every_attempt(reader: PdfReader) -> None:
    """The last page lists each provider, its request status and every attempt's details."""
    text = _flat(reader.pages[-1].extract_text())
    for expected in (
        "Good-faith efforts to obtain medical records",
        "Acme Orthopedics Provider id P-1 Designee: Records Retrieval Co. (vendor-1)",
        "Request status: fulfilled; documented attempts: 2",
        "Records duty under 958 CMR 3.409",
        "Statement generated 2026-03-02 09:30 EST (-05:00).",
        "Attempt 1: 2026-03-02 09:30 EST (-05:00); fax to provider; initial; outcome failed; "
        "3 transmissions Destination: +16175550101 Failure reason: permanent: busy",
        "Attempt 2: 2026-03-02 13:30 EST (-05:00); fhir to designee Records Retrieval Co. "
        "(vendor-1); escalation; outcome delivered; 1 transmission "
        "Destination: https://fhir.acme.example",
        "Replies received: 2026-03-02 14:30 EST (-05:00): records; quarantined (unreadable: X) "
        "2026-03-02 15:30 EST (-05:00): records, 4 pages; accepted",
        "Three-attempt standard: met (records or a no-records statement obtained; "
        "2 of 3 required attempts made before the cutoff).",
        "The outreach window allowed 3 business windows.",
        "Beta Imaging Provider id P-2",
        "Request status: exhausted; documented attempts: 3",
        "Three-attempt standard: NOT met (2 of 3 required attempts made before the cutoff).",
        "The outreach window allowed 2 business windows (fewer than the attempts required).",
        "Attempt 3: 2026-03-05 09:30 EST (-05:00); fax to provider; follow_up; "
        "outcome delivered; 1 transmission Destination: +16175550102",
    ):
        assert expected in text, expected


def test_texas_packet_cites_texas_law_in_central_time() -> None:
    """A TX case's cover and attestation cite the Texas rule, never Massachusetts', and print
    every instant in Central time with its offset; none is printed in UTC."""
    cover = dataclasses.replace(COVER, jurisdiction="TX", citation=TX.citation, tz=TX.tz)
    reader = PdfReader(io.BytesIO(build_packet(cover, _parts()[:1], ATTESTATION).pdf))
    first, last = _flat(reader.pages[0].extract_text()), _flat(reader.pages[-1].extract_text())
    for expected in (
        "Rule: Tex. Ins. Code 4201.402",
        "Due: 2026-03-05 08:30 CST (-06:00)",
        "Generated: 2026-03-02 08:30 CST (-06:00)",
    ):
        assert expected in first, expected
    for expected in (
        "Records duty under Tex. Ins. Code 4201.402",
        "Statement generated 2026-03-02 08:30 CST (-06:00).",
        "Attempt 1: 2026-03-02 08:30 CST (-06:00); fax",
        "Attempt 2: 2026-03-02 12:30 CST (-06:00); fhir",
    ):
        assert expected in last, expected
    for text in (first, last):
        assert "958 CMR" not in text and "+00:00" not in text and "UTC" not in text


def test_offsets_follow_daylight_saving_time() -> None:
    """Instants either side of the March DST change print EST/CST and then EDT/CDT."""
    generated = datetime(2026, 3, 6, 15, 0, tzinfo=UTC)  # before Sun 8 Mar 2026
    due = datetime(2026, 3, 10, 21, 0, tzinfo=UTC)  # after it
    for zone, before, after in (
        (MA.tz, "2026-03-06 10:00 EST (-05:00)", "2026-03-10 17:00 EDT (-04:00)"),
        (TX.tz, "2026-03-06 09:00 CST (-06:00)", "2026-03-10 16:00 CDT (-05:00)"),
    ):
        cover = dataclasses.replace(COVER, generated_at=generated, due_at=due, tz=zone)
        built = build_packet(cover, _parts()[:1])
        text = _flat(PdfReader(io.BytesIO(built.pdf)).pages[0].extract_text())
        assert f"Due: {after}" in text and f"Generated: {before}" in text
        assert built.manifest["generated_at"] == generated.isoformat()  # the manifest stays UTC


def test_any_zone_prints_its_own_offset() -> None:
    """A zone without DST and with a half-hour offset prints that offset."""
    cover = dataclasses.replace(COVER, tz=ZoneInfo("Asia/Kolkata"))
    text = _flat(
        PdfReader(io.BytesIO(build_packet(cover, _parts()[:1]).pdf)).pages[0].extract_text()
    )
    assert "Generated: 2026-03-02 20:00 IST (+05:30)" in text


def test_attestation_without_providers_says_so() -> None:
    """With no provider requests the attestation page still exists and says none were needed."""
    built = build_packet(COVER, _parts()[:1])
    assert built.pages == 1 + 6 + 1
    last = PdfReader(io.BytesIO(built.pdf)).pages[-1].extract_text()
    assert "No provider requests were needed" in last


def test_long_attestation_spans_pages_and_ranges_follow() -> None:
    """Many attempts push the attestation onto several pages; the count and manifest follow."""
    many = tuple(
        ProviderAttestation(
            f"Provider {i}",
            f"P-{i}",
            "exhausted",
            tuple(
                AttemptLine(n, NOW, "fax", "+16175550100", "failed", "initial") for n in (1, 2, 3)
            ),
        )
        for i in range(40)
    )
    built = build_packet(COVER, _parts()[:1], many)
    attestation = built.manifest["attestation_pages"]
    assert attestation["last_page"] - attestation["first_page"] + 1 > 1
    assert len(PdfReader(io.BytesIO(built.pdf)).pages) == built.pages == attestation["last_page"]


def test_many_parts_make_a_longer_cover_and_ranges_still_match() -> None:
    """A contents list longer than one page shifts every range; ranges still hit their pages."""
    parts = [
        _part("records", f"Records {i}", generate_records_pdf(f"GF-{i:08d}", "X", "M", 1), f"P{i}")
        for i in range(70)
    ]
    built = build_packet(COVER, parts)
    reader = PdfReader(io.BytesIO(built.pdf))
    cover_last = built.manifest["cover_pages"]["last_page"]
    assert cover_last >= 2
    assert len(reader.pages) == built.pages == cover_last + 70 + 1
    for index in (0, 35, 69):
        entry = built.manifest["parts"][index]
        assert f"GF-{index:08d}" in reader.pages[entry["first_page"] - 1].extract_text()


def test_supplemental_packet_is_marked() -> None:
    """A supplemental packet says so on the cover and in the manifest, with its sequence."""
    cover = dataclasses.replace(COVER, supplemental=True, sequence=2)
    built = build_packet(cover, _parts()[1:2])
    text = _flat(PdfReader(io.BytesIO(built.pdf)).pages[0].extract_text())
    assert "Supplemental records packet" in text
    assert "supplemental, sequence 2" in text
    assert (built.manifest["supplemental"], built.manifest["sequence"]) == (True, 2)


def test_same_inputs_give_same_page_count() -> None:
    """Building twice from the same inputs gives the same page count and manifest ranges."""
    first, second = (
        build_packet(COVER, _parts(), ATTESTATION),
        build_packet(COVER, _parts(), ATTESTATION),
    )
    assert first.pages == second.pages
    assert first.manifest["parts"] == second.manifest["parts"]


def _odd_page(rotate: int, box: tuple[float, float, float, float]) -> bytes:
    writer = PdfWriter()
    page = writer.add_blank_page(width=box[2] - box[0], height=box[3] - box[1])
    page.mediabox = RectangleObject(box)
    page.rotate(rotate)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


@pytest.mark.parametrize("rotate", [0, 90, 180, 270])
def test_stamp_sits_at_the_visible_bottom_of_rotated_and_offset_pages(rotate: int) -> None:
    """The stamp is drawn inside the page box, along the edge that is the bottom once /Rotate
    is applied, also when the box does not start at the origin."""
    box = (100.0, 200.0, 712.0, 992.0)  # 612 x 792 at an offset
    built = build_packet(COVER, [_part("records", "odd", _odd_page(rotate, box))])
    page = PdfReader(io.BytesIO(built.pdf)).pages[1]
    seen: list[tuple[float, float]] = []

    def visit(text: str, cm: list[float], tm: list[float], *_: object) -> None:
        if "page 2 of" in text:
            # user-space origin of the text: tm's translation mapped through cm
            x = tm[4] * cm[0] + tm[5] * cm[2] + cm[4]
            y = tm[4] * cm[1] + tm[5] * cm[3] + cm[5]
            seen.append((x, y))

    page.extract_text(visitor_text=visit)
    assert len(seen) == 1
    x, y = seen[0]
    x0, y0, x1, y1 = box
    assert x0 <= x <= x1 and y0 <= y <= y1
    near = 40.0
    bottom_edge = {0: abs(y - y0), 90: abs(x - x1), 180: abs(y - y1), 270: abs(x - x0)}[rotate]
    assert bottom_edge < near


def _undecodable_content() -> bytes:
    pdf = pikepdf.new()
    pdf.add_blank_page(page_size=(612, 792))
    pdf.pages[0].obj.Contents = pikepdf.Stream(
        pdf, b"\x97JB2\x00garbage", Filter=pikepdf.Name.JBIG2Decode
    )
    out = io.BytesIO()
    pdf.save(out)
    return out.getvalue()


def test_pages_with_undecodable_content_are_stamped_without_decoding() -> None:
    """A page whose content stream cannot be decoded (JBIG2 data, like the corpus bomb) is
    still stamped: the stamp never parses the original content. (Such a page never reaches a
    packet: intake quarantines it, below, because qpdf --check would fail on the packet.)"""
    merged = io.BytesIO(_undecodable_content())
    reader = PdfReader(io.BytesIO(stamped(merged, "GF-TEST")))
    contents: Any = reader.pages[0]["/Contents"]
    assert len(contents) == 3  # q, the original stream untouched, the stamp
    assert b"(GF-TEST \xb7 page 1 of 1) Tj" in contents[2].get_object().get_data()


def test_undecodable_content_is_quarantined_at_intake() -> None:
    """What qpdf --check would report in a packet is found at intake (the same check, run on
    the document alone): the JBIG2 content stream is quarantined, naming the page."""
    check = check_document(_undecodable_content())
    assert not check.accepted
    assert check.reason == (
        "unpackable: qpdf check: page 1: content stream is encoded with an image codec"
    )


def test_unreadable_part_is_excluded_and_named() -> None:
    """A part pypdf cannot read no longer stops the packet (issue "Deadline guarantee"): it is
    left out and named by index and kind in the manifest, never by a pypdf message."""
    built = build_packet(COVER, [_parts()[0], _part("records", "bad", b"%PDF-1.4 nope")])
    [excluded] = built.manifest["excluded"]
    assert excluded["reason"].startswith("part 1 (records) unreadable: ")
    assert [p["kind"] for p in built.manifest["parts"]] == ["eoc"]


def test_unknown_part_kind_raises_packet_error() -> None:
    """Only eoc, records and authorization parts are allowed."""
    with pytest.raises(PacketError, match="unknown kind"):
        build_packet(COVER, [_part("letter", "x", generate_eoc_pdf("P", 1))])


def test_bookmarks_name_each_section_and_document_at_its_first_page(
    packet: BuiltPacket, reader: PdfReader
) -> None:
    """The outline has the cover, a section per kind of part with one bookmark per document
    (at the page the manifest gives), and the attestation."""
    outline: Any = reader.outline
    top = [item for item in outline if not isinstance(item, list)]
    children = [item for item in outline if isinstance(item, list)]
    names = [item.title for item in top]
    assert names == [
        "Cover and index",
        "Evidence of coverage",
        "Providers' records",
        "Carrier's records",
        "Good-faith attestation",
    ]
    documents = {
        item.title: reader.get_destination_page_number(item) + 1 for c in children for item in c
    }
    for part in packet.manifest["parts"]:
        assert documents[part["title"]] == part["first_page"]
    attestation = packet.manifest["attestation_pages"]["first_page"]
    assert reader.get_destination_page_number(top[-1]) + 1 == attestation


def test_packet_carries_no_javascript_or_embedded_files() -> None:
    """A part's document-level JavaScript, embedded files and open action stay out of the
    packet: only its pages are copied."""
    pdf = pikepdf.open(io.BytesIO(generate_records_pdf(REFS[0], "Acme", "M1", 2)))
    script = pdf.make_indirect(
        pikepdf.Dictionary(S=pikepdf.Name.JavaScript, JS=pikepdf.String("app.alert(1)"))
    )
    pdf.Root.OpenAction = script
    pdf.Root.Names = pikepdf.Dictionary(
        JavaScript=pikepdf.Dictionary(Names=pikepdf.Array([pikepdf.String("a"), script]))
    )
    pdf.attachments["note.txt"] = pikepdf.AttachedFileSpec(pdf, b"hidden")
    out = io.BytesIO()
    pdf.save(out)
    built = build_packet(COVER, [_part("records", "scripted", out.getvalue(), "P-1")])
    with pikepdf.open(io.BytesIO(built.pdf)) as result:
        assert "/OpenAction" not in result.Root and "/Names" not in result.Root
        assert len(result.attachments) == 0
    assert b"/JavaScript" not in built.pdf and b"app.alert" not in built.pdf


def _filled_form(value: str) -> bytes:
    from reportlab.pdfgen.canvas import Canvas

    out = io.BytesIO()
    canvas = Canvas(out, pagesize=(612, 792))
    canvas.drawString(72, 720, "Patient intake form")
    canvas.acroForm.textfield(
        name="patient", value=value, x=72, y=600, width=300, height=24, borderWidth=0
    )
    canvas.showPage()
    canvas.save()
    return out.getvalue()


def test_forms_are_flattened_into_the_page() -> None:
    """A filled form field is drawn into its page (its appearance) and no widget, no form
    catalog is left: the reviewer sees the value and nothing can be edited."""
    source = _filled_form("Jane Roe 1961-04-12")
    with pikepdf.open(io.BytesIO(source)) as original:
        assert any(a.Subtype == pikepdf.Name.Widget for a in original.pages[0].Annots)
    built = build_packet(COVER, [_part("records", "form", source, "P-1")])
    with pikepdf.open(io.BytesIO(built.pdf)) as result:
        page = result.pages[1]
        annots = page.obj.get("/Annots", pikepdf.Array())
        assert not [a for a in annots if a.get("/Subtype") == pikepdf.Name.Widget]
        assert "/AcroForm" not in result.Root
    text = PdfReader(io.BytesIO(built.pdf)).pages[1].extract_text()
    assert "Jane Roe 1961-04-12" in text and "Patient intake form" in text
