"""Benchmark: packet assembly against qpdf merging the same inputs. Prints figures; asserts
nothing.

    .venv/bin/python bench/packet.py [--docs 20] [--pages 100] [--runs 3] [--corpus] [--isolation]

1. Generates ``--docs`` records documents of ``--pages`` pages each, half text pages (the
   simulator's fax replies, reportlab) and half scanned pages (a bilevel 1728 x 2200 fax TIFF,
   CCITT Group 4, converted at intake like any inbound fax), runs each through intake
   (``check_document``) and writes the accepted PDFs to a temporary folder.
2. Builds the packet (cover, EOC, every document, attestation; every page stamped) in a fresh
   child process that reads those files, ``--runs`` times: ``wall_s`` is the fastest
   ``build_packet`` and ``peak_rss_mb`` the largest peak resident set size of the child
   (VmHWM: the whole child process, Python and libraries included).
3. Merges the same files (EOC and documents) with ``qpdf --empty --pages ... -- out.pdf``,
   ``--runs`` times: ``qpdf_wall_s`` is the fastest.

``--isolation`` also times the bounded checks (a child process with resource limits) against
in-process ones; ``--corpus`` times the checks over the shared real-world corpus
(``GOODFAITH_CORPUS`` or ``../shared/corpus``). The last line is always::

    packet: pages=<int> wall_s=<float> peak_rss_mb=<float> qpdf_wall_s=<float> ratio=<float>

Goal on the 2-core machine: ratio (wall_s / qpdf_wall_s) <= 1.5, peak RSS <= 300 MB.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(REPO))

from pypdf import PdfReader, PdfWriter  # noqa: E402

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

FAX_SIZE = (1728, 2200)  # pixels: a fine-mode fax page (204 x 196 dpi)


def _peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MB: VmHWM of /proc/self/status (its
    own address space only; ru_maxrss would carry the parent's peak over fork and exec),
    else ru_maxrss (KB on Linux)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def scanned_tiff(pages: int, seed: int) -> bytes:
    """A fax TIFF of ``pages`` bilevel frames that look like scanned text (dark bars for lines
    of words, a margin note, a stamp), CCITT Group 4 as fax vendors deliver it."""
    from PIL import Image, ImageDraw

    frames = []
    for page in range(pages):
        image = Image.new("1", FAX_SIZE, 1)
        draw = ImageDraw.Draw(image)
        draw.text((120, 90), f"SCANNED PROGRESS NOTE {seed}-{page + 1}", fill=0)
        y = 200
        for line in range(48):
            x = 120
            words = 6 + (seed * 7 + page * 3 + line) % 9
            for word in range(words):
                width = 30 + (seed + page * 11 + line * 5 + word * 13) % 90
                draw.rectangle((x, y, x + width, y + 22), fill=0)
                x += width + 18
                if x > FAX_SIZE[0] - 200:
                    break
            y += 40
        draw.ellipse((1300, 1900, 1600, 2100), outline=0, width=6)
        frames.append(image)
    out = io.BytesIO()
    frames[0].save(
        out,
        format="TIFF",
        save_all=True,
        append_images=frames[1:],
        compression="group4",
        dpi=(204, 196),
    )
    return out.getvalue()


def generate_inputs(folder: Path, docs: int, pages: int) -> tuple[list[Path], int]:
    """Write the EOC and ``docs`` checked documents to ``folder``; return their paths (EOC
    first) and the total input page count."""
    text_pages = pages - pages // 2
    scanned_pages = pages // 2
    eoc = generate_eoc_pdf("PLAN-1", pages=6)
    paths = [folder / "00-eoc.pdf"]
    paths[0].write_bytes(eoc)
    total = len(PdfReader(io.BytesIO(eoc)).pages)
    for index in range(docs):
        text = check_document(
            generate_records_pdf(f"GF-{index:08d}", f"Clinic {index}", "M0000001", text_pages)
        )
        scanned = check_document(scanned_tiff(scanned_pages, index), "image/tiff")
        assert text.accepted and scanned.accepted, (text.reason, scanned.reason)
        # One reply: the typed notes, then the scanned pages (a provider's combined fax).
        writer = PdfWriter()
        for part in (text.data, scanned.data):
            writer.append(PdfReader(io.BytesIO(part)))
        combined = io.BytesIO()
        writer.write(combined)
        check = check_document(combined.getvalue())
        assert check.accepted and check.pages == pages, check.reason
        path = folder / f"{index + 1:02d}-records.pdf"
        path.write_bytes(check.data)
        paths.append(path)
        total += check.pages
    return paths, total


def assemble(paths: list[Path], out: Path) -> dict[str, float]:
    """Build the packet from the files (the child process's work); its wall time and peak RSS."""
    now = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
    ma = get_jurisdiction("MA")
    parts = [PacketPart("eoc", "Evidence of coverage", paths[0].read_bytes(), "0" * 64)]
    for index, path in enumerate(paths[1:]):
        data = path.read_bytes()
        parts.append(
            PacketPart("records", f"Records: Clinic {index}", data, "0" * 64, f"P-{index}")
        )
    attestation = [
        ProviderAttestation(
            f"Clinic {i}",
            f"P-{i}",
            "fulfilled",
            [AttemptLine(1, now, "fax", "+16175550100", "delivered", "initial")],
        )
        for i in range(len(paths) - 1)
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
        ma.citation,
        ma.tz,
    )
    start = time.perf_counter()
    built = build_packet(cover, parts, attestation)
    wall = time.perf_counter() - start
    out.write_bytes(built.pdf)
    return {
        "wall_s": wall,
        "peak_rss_mb": _peak_rss_mb(),
        "pages": built.pages,
        "excluded": len(built.excluded),
        "bytes": len(built.pdf),
    }


def run_child(paths: list[Path], out: Path) -> dict[str, float]:
    args = [sys.executable, __file__, "--assemble", str(out), *map(str, paths)]
    done = subprocess.run(args, capture_output=True, text=True, check=True)
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def run_qpdf(paths: list[Path], out: Path) -> float:
    qpdf = shutil.which("qpdf")
    if qpdf is None:
        raise SystemExit("qpdf is not installed: apt-get install qpdf")
    start = time.perf_counter()
    subprocess.run(
        [qpdf, "--empty", "--pages", *map(str, paths), "--", str(out)],
        check=True,
        capture_output=True,
    )
    return time.perf_counter() - start


def bench_isolation(docs: int) -> None:
    """Per-document cost of the bounded path (child process with resource limits) against
    the same checks in-process (worker/documents_check.py)."""
    from config.settings import DocumentSettings
    from worker.documents_check import DocumentChecker

    blobs = [
        generate_records_pdf(f"GF-{i:08d}", f"Clinic {i}", "M0000001", 10) for i in range(docs)
    ]
    timings = {}
    for isolated in (False, True):
        checker = DocumentChecker(DocumentSettings(isolated=isolated))
        checker.inspect(blobs[0], "application/pdf")  # warm up (starts the forkserver)
        start = time.perf_counter()
        for blob in blobs:
            assert checker.inspect(blob, "application/pdf").check.accepted
        timings[isolated] = (time.perf_counter() - start) / docs * 1000
    print(
        f"bounded checks ({docs} x 10 pages): in-process {timings[False]:.0f} ms/doc, in a child "
        f"process {timings[True]:.0f} ms/doc: overhead {timings[True] - timings[False]:.0f} ms/doc"
    )


def bench_corpus() -> None:
    corpus = Path(os.environ.get("GOODFAITH_CORPUS") or REPO.parent / "shared" / "corpus")
    manifest = corpus / "MANIFEST.json"
    if not manifest.is_file():
        print(f"corpus: not found at {corpus}; skipped")
        return
    entries = [f for f in json.loads(manifest.read_text())["files"] if f.get("present", True)]
    rows: list[tuple[float, str, str]] = []
    for entry in entries:
        data = (corpus / entry["path"]).read_bytes()
        password = entry.get("password")
        start = time.perf_counter()
        check = check_document(data, passwords=[password] if password else [])
        extract_reference(data)
        is_no_records_reply(data)
        elapsed = time.perf_counter() - start
        verdict = "accepted" + (" (repaired)" if check.repaired else "")
        if not check.accepted:
            verdict = f"quarantined: {check.reason}"
        rows.append((elapsed, entry["path"], verdict))
    times = sorted(r[0] for r in rows)
    accepted = sum(1 for r in rows if r[2].startswith("accepted"))
    repaired = sum(1 for r in rows if "repaired" in r[2])
    print(
        f"corpus ({len(rows)} files): checks + text total {sum(times):.2f} s, median "
        f"{statistics.median(times) * 1000:.1f} ms, max {times[-1] * 1000:.0f} ms; accepted "
        f"{accepted} (repaired {repaired}), quarantined {len(rows) - accepted}"
    )
    for elapsed, path, verdict in sorted(rows, reverse=True)[:3]:
        print(f"  slowest: {elapsed * 1000:6.0f} ms  {path}  [{verdict}]")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--docs", type=int, default=20)
    parser.add_argument("--pages", type=int, default=100)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--corpus", action="store_true")
    parser.add_argument("--isolation", action="store_true")
    parser.add_argument("--assemble", nargs="+", help=argparse.SUPPRESS)  # the child's work
    args = parser.parse_args()
    if args.assemble:
        out, *paths = (Path(p) for p in args.assemble)
        print(json.dumps(assemble(paths, out)))
        return
    if args.isolation:
        bench_isolation(args.docs)
    if args.corpus:
        bench_corpus()
    with tempfile.TemporaryDirectory(prefix="gf-bench-packet-") as tmp:
        folder = Path(tmp)
        start = time.perf_counter()
        paths, input_pages = generate_inputs(folder, args.docs, args.pages)
        size = sum(p.stat().st_size for p in paths) / 2**20
        print(
            f"inputs: EOC + {args.docs} x {args.pages}-page documents (text and scanned fax "
            f"pages), {input_pages} pages, {size:.1f} MB, made and checked in "
            f"{time.perf_counter() - start:.1f} s"
        )
        builds = [run_child(paths, folder / "packet.pdf") for _ in range(args.runs)]
        merges = [run_qpdf(paths, folder / "qpdf.pdf") for _ in range(args.runs)]
        wall = min(b["wall_s"] for b in builds)
        rss = max(b["peak_rss_mb"] for b in builds)
        pages = int(builds[0]["pages"])
        qpdf_wall = min(merges)
        out_mb = builds[0]["bytes"] / 2**20
        build_runs = ", ".join(f"{b['wall_s']:.2f}" for b in builds)
        qpdf_runs = ", ".join(f"{m:.2f}" for m in merges)
        print(
            f"build_packet runs: {build_runs} s; qpdf runs: {qpdf_runs} s; packet {out_mb:.1f} MB, "
            f"{int(builds[0]['excluded'])} excluded"
        )
    print(
        f"packet: pages={pages} wall_s={wall:.3f} peak_rss_mb={rss:.1f} "
        f"qpdf_wall_s={qpdf_wall:.3f} ratio={wall / qpdf_wall:.2f}"
    )


if __name__ == "__main__":
    main()
