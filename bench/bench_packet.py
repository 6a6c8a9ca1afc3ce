"""Benchmark: intake checks and packet assembly. Prints figures; asserts nothing.

    .venv/bin/python bench/bench_packet.py [--docs 20] [--pages 100]

1. Generates N records PDFs of P pages (simulator), runs check_document on each, builds one
   packet (cover + EOC + records + attestation, every page stamped) and reports wall time,
   peak RSS (ru_maxrss, whole process) and output size.
2. Times the bounded intake checks (a child process with resource limits) against the same
   checks in-process, per document.
3. When the shared corpus is present (GOODFAITH_CORPUS or ../shared/corpus), times
   check_document and the text checks per file.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(REPO))

from pypdf import PdfReader  # noqa: E402

from config.jurisdictions import get_jurisdiction  # noqa: E402
from simulator.documents import generate_eoc_pdf, generate_records_pdf  # noqa: E402
from worker.documents import check_document, extract_reference, is_no_records_reply  # noqa: E402
from worker.packet import (  # noqa: E402
    AttemptLine,
    CoverInfo,
    PacketPart,
    ProviderAttestation,
    build_packet,
)


def _rss_mb() -> float:
    """Peak resident set size of this process so far, in MB (Linux reports KB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _current_rss_mb() -> float:
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        return float("nan")


def bench_packet(docs: int, pages: int) -> None:
    now = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
    print(f"== packet: {docs} x {pages}-page generated records PDFs ==")
    start = time.perf_counter()
    blobs = [
        generate_records_pdf(f"GF-{i:08d}", f"Clinic {i}", "M0000001", pages) for i in range(docs)
    ]
    eoc = generate_eoc_pdf("PLAN-1", pages=6)
    generated = time.perf_counter() - start
    total_in = sum(len(b) for b in blobs)
    print(
        f"generate: {generated:.2f} s ({generated / docs * 1000:.0f} ms/doc), "
        f"{total_in / 2**20:.1f} MB in; RSS now {_current_rss_mb():.0f} MB"
    )

    start = time.perf_counter()
    checks = [check_document(b) for b in blobs]
    checked = time.perf_counter() - start
    assert all(c.accepted for c in checks)
    print(f"check_document: {checked:.2f} s ({checked / docs * 1000:.0f} ms/doc)")

    start = time.perf_counter()
    refs = [extract_reference(b) for b in blobs]
    extracted = time.perf_counter() - start
    print(
        f"extract_reference: {extracted / docs * 1000:.1f} ms/doc "
        f"({sum(r is not None for r in refs)}/{docs} found)"
    )

    parts = [PacketPart("eoc", "Evidence of coverage", eoc, "0" * 64)] + [
        PacketPart("records", f"Records: Clinic {i}", c.data, c.sha256, f"P-{i}")
        for i, c in enumerate(checks)
    ]
    attestation = [
        ProviderAttestation(
            f"Clinic {i}",
            f"P-{i}",
            "fulfilled",
            [AttemptLine(1, now, "fax", "+16175550100", "delivered", "initial")],
        )
        for i in range(docs)
    ]
    cover = CoverInfo(
        "CASE-BENCH",
        "N-1",
        "Agency",
        "MA",
        "standard",
        "Bench Insured",
        "M0000001",
        now + timedelta(days=3),
        now,
        "Carrier",
        get_jurisdiction("MA").citation,
        get_jurisdiction("MA").tz,
    )
    rss_before = _current_rss_mb()
    start = time.perf_counter()
    built = build_packet(cover, parts, attestation)
    assembled = time.perf_counter() - start
    print(
        f"build_packet: {assembled:.2f} s for {built.pages} pages "
        f"({assembled / built.pages * 1000:.2f} ms/page), output {len(built.pdf) / 2**20:.1f} MB "
        f"({len(built.pdf) / (total_in + len(eoc)):.2f}x input)"
    )
    start = time.perf_counter()
    reread = len(PdfReader(io.BytesIO(built.pdf)).pages)
    print(f"re-read output: {time.perf_counter() - start:.2f} s, {reread} pages")
    print(f"RSS before build {rss_before:.0f} MB; peak RSS of the process {_rss_mb():.0f} MB")


def bench_corpus() -> None:
    corpus = Path(os.environ.get("GOODFAITH_CORPUS") or REPO.parent / "shared" / "corpus")
    manifest = corpus / "MANIFEST.json"
    if not manifest.is_file():
        print(f"== corpus: not found at {corpus}; skipped ==")
        return
    entries = [f for f in json.loads(manifest.read_text())["files"] if f.get("present", True)]
    print(f"== corpus: {len(entries)} files ==")
    rows: list[tuple[float, float, str, str]] = []
    for entry in entries:
        data = (corpus / entry["path"]).read_bytes()
        password = entry.get("password")
        start = time.perf_counter()
        check = check_document(data, passwords=[password] if password else [])
        checked = time.perf_counter() - start
        start = time.perf_counter()
        extract_reference(data)
        is_no_records_reply(data)
        texted = time.perf_counter() - start
        verdict = "accepted" + (" (repaired)" if check.repaired else "")
        if not check.accepted:
            verdict = f"quarantined: {check.reason}"
        rows.append((checked, texted, entry["path"], verdict))
    times = sorted(r[0] for r in rows)
    text_times = sorted(r[1] for r in rows)
    accepted = sum(1 for r in rows if r[3].startswith("accepted"))
    repaired = sum(1 for r in rows if "repaired" in r[3])
    print(
        f"check_document: total {sum(times):.2f} s, median {statistics.median(times) * 1000:.1f} ms, "
        f"p95 {times[int(0.95 * (len(times) - 1))] * 1000:.0f} ms, max {times[-1] * 1000:.0f} ms"
    )
    print(
        f"extract_reference + is_no_records_reply: total {sum(text_times):.2f} s, "
        f"median {statistics.median(text_times) * 1000:.1f} ms, max {text_times[-1] * 1000:.0f} ms"
    )
    print(f"accepted {accepted} (repaired {repaired}), quarantined {len(rows) - accepted}")
    print("slowest checks:")
    for checked, texted, path, verdict in sorted(rows, reverse=True)[:5]:
        print(f"  {checked * 1000:7.0f} ms  text {texted * 1000:5.0f} ms  {path}  [{verdict}]")
    print(f"peak RSS of the process {_rss_mb():.0f} MB")


def bench_isolation(docs: int) -> None:
    """Per-document cost of the bounded path (child process with resource limits) against
    the same checks in-process (worker/documents_check.py)."""
    from config.settings import DocumentSettings
    from worker.documents_check import DocumentChecker

    blobs = [
        generate_records_pdf(f"GF-{i:08d}", f"Clinic {i}", "M0000001", 10) for i in range(docs)
    ]
    print(f"== bounded checks: {docs} x 10-page records PDFs ==")
    timings = {}
    for isolated in (False, True):
        checker = DocumentChecker(DocumentSettings(isolated=isolated))
        checker.inspect(blobs[0], "application/pdf")  # warm up (starts the forkserver)
        start = time.perf_counter()
        for blob in blobs:
            assert checker.inspect(blob, "application/pdf").check.accepted
        timings[isolated] = (time.perf_counter() - start) / docs * 1000
    print(
        f"inspect in-process {timings[False]:.0f} ms/doc, in a child process "
        f"{timings[True]:.0f} ms/doc: overhead {timings[True] - timings[False]:.0f} ms/doc"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--docs", type=int, default=20)
    parser.add_argument("--pages", type=int, default=100)
    args = parser.parse_args()
    bench_packet(args.docs, args.pages)
    bench_isolation(args.docs)
    bench_corpus()


if __name__ == "__main__":
    main()
