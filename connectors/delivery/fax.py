"""Deliver a records packet to an external review agency by fax, for agencies that take
nothing else. The fax goes through the configured fax vendor (the container's
:class:`~connectors.base.FaxChannel`: Telnyx or Sinch), to the agency's fax number.

What is faxed (:meth:`FaxPacketDeliverer.fax_document`, built once per delivery and stored)::

    page 1      cover sheet: "RECORDS PACKET FOR EXTERNAL REVIEW", to (agency name and fax
                number), from (the carrier), the agency's reference (notification id), our
                case reference, initial or supplemental, "Pages: N including this cover
                (packet: M)", "Packet SHA-256: <64 hex>", sent at, and a confidentiality
                notice. Nothing about the insured: the packet itself is what the agency needs.
    pages 2..N  the packet, page for page as assembled (its SHA-256 is of the PDF we hold)

A fax has no synchronous receipt: :meth:`FaxPacketDeliverer.transmit` only hands the fax to
the vendor (its id comes back); the packet is delivered when the vendor says so (Telnyx
``fax.delivered``, Sinch ``COMPLETED``), by webhook or by :meth:`status`. The vendor fetches
the document from our signed media URL (``GET /v1/media/deliveries/{id}?token=``, no PHI in
it). Each transmission carries its own key (the vendor's idempotency key / label, see the fax
adapters), so :meth:`find_sent` recognises one a crash left behind.

Errors: the fax adapter's, already in the tree of ``connectors/base.py``; an agency without a
fax number is :class:`~connectors.base.AgencyNotConfigured`; stored packet bytes that do not
match the recorded SHA-256 are :class:`~connectors.base.HashMismatch`.

The same transport carries the fallback of any other agency (``fallback_fax_number``): when
its own transport fails permanently, ``connectors.registry.AgencyRouter.fallback_for`` gives
the delivery service a :class:`FaxPacketDeliverer` for that number.

Settings: :class:`FaxAgencySettings` (``transport="fax"`` in ``GOODFAITH_AGENCIES``).
"""

from __future__ import annotations

import hashlib
import io
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Literal

import pikepdf
from pydantic import field_validator, model_validator
from reportlab.lib.pagesizes import LETTER
from reportlab.pdfgen.canvas import Canvas

from config.settings import AgencyTransportSettings
from connectors.base import (
    AgencyNotConfigured,
    FaxChannel,
    FaxStatusEvent,
    HashMismatch,
    PacketFax,
    PacketSubmission,
    RecordsRequest,
    Rejected,
    SendReceipt,
)
from worker.domain.types import Channel, ChannelKind

__all__ = [
    "COVER_PAGES_RE",
    "COVER_SHA256_RE",
    "FaxAgencySettings",
    "FaxPacketDeliverer",
    "cover_sheet",
]

TRANSPORT = "fax"
_E164 = re.compile(r"^\+[1-9]\d{1,14}$")

#: How the cover sheet states the page count and the packet's hash (the agency, and the
#: simulator's agency, read them back).
COVER_PAGES_RE = re.compile(r"Pages:\s*(\d+)\s+including this cover\s*\(packet:\s*(\d+)\)")
COVER_SHA256_RE = re.compile(r"Packet SHA-256:\s*([0-9a-f]{64})")


class FaxAgencySettings(AgencyTransportSettings):
    """One agency that takes packets only by fax (``transport="fax"``): its ``fax_number``
    (E.164). The fax goes through the fax vendor of ``GOODFAITH_FAX__*``, from its number."""

    transport: Literal["fax"] = "fax"  # type: ignore[assignment]
    fax_number: str

    @field_validator("fax_number")
    @classmethod
    def _e164(cls, v: str) -> str:
        v = v.strip()
        if not _E164.match(v):
            raise ValueError("fax_number must be E.164, e.g. +16175550199")
        return v

    @model_validator(mode="after")
    def _no_fallback(self) -> FaxAgencySettings:
        if self.fallback_fax_number is not None:
            raise ValueError("a fax agency has no fallback_fax_number: fax is its transport")
        return self


def _safe(text: str) -> str:
    return text.encode("cp1252", errors="replace").decode("cp1252")


