"""Bounded work per document: limits from GOODFAITH_DOCUMENTS__*, checks in a child process
with resource limits; a document over a limit is quarantined naming it, the worker is freed."""

from __future__ import annotations

import io
import time
import zlib
from collections.abc import Sequence

import pikepdf
import pytest

from config.settings import DocumentSettings, Settings
from simulator.documents import generate_records_pdf
from worker.documents_check import DocumentChecker, Inspection, inspect_document

REF = "GF-AAAA0001"
RECORDS = generate_records_pdf(REF, "Acme", "M1", 6)


def _bomb(inflated: int) -> bytes:
    """A one-page PDF whose content stream is a few KB of Flate inflating to ``inflated`` bytes
    of whitespace (valid content, so only its decompressed size is wrong)."""
    pdf = pikepdf.new()
    pdf.add_blank_page(page_size=(612, 792))
    compressed = zlib.compress(b" " * inflated, 9)
    pdf.pages[0].obj.Contents = pikepdf.Stream(pdf, compressed, Filter=pikepdf.Name.FlateDecode)
    out = io.BytesIO()
    pdf.save(out, stream_decode_level=pikepdf.StreamDecodeLevel.none)
    return out.getvalue()


def hang(data: bytes, ct: str, pw: Sequence[str], limits: DocumentSettings) -> Inspection:
    """Test hook: a check that never finishes (a pathological file)."""
    while True:
        time.sleep(0.05)


def hog(data: bytes, ct: str, pw: Sequence[str], limits: DocumentSettings) -> Inspection:
    """Test hook: a check that needs more memory than the limit allows."""
    blob = bytearray(limits.max_memory_bytes + 2**29)
    raise AssertionError(f"allocated {len(blob)} bytes past RLIMIT_AS")


def test_limits_come_from_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """GOODFAITH_DOCUMENTS__* set the limits; defaults are sane without them."""
    monkeypatch.setenv("GOODFAITH_DOCUMENTS__MAX_PAGES", "12")
    monkeypatch.setenv("GOODFAITH_DOCUMENTS__MAX_STREAM_BYTES", "1024")
    monkeypatch.setenv("GOODFAITH_DOCUMENTS__MAX_SECONDS", "2.5")
    limits = Settings().documents
    assert (limits.max_pages, limits.max_stream_bytes, limits.max_seconds) == (12, 1024, 2.5)
    assert DocumentSettings().isolated and DocumentSettings().max_bytes == 200 * 2**20


@pytest.mark.parametrize("isolated", [True, False])
def test_a_good_document_is_accepted_with_its_reference(isolated: bool) -> None:
    """In the child process or in-process, the verdict is the same."""
    found = DocumentChecker(DocumentSettings(isolated=isolated)).inspect(RECORDS, "application/pdf")
    assert found.check.accepted and found.check.pages == 6 and found.reference == REF


@pytest.mark.parametrize(
    ("data", "limits", "reason"),
    [
        (_bomb(8 * 2**20), DocumentSettings(max_stream_bytes=2**20), "MAX_STREAM_BYTES"),
        (RECORDS, DocumentSettings(max_pages=5), "MAX_PAGES"),
        (RECORDS, DocumentSettings(max_bytes=1000), "MAX_BYTES"),
    ],
    ids=["decompression-bomb", "pages", "bytes"],
)
def test_a_document_over_a_limit_is_quarantined_naming_it(
    data: bytes, limits: DocumentSettings, reason: str
) -> None:
    """A stream inflating past max_stream_bytes, more pages than max_pages, more bytes than
    max_bytes: each is quarantined with a reason naming the setting, no document text."""
    check = DocumentChecker(limits).inspect(data, "application/pdf").check
    assert not check.accepted
    assert check.reason is not None and check.reason.endswith(f"(GOODFAITH_DOCUMENTS__{reason})")
    assert "Acme" not in check.reason


def test_the_bomb_is_small_and_accepted_under_a_larger_limit() -> None:
    """The same bomb under the default limit (it inflates to 8 MiB) is accepted: the limit,
    not the codec, decides."""
    bomb = _bomb(8 * 2**20)
    assert len(bomb) < 64 * 1024
    assert inspect_document(bomb, "application/pdf", (), DocumentSettings()).check.accepted


def test_a_check_that_hangs_is_killed_at_the_time_limit() -> None:
    """A check running past max_seconds is killed: the document is quarantined naming the
    limit and the caller gets its answer in about max_seconds."""
    checker = DocumentChecker(DocumentSettings(max_seconds=1.0), target=hang)
    start = time.monotonic()
    check = checker.inspect(RECORDS, "application/pdf").check
    elapsed = time.monotonic() - start
    assert not check.accepted
    assert check.reason == "check exceeded the time limit: 1 s (GOODFAITH_DOCUMENTS__MAX_SECONDS)"
    assert elapsed < 10
    # the worker is free: the next document is checked normally
    assert DocumentChecker(DocumentSettings()).inspect(RECORDS, "application/pdf").check.accepted


def test_a_check_over_the_memory_limit_is_quarantined() -> None:
    """A child that runs out of its address space quarantines the document naming the limit."""
    limits = DocumentSettings(max_memory_bytes=2**30)
    check = DocumentChecker(limits, target=hog).inspect(RECORDS, "application/pdf").check
    assert not check.accepted
    assert check.reason is not None and "MAX_MEMORY_BYTES" in check.reason
