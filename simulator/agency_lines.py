"""The fax lines of external review agencies that take only fax.

They sit behind the simulated fax vendors (simulator/telnyx.py, simulator/sinch.py): a fax to
one of these numbers dials the agency's line (busy for its first ``busy_first`` calls, if so
configured), the vendor fetches our document from its media URL, the agency's machine prints it
and its clerk reads the cover sheet (pages, the packet's SHA-256, our reference); the vendor
then confirms delivery with its own webhook. What the agencies received is listed in
:attr:`AgencyLines.received` (and in a simulation report's ``agency_faxes``).
"""

from __future__ import annotations

import io
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import structlog
from pypdf import PdfReader

from simulator.events import iso

__all__ = ["AgencyFax", "AgencyLine", "AgencyLines"]

log = structlog.get_logger(__name__)


#: How the carrier's cover sheet states the pages and the packet's hash, as the agency's clerk
#: reads them (the simulator's own reading, not our connector's: a fault there must show).
_COVER_PAGES = re.compile(r"Pages:\s*(\d+)\s+including this cover\s*\(packet:\s*(\d+)\)")
_COVER_SHA256 = re.compile(r"Packet SHA-256:\s*([0-9a-f]{64})")
_COVER_REFERENCE = re.compile(r"Your reference:\s*(\S+)")


@dataclass(frozen=True)
class AgencyLine:
    """An agency's fax line on the far side: ``busy_first`` calls are answered busy before the
    line picks up (each transmission is a call)."""

    agency_id: str
    number: str
    busy_first: int = 0


@dataclass(frozen=True)
class AgencyFax:
    """One fax as an agency's machine printed it, and what its clerk read on the cover."""

    agency_id: str
    fax_id: str  # the fax vendor's id of the transmission
    received_at: datetime
    pages: int  # pages received, cover included
    cover_pages: int | None  # "Pages: N including this cover"
    cover_packet_pages: int | None  # "(packet: M)"
    cover_sha256: str | None
    cover_reference: str | None  # "Your reference:" (the notification id)
    document: bytes

    def summary(self) -> dict[str, Any]:
        """The fax as the simulation report lists it (no document bytes)."""
        return {
            "agency_id": self.agency_id,
            "fax_id": self.fax_id,
            "received_at": iso(self.received_at),
            "pages": self.pages,
            "cover_pages": self.cover_pages,
            "cover_packet_pages": self.cover_packet_pages,
            "cover_sha256": self.cover_sha256,
            "cover_reference": self.cover_reference,
        }


class AgencyLines:
    """The fax lines of agencies that take only fax, by number; shared by the fax vendors' far
    sides (simulator/telnyx.py, sinch.py), which ask :meth:`answers` when a fax to one of
    these numbers dials and hand the fetched document to :meth:`receive`. Thread-safe."""

    def __init__(self, lines: Mapping[str, AgencyLine] | None = None) -> None:
        self._lines = {line.number: line for line in (lines or {}).values()}
        self._lock = threading.Lock()
        self._calls: dict[str, int] = {}
        self._received: list[AgencyFax] = []

    def owns(self, number: str) -> bool:
        """Whether ``number`` is an agency's fax line (not a provider's)."""
        return number in self._lines

    def answers(self, number: str) -> bool:
        """One call to ``number``: False (busy) for its first ``busy_first`` calls."""
        with self._lock:
            calls = self._calls.get(number, 0) + 1
            self._calls[number] = calls
        return calls > self._lines[number].busy_first

    def calls(self, number: str) -> int:
        with self._lock:
            return self._calls.get(number, 0)

    def receive(self, number: str, fax_id: str, document: bytes, at: datetime) -> AgencyFax:
        """The agency's machine prints ``document``; its clerk reads the cover sheet."""
        text = ""
        pages = 0
        try:
            reader = PdfReader(io.BytesIO(document))
            pages = len(reader.pages)
            text = reader.pages[0].extract_text() or "" if pages else ""
        except Exception:  # an unreadable fax: printed as nothing, read as nothing
            pages = 0
        counts = _COVER_PAGES.search(text)
        sha = _COVER_SHA256.search(text)
        ref = _COVER_REFERENCE.search(text)
        fax = AgencyFax(
            agency_id=self._lines[number].agency_id,
            fax_id=fax_id,
            received_at=at,
            pages=pages,
            cover_pages=int(counts.group(1)) if counts else None,
            cover_packet_pages=int(counts.group(2)) if counts else None,
            cover_sha256=sha.group(1) if sha else None,
            cover_reference=ref.group(1) if ref else None,
            document=document,
        )
        with self._lock:
            self._received.append(fax)
        log.info("sim.agency_fax_received", agency_id=fax.agency_id, fax_id=fax_id, pages=pages)
        return fax

    @property
    def received(self) -> list[AgencyFax]:
        """Every fax the agencies' machines printed, in arrival order (a copy)."""
        with self._lock:
            return list(self._received)
