"""The cover, its contents and the attestation rendered to PNG by poppler (pdftoppm), and their
text read back (pdftotext): long names, long URLs and the legal sentence come out whole.

pdftoppm and pdftotext come from the OS package poppler-utils (.ci/run installs it)."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from PIL import Image

from config.jurisdictions import get_jurisdiction
from simulator.documents import generate_eoc_pdf, generate_records_pdf
from tests.conftest import IN_CI
from worker.packet import (
    AttemptLine,
    CoverInfo,
    PacketPart,
    ProviderAttestation,
    ReplyLine,
    build_packet,
)
from worker.packet.pages import LEGAL_SENTENCE

MA = get_jurisdiction("MA")
NOW = datetime(2026, 4, 16, 13, 0, tzinfo=UTC)
NAME = "Massachusetts General Brigham Orthopaedic Surgery Associates"  # 60 characters
URL = "https://fhir.partners-healthcare.example.org/api/fhir/r4/Task"  # 60 characters
VENDOR = "Commonwealth Medical Records Retrieval and Release Services LLC"


@pytest.fixture(scope="module")
def poppler() -> None:
    if shutil.which("pdftoppm") and shutil.which("pdftotext"):
        return
    if IN_CI:
        pytest.fail("CI needs poppler-utils (pdftoppm, pdftotext): see .ci/run")
    pytest.skip("poppler-utils not installed (apt-get install -y poppler-utils)")


def _packet(tmp_path: Path) -> tuple[Path, int, range]:
    cover = CoverInfo(
        case_id="CASE-RENDER-1",
        notification_id="OPP-2026-000777",
        agency_name="Commonwealth External Review Agency for Health Insurance Appeals",
        jurisdiction="MA",
        review_type="standard",
        insured_name="Jane Q. Sample",
        member_id="M00012345",
        due_at=NOW + timedelta(days=6),
        generated_at=NOW,
        carrier_name="Bay State Health Plan",
        citation=MA.citation,
        tz=MA.tz,
        responsible="Director, Appeals and Grievances",
        cutoff=NOW + timedelta(days=6, hours=-4),
    )
    records = generate_records_pdf("GF-AAAA0001", NAME, "M1", 2)
    eoc = generate_eoc_pdf("PPO-2026", pages=2)
    parts = [
        PacketPart("eoc", "Evidence of coverage", eoc, hashlib.sha256(eoc).hexdigest()),
        PacketPart(
            "records", f"Records from {NAME}", records, hashlib.sha256(records).hexdigest(), "P-1"
        ),
    ]
    attestation = [
        ProviderAttestation(
            NAME,
            "P-1",
            "fulfilled",
            [
                AttemptLine(1, NOW, "fax", "+16175550101", "failed", "initial", "busy", 3),
                AttemptLine(
                    2,
                    NOW + timedelta(hours=1),
                    "fhir",
                    URL,
                    "delivered",
                    "escalation",
                    designee=f"{VENDOR} (vendor-1)",
                ),
            ],
            designee=f"{VENDOR} (vendor-1)",
            replies=[ReplyLine(NOW + timedelta(hours=3), "records", "accepted", 2)],
            business_windows=3,
            attempts_before_cutoff=2,
            standard_met=True,
        )
    ]
    built = build_packet(cover, parts, attestation)
    path = tmp_path / "packet.pdf"
    path.write_bytes(built.pdf)
    pages = built.manifest["attestation_pages"]
    span = range(pages["first_page"], pages["last_page"] + 1)
    return path, built.manifest["cover_pages"]["last_page"], span


def _render(pdf: Path, page: int, out: Path) -> Image.Image:
    prefix = out / f"page-{page}"
    pages = ["-f", str(page), "-l", str(page)]
    subprocess.run(
        ["pdftoppm", "-png", "-r", "50", *pages, "-singlefile", str(pdf), str(prefix)],
        check=True,
        timeout=60,
    )
    return Image.open(f"{prefix}.png").convert("L")


def _text(pdf: Path, page: int) -> str:
    done = subprocess.run(
        ["pdftotext", "-f", str(page), "-l", str(page), str(pdf), "-"],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return done.stdout


def test_cover_index_and_attestation_render_with_every_word_whole(
    poppler: None, tmp_path: Path
) -> None:
    """pdftoppm renders the cover (with its contents) and the attestation to non-blank PNGs;
    pdftotext reads back the whole legal sentence, the 60-character provider name and the
    60-character FHIR URL (each URL on one line), and nothing is cut with an ellipsis."""
    pdf, cover_last, attestation_pages = _packet(tmp_path)
    for page in (1, attestation_pages[0]):
        image = _render(pdf, page, tmp_path)
        assert image.size[0] > 300 and image.size[1] > 400
        low, _high = image.getextrema()  # type: ignore[misc]
        assert low < 128, f"page {page} rendered blank"
    cover = _text(pdf, 1)
    attestation = "".join(_text(pdf, p) for p in attestation_pages)
    flat_cover, flat_attestation = " ".join(cover.split()), " ".join(attestation.split())

    assert f"Records from {NAME}" in flat_cover  # the contents (index) entry, wrapped not cut
    assert "Commonwealth External Review Agency for Health Insurance Appeals" in flat_cover
    assert "EDT (-04:00)" in flat_cover and "UTC" not in flat_cover
    assert cover_last == 1

    assert LEGAL_SENTENCE in flat_attestation
    assert NAME in attestation.splitlines()  # its own line, whole
    assert any(URL in line for line in attestation.splitlines())  # never split across lines
    assert f"{VENDOR} (vendor-1)" in flat_attestation
    assert "958 CMR 3.409" in flat_attestation
    assert "Responsible for this statement: Director, Appeals and Grievances" in flat_attestation
    assert "Failure reason: busy" in flat_attestation and "3 transmissions" in flat_attestation
    for text in (cover, attestation):
        assert "..." not in text and "\u2026" not in text
