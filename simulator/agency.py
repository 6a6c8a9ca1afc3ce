"""The far side of HTTPS packet delivery: external review agencies taking multipart submissions
(``POST /agency/{agency_id}/submissions``; wire format in connectors/delivery/https.py) and
answering receipts (``GET /agency/{agency_id}/submissions/{receipt_id}``).

Each packet is checked against ``metadata.sha256`` and for PDF-ness; a submission is idempotent
on Idempotency-Key (a replay answers 200 with ``Idempotent-Replayed: true``; the same key for
other bytes is refused). Accepted packets are kept in :attr:`AgencyFarSide.submissions`.

Errors are the agency's own plain JSON: ``{"errors": [{"code": "<snake_case>", "title":
"<sentence>"}]}`` (no JSON:API ``detail`` or ``source`` as Telnyx has). Logs carry ids only.

An agency listed in ``Context.refused_uploads`` answers every upload 403 (our credentials
revoked), to exercise a fallback to fax. Agencies that take only fax have no endpoint here: their fax lines (``simulator/agency_lines.py``) sit
behind the simulated fax vendors (simulator/telnyx.py, simulator/sinch.py), which dial them,
fetch our document, print it on the agency's machine (``simulator/agency_lines.py``:: the clerk
reads the cover sheet's page count, hash and reference) and confirm delivery with the vendor's
own webhook. A line may answer busy for its first calls (``busy_first``).
"""

from __future__ import annotations

import hashlib
import json
import threading
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import structlog
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from starlette.datastructures import UploadFile

from simulator.base import Context, FarSide
from simulator.events import iso
from simulator.letters import page_count

__all__ = ["AgencyFarSide", "AgencySubmission"]

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class AgencySubmission:
    """One packet as the simulated agency received it."""

    agency_id: str
    receipt_id: str
    idempotency_key: str | None
    received_at: datetime
    metadata: Mapping[str, Any]
    packet: bytes
    manifest: Any
    sha256: str
    pages: int


def _error(status: int, code: str, title: str) -> JSONResponse:
    return JSONResponse({"errors": [{"code": code, "title": title}]}, status_code=status)


def _receipt(submission: AgencySubmission) -> dict[str, Any]:
    return {
        "receipt_id": submission.receipt_id,
        "received_at": iso(submission.received_at),
        "sha256": submission.sha256,
        "agency_id": submission.agency_id,
        "pages": submission.pages,
        "supplemental": bool(submission.metadata.get("supplemental", False)),
    }


class AgencyFarSide(FarSide):
    """Every external review agency's submission endpoint (any ``agency_id`` is open)."""

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self._lock = threading.Lock()
        self._submissions: list[AgencySubmission] = []
        self._keys: dict[tuple[str, str], AgencySubmission] = {}

    @property
    def submissions(self) -> list[AgencySubmission]:
        """Every packet the simulated agencies accepted, in arrival order (a copy)."""
        with self._lock:
            return list(self._submissions)

    def router(self) -> APIRouter:
        router = APIRouter()

        @router.post("/agency/{agency_id}/submissions")
        async def submit(agency_id: str, request: Request) -> Response:
            return await self._submit(agency_id, request)

        @router.get("/agency/{agency_id}/submissions/{receipt_id}")
        async def get_submission(agency_id: str, receipt_id: str) -> Response:
            return self._get_submission(agency_id, receipt_id)

        return router

    async def _submit(self, agency_id: str, request: Request) -> Response:
        if agency_id in self.ctx.refused_uploads:
            return _error(403, "forbidden", "credentials not accepted for this agency")
        form = await request.form()
        metadata_raw, packet_part, manifest_part = (
            form.get("metadata"),
            form.get("packet"),
            form.get("manifest"),
        )
        if metadata_raw is None or packet_part is None or manifest_part is None:
            return _error(400, "missing_part", "metadata, packet and manifest are required")

        async def read(part: str | UploadFile) -> bytes:
            return await part.read() if isinstance(part, UploadFile) else part.encode()

        try:
            metadata = json.loads(await read(metadata_raw))
            manifest = json.loads(await read(manifest_part))
        except ValueError:
            return _error(422, "invalid_json", "metadata and manifest must be JSON")
        packet = await read(packet_part)
        await form.close()
        if not isinstance(metadata, dict) or not isinstance(metadata.get("sha256"), str):
            return _error(422, "missing_sha256", "metadata.sha256 is required")
        digest = hashlib.sha256(packet).hexdigest()
        if digest != metadata["sha256"].lower():
            return _error(422, "sha256_mismatch", "packet sha256 does not match metadata")
        pages = page_count(packet) if packet.startswith(b"%PDF-") else None
        if pages is None:
            return _error(422, "not_a_pdf", "packet is not a readable PDF")
        key = request.headers.get("idempotency-key")
        with self._lock:
            if key and (agency_id, key) in self._keys:
                previous = self._keys[(agency_id, key)]
                if previous.sha256 != digest:
                    return _error(
                        422, "idempotency_key_reused", "Idempotency-Key reused for other content"
                    )
                return JSONResponse(
                    _receipt(previous), status_code=200, headers={"Idempotent-Replayed": "true"}
                )
            submission = AgencySubmission(
                agency_id=agency_id,
                receipt_id=f"R-{uuid.uuid4().hex[:12].upper()}",
                idempotency_key=key,
                received_at=self.ctx.clock.now(),
                metadata=metadata,
                packet=packet,
                manifest=manifest,
                sha256=digest,
                pages=pages,
            )
            self._submissions.append(submission)
            if key:
                self._keys[(agency_id, key)] = submission
        log.info("sim.packet_received", agency_id=agency_id, receipt_id=submission.receipt_id)
        return JSONResponse(_receipt(submission), status_code=201)

    def _get_submission(self, agency_id: str, receipt_id: str) -> Response:
        with self._lock:
            for submission in self._submissions:
                if submission.agency_id == agency_id and submission.receipt_id == receipt_id:
                    return JSONResponse(_receipt(submission))
        return _error(404, "not_found", "no such submission")
