"""No single part can stop a packet: a part that cannot be read, appended or stamped is left
out and named (cover, manifest ``excluded``); the packet is built from the rest."""

from __future__ import annotations

import hashlib
import io

import pytest
from pypdf import PdfReader

from simulator.documents import generate_eoc_pdf, generate_records_pdf
from tests.damage import damaged
from tests.unit.test_packet import COVER
from worker.packet import PacketError, PacketPart, build_packet

EOC = generate_eoc_pdf("PLAN-9", pages=2)
GOOD = generate_records_pdf("GF-AAAA0001", "Acme", "M1", 3)


def _part(title: str, data: bytes, document_id: str | None = None) -> PacketPart:
    sha = hashlib.sha256(data).hexdigest()
    return PacketPart("records", title, data, sha, "P-1", document_id)


def _unstampable() -> bytes:
    data = damaged(generate_records_pdf("GF-BBBB0002", "Beta", "M1", 2), "font-integer")
    assert data is not None
    return data


@pytest.mark.parametrize(
    ("poison", "step"), [(b"%PDF-1.4 nope", "unreadable"), (_unstampable(), "stamp")]
)
def test_a_poison_part_is_excluded_and_the_packet_goes_on(poison: bytes, step: str) -> None:
    """Given a good EOC and records around one part that fails (at read, or only when the whole
    packet is stamped), the packet holds the good parts; the bad one is named with its id,
    source hash and the failing step in the manifest and on the cover."""
    eoc = PacketPart("eoc", "Evidence of coverage", EOC, "0" * 64)
    parts = [eoc, _part("Records: Beta", poison, "doc-bad"), _part("Records: Acme", GOOD, "doc-ok")]
    built = build_packet(COVER, parts)
    [excluded] = built.manifest["excluded"]
    assert excluded == dict(built.excluded[0])
    assert excluded["document_id"] == "doc-bad"
    assert excluded["source_sha256"] == hashlib.sha256(poison).hexdigest()
    assert excluded["reason"].startswith(f"part 1 (records) {step}: ")
    assert [p["title"] for p in built.manifest["parts"]] == [
        "Evidence of coverage",
        "Records: Acme",
    ]
    reader = PdfReader(io.BytesIO(built.pdf))
    assert len(reader.pages) == built.pages
    cover = " ".join(reader.pages[0].extract_text().split())
    assert "Not included" in cover and "Records: Beta" in cover
    assert f"page {built.pages} of {built.pages}" in reader.pages[-1].extract_text()


def test_every_part_bad_still_gives_cover_and_attestation() -> None:
    """With nothing usable the packet is the cover (naming every exclusion) and attestation."""
    built = build_packet(COVER, [_part("a", b"junk"), _part("b", _unstampable())])
    assert len(built.manifest["excluded"]) == 2
    assert built.manifest["parts"] == []
    assert len(PdfReader(io.BytesIO(built.pdf)).pages) == built.pages


def test_a_clean_packet_excludes_nothing() -> None:
    """The manifest always carries the ``excluded`` list; empty when every part went in."""
    built = build_packet(COVER, [_part("Records: Acme", GOOD)])
    assert built.manifest["excluded"] == [] and not built.excluded


def test_unknown_kind_is_still_an_input_error() -> None:
    """PacketError stays for invalid inputs."""
    with pytest.raises(PacketError, match="unknown kind"):
        build_packet(COVER, [PacketPart("letter", "x", GOOD, "0" * 64)])
