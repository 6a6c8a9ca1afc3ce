"""Bounded work per document: limits from GOODFAITH_DOCUMENTS__*, checks in a child process
with resource limits; a document over a limit is quarantined naming it, the worker is freed."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Sequence
from pathlib import Path

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


HANG = b"%PDF-hang"
CRASH = b"%PDF-crash"


def by_marker(data: bytes, ct: str, pw: Sequence[str], limits: DocumentSettings) -> Inspection:
    """Test hook: hangs on HANG, kills its process on CRASH, else the real check with the
    checking process's id as the reference (to see which process checked it)."""
    if data == HANG:
        hang(data, ct, pw, limits)
    if data == CRASH:
        os._exit(3)
    found = inspect_document(data, ct, pw, limits)
    return Inspection(found.check, reference=str(os.getpid()))


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


def test_one_checking_process_checks_document_after_document() -> None:
    """Isolated checks run in a child kept between documents, not a new process each."""
    checker = DocumentChecker(DocumentSettings(), target=by_marker)
    try:
        first = checker.inspect(RECORDS, "application/pdf")
        second = checker.inspect(RECORDS, "application/pdf")
    finally:
        checker.close()
    assert first.check.accepted and second.check.accepted
    assert first.reference == second.reference != str(os.getpid())


def test_a_hang_or_a_crash_costs_only_its_own_document() -> None:
    """A document that hangs its checking process is quarantined at the time limit while a
    document checked beside it meanwhile is accepted; a crash quarantines its document naming
    the exit code; neither process is used again, and the checker goes on checking."""
    checker = DocumentChecker(DocumentSettings(max_seconds=10.0), target=by_marker)
    hung: list[Inspection] = []
    try:
        first = checker.inspect(RECORDS, "application/pdf")
        beside = threading.Thread(target=lambda: hung.append(checker.inspect(HANG, "x")))
        beside.start()
        meanwhile = checker.inspect(RECORDS, "application/pdf")
        still_hanging = beside.is_alive()
        crashed = checker.inspect(CRASH, "application/pdf")
        beside.join()
        after = checker.inspect(RECORDS, "application/pdf")
    finally:
        checker.close()
    assert meanwhile.check.accepted and still_hanging
    assert not hung[0].check.accepted and hung[0].check.reason is not None
    assert hung[0].check.reason.startswith("check exceeded the time limit: 10 s")
    assert crashed.check.reason == "check failed: the checking process exited with code 3"
    assert after.check.accepted
    # the process that crashed and the one that hung were not used again
    assert after.reference not in {first.reference, meanwhile.reference}


SCRIPT = """
import os, sys
from pathlib import Path

with open(os.environ["RUNS"], "a") as runs:  # each time this script runs, as main or not
    runs.write(__name__ + "\\n")

if __name__ == "__main__":
    from config.settings import DocumentSettings
    from simulator.documents import generate_records_pdf
    from worker.documents_check import DocumentChecker

    records = generate_records_pdf("GF-AAAA0001", "Acme", "M1", 2)
    for _ in range(3):  # a checker each: three checking processes
        checker = DocumentChecker(DocumentSettings())
        assert checker.inspect(records, "application/pdf").check.accepted
        checker.close()
"""


def test_checking_processes_do_not_run_the_main_script_again(tmp_path: Path) -> None:
    """The main script (goodfaith, a benchmark) is imported once, by the forkserver, not by
    each checking process before its first check."""
    script, runs = tmp_path / "main_script.py", tmp_path / "runs.txt"
    script.write_text(SCRIPT)
    env = {**os.environ, "RUNS": str(runs), "PYTHONPATH": str(Path(__file__).parents[2])}
    done = subprocess.run(
        [sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert runs.read_text().split() == ["__main__", "__mp_main__"]


THREADED = """
import threading
from config.settings import DocumentSettings
from simulator.documents import generate_records_pdf
from worker.documents_check import DocumentChecker

checker = DocumentChecker(DocumentSettings(isolated=False))
docs = [generate_records_pdf(f"GF-AAAA{i:04d}", "Acme", "M1", 6) for i in range(8)]
found = []

def check(mine):
    for _ in range(8):
        for data in mine:
            inspection = checker.inspect(data, "application/pdf")
            found.append((inspection.check.accepted, inspection.reference, inspection.blank_pages))

threads = [threading.Thread(target=check, args=(docs[k::4],)) for k in range(4)]
for t in threads:
    t.start()
for t in threads:
    t.join()
assert len(found) == 64 and all(ok and ref and not blank for ok, ref, blank in found), found
print("checked", len(found))
"""


def test_checks_in_the_callers_process_are_safe_on_many_threads() -> None:
    """isolated=False on a worker's threads: PDFium (the blank-page render) is not
    thread-safe, and four threads in it at once crashed the process (segfault or
    "double free"); in a process of its own here, so a crash fails this test alone."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])}
    done = subprocess.run(
        [sys.executable, "-c", THREADED], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, (done.returncode, done.stderr[-2000:])
    assert done.stdout.split() == ["checked", "64"]
