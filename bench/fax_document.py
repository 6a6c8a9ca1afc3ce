"""Benchmark: building the fax document of a packet faxed to an agency (cover sheet + packet,
``connectors/delivery/fax.py``) for packets of growing size. Prints figures; asserts nothing.

    .venv/bin/python bench/fax_document.py [--pages 100,500,2000] [--runs 3]

For each size, a packet of that many text pages (the simulator's records generator, one
document) is built once; then ``FaxPacketDeliverer.fax_document`` runs ``--runs`` times and the
fastest wall time is kept (``wall_s``), beside pikepdf's own page insert
(``pages.extend``) on the same inputs (``extend_s``), which refreshes its page cache on every
page. One line per size::

    fax_document: pages=<int> wall_s=<float> extend_s=<float> ratio=<float>

``ratio`` is ``wall_s / extend_s`` (below 1: the copy onto the flat page list is faster).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import time
from datetime import UTC, datetime

import pikepdf

from connectors.base import PacketSubmission
from connectors.delivery.fax import FaxAgencySettings, FaxPacketDeliverer, cover_sheet
from simulator.documents import generate_records_pdf

AT = datetime(2026, 4, 17, 13, 0, tzinfo=UTC)


class _NoFax:
    """The fax channel is not called when the document is built."""

    vendor = "none"


def _extend(submission: PacketSubmission, pages: int) -> bytes:
    cover = cover_sheet(
        agency_name="A",
        agency_fax="+16175550199",
        carrier_name="Plan",
        submission=submission,
        packet_pages=pages,
        at=AT,
    )
    with (
        pikepdf.open(io.BytesIO(submission.packet_pdf)) as packet,
        pikepdf.open(io.BytesIO(cover)) as out,
    ):
        out.pages.extend(packet.pages)
        buffer = io.BytesIO()
        out.save(buffer, deterministic_id=True)
    return buffer.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pages", default="100,500,2000")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    transport = FaxPacketDeliverer(
        _NoFax(),  # type: ignore[arg-type]
        {"a": FaxAgencySettings(name="A", fax_number="+16175550199")},
        carrier_name="Plan",
    )
    for pages in (int(p) for p in args.pages.split(",")):
        pdf = generate_records_pdf("GF-ABCDEFGH", "Example Orthopedics", "M1", pages)
        submission = PacketSubmission(
            "k", "a", "case", "N-1", pdf, {}, hashlib.sha256(pdf).hexdigest()
        )
        times, extends = [], []
        for _ in range(args.runs):
            t0 = time.perf_counter()
            document = transport.fax_document(submission, AT)
            times.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            _extend(submission, pages)
            extends.append(time.perf_counter() - t0)
        assert len(pikepdf.open(io.BytesIO(document)).pages) == pages + 1
        wall, extend = min(times), min(extends)
        print(
            f"fax_document: pages={pages} wall_s={wall:.3f} extend_s={extend:.3f} "
            f"ratio={wall / extend:.2f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