def cover_sheet(
    *,
    agency_name: str,
    agency_fax: str,
    carrier_name: str,
    submission: PacketSubmission,
    packet_pages: int,
    at: datetime,
) -> bytes:
    """The cover sheet (one page, PDF). Deterministic for the same inputs; no insured data."""
    buffer = io.BytesIO()
    c = Canvas(buffer, pagesize=LETTER, invariant=True, pageCompression=1)
    c.setTitle(f"Records packet {submission.notification_id}")
    _, height = LETTER
    x, y = 66.0, height - 72
    c.setFont("Helvetica-Bold", 18)
    c.drawString(x, y, "FAX - RECORDS PACKET FOR EXTERNAL REVIEW")
    y -= 36

    def line(label: str, value: str, bold: bool = False) -> None:
        nonlocal y
        c.setFont("Helvetica-Bold", 11)
        c.drawString(x, y, label)
        c.setFont("Courier-Bold" if bold else "Helvetica", 11)
        c.drawString(x + 150, y, _safe(value))
        y -= 20

    line("To:", f"{agency_name} (fax {agency_fax})")
    line("From:", carrier_name)
    line("Your reference:", submission.notification_id, bold=True)
    line("Our case reference:", submission.case_ref)
    line("Packet:", "supplemental records" if submission.supplemental else "initial")
    line("Sent:", at.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC"))
    y -= 10
    c.setFont("Helvetica-Bold", 12)
    c.drawString(x, y, f"Pages: {packet_pages + 1} including this cover (packet: {packet_pages})")
    y -= 22
    c.setFont("Courier", 9.5)
    c.drawString(x, y, f"Packet SHA-256: {submission.sha256.lower()}")
    y -= 30
    c.setFont("Helvetica", 9.5)
    for text in (
        "The packet that follows is the records packet for the external review named above,",
        "page for page as the carrier assembled it; its SHA-256 is that of the PDF file the",
        "carrier keeps, and can be asked for. If pages are missing, call or fax the sender.",
        "",
        "CONFIDENTIAL: protected health information for the external review only. If you",
        "received this fax in error, notify the sender and destroy it.",
    ):
        c.drawString(x, y, text)
        y -= 13
    c.showPage()
    c.save()
    return buffer.getvalue()


def _append_pages(target: pikepdf.Pdf, source: pikepdf.Pdf) -> None:
    """Every page of ``source`` (a packet: a flat page list with nothing inherited, as
    ``worker/packet`` writes it) copied to the end of ``target``'s flat /Kids with qpdf's
    foreign-object copy. pikepdf's own page insert refreshes its page cache on every page,
    which grows with the square of the pages (``bench/fax_document.py`` measures both)."""
    tree = target.Root.Pages
    kids = tree.Kids
    for page in source.pages:
        copied = target.copy_foreign(page.obj)
        copied.Parent = tree
        kids.append(copied)
    tree.Count = len(kids)


class FaxPacketDeliverer:
    """``FaxPacketTransport`` over the container's fax channel, for the agencies in
    ``agencies`` (agency id → :class:`FaxAgencySettings`). ``carrier_name`` is printed on
    the cover sheet."""

    transport = TRANSPORT

    def __init__(
        self, fax: FaxChannel, agencies: Mapping[str, FaxAgencySettings], *, carrier_name: str
    ) -> None:
        self._fax = fax
        self._agencies = dict(agencies)
        self._carrier = carrier_name
        self.vendor = fax.vendor

    def _agency(self, agency_id: str) -> FaxAgencySettings:
        agency = self._agencies.get(agency_id)
        if agency is None:
            raise AgencyNotConfigured(
                f"no fax number for agency {agency_id!r}; set transport 'fax' and fax_number "
                "on it in GOODFAITH_AGENCIES"
            )
        return agency

    def fax_document(self, submission: PacketSubmission, at: datetime) -> bytes:
        """Cover sheet + packet. HashMismatch when the stored packet is not what was recorded;
        Rejected when it is not a readable PDF."""
        agency = self._agency(submission.agency_id)
        ours = hashlib.sha256(submission.packet_pdf).hexdigest()
        if ours != submission.sha256.lower():
            raise HashMismatch(
                f"packet bytes hash to {ours} but the submission records {submission.sha256}: "
                "the stored packet changed since assembly; do not deliver it"
            )
        try:
            packet = pikepdf.open(io.BytesIO(submission.packet_pdf))
        except pikepdf.PdfError as exc:
            raise Rejected(f"packet for agency {submission.agency_id} is not a PDF") from exc
        with packet:
            cover = cover_sheet(
                agency_name=agency.name,
                agency_fax=agency.fax_number,
                carrier_name=self._carrier,
                submission=submission,
                packet_pages=len(packet.pages),
                at=at,
            )
            with pikepdf.open(io.BytesIO(cover)) as out:
                _append_pages(out, packet)
                buffer = io.BytesIO()
                out.save(buffer, deterministic_id=True)
        return buffer.getvalue()

    def _request(self, fax: PacketFax) -> RecordsRequest:
        agency = self._agency(fax.submission.agency_id)
        return RecordsRequest(
            idempotency_key=fax.key,
            reference=fax.submission.notification_id,
            channel=Channel(ChannelKind.FAX, agency.fax_number),
            document_url=fax.document_url,
            member_id="",
            requester=self._carrier,
            purpose="External review records packet",
        )

    def transmit(self, fax: PacketFax) -> SendReceipt:
        return self._fax.send(self._request(fax))

    def find_sent(self, fax: PacketFax, since: datetime) -> SendReceipt | None:
        return self._fax.find_sent(self._request(fax), since)

    def status(self, external_id: str) -> FaxStatusEvent | None:
        return self._fax.status(external_id)
