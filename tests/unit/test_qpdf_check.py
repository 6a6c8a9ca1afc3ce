"""The qpdf check the test suite runs on every packet it builds (tests/conftest.py)."""

from __future__ import annotations

import io

import pikepdf

from tests.qpdf import qpdf_problems
from tests.unit.test_packet import ATTESTATION, COVER, _parts
from worker.packet import build_packet


def test_a_packet_passes_qpdf_check() -> None:
    """A packet of cover, EOC, records and attestation passes qpdf --check without warnings."""
    assert qpdf_problems(build_packet(COVER, _parts(), ATTESTATION).pdf) is None


def test_the_check_reports_a_damaged_file() -> None:
    """The check can fail: a PDF with a broken cross-reference table makes qpdf warn."""
    out = io.BytesIO()
    pdf = pikepdf.new()
    pdf.add_blank_page()
    pdf.save(out, object_stream_mode=pikepdf.ObjectStreamMode.disable)
    broken = out.getvalue().replace(b"startxref", b"startxref\n999999\n%", 1)
    problem = qpdf_problems(broken)
    assert problem is not None and "qpdf --check" in problem


def test_the_check_reports_garbage() -> None:
    """Bytes that are no PDF at all fail the check with qpdf's exit code."""
    problem = qpdf_problems(b"not a pdf at all")
    assert problem is not None and "exit 2" in problem
