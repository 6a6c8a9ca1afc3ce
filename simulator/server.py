"""The far side of every channel: a Telnyx-like fax API, providers' FHIR servers (CDex Task) and
external review agencies, speaking the same wire formats as the real ones.

Time is the injected ``clock``: nothing sleeps. Scheduled work sits in one queue ordered by due
instant; :meth:`Simulator.fire_due` runs what is due at ``clock.now()`` (fax transmissions,
which fetch the request letter, and webhook POSTs, signed like Telnyx's). A simulation driver
advances a VirtualClock to :meth:`Simulator.next_event_at` and calls ``fire_due``; in real-time
mode :meth:`Simulator.start_background` calls it on a thread.

Outbound fax sent at t::

    t        fax.queued
    t+10s    fax.media.processed
    t+30s    fax.sending.started
    t+1min   fax.failed (user_busy)                  when the provider's line is "busy"
    t+2min   letter fetched from media_url → fax.delivered (or fax.failed file_download_failed)
             the provider's count of delivered requests +1; at respond_after_attempts (once):
    +reply   fax.received, media_url = {public_base_url}/v2/media/{id}

FHIR Task posted at t: requested → in-progress at t+1min (counts as delivered) → at
+reply_delay completed with a contained DocumentReference (base64 PDF), or rejected with
statusReason "no records". Task states are evaluated lazily from the clock on every read.

Agency: multipart submissions (see connectors/agency_https.py) checked for sha256 and PDF-ness,
idempotent on Idempotency-Key, kept in :attr:`Simulator.submissions`.

Logs carry ids only: no member ids, names or documents.
"""

from __future__ import annotations

import base64
import hashlib
import heapq
import io
import itertools
import json
import re
import threading
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import httpx
import structlog
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.datastructures import UploadFile

from connectors.fax_telnyx import sign_webhook
from connectors.fhir_cdex import HREX_TEMP, REFERENCE_SYSTEM
from simulator.providers import ProviderBehaviour
from worker.domain.clock import Clock

__all__ = ["AgencySubmission", "Simulator"]

log = structlog.get_logger(__name__)

_E164 = re.compile(r"^\+[1-9]\d{1,14}$")
_QUEUED_TO_MEDIA = timedelta(seconds=10)
_QUEUED_TO_SENDING = timedelta(seconds=30)
_QUEUED_TO_BUSY = timedelta(minutes=1)
_QUEUED_TO_DELIVERED = timedelta(minutes=2)
_TASK_ACCEPT_AFTER = timedelta(minutes=1)
_SIM_SYSTEM = "urn:goodfaith:simulator"


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


@dataclass
class _Fax:
    id: str
    connection_id: str
    from_number: str
    to_number: str
    media_url: str
    client_state: str | None
    webhook_url: str
    created_at: datetime
    status: str = "queued"


@dataclass
class _Item:
    kind: Literal["webhook", "transmit"]
    url: str = ""
    envelope: dict[str, Any] = field(default_factory=dict)
    fax_id: str = ""
    attempts: int = 0


@dataclass
class _Task:
    id: str
    resource: dict[str, Any]
    provider_id: str
    reference: str
    member_id: str
    created_at: datetime
    accepted: bool = False
    complete_at: datetime | None = None
    reply: Literal["records", "no_records"] | None = None
    document: bytes | None = None
    version: int = 1


def _iso(instant: datetime) -> str:
    return instant.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _telnyx_error(status: int, code: str, title: str, pointer: str | None = None) -> JSONResponse:
    error: dict[str, Any] = {"code": code, "title": title, "detail": title}
    if pointer:
        error["source"] = {"pointer": pointer}
    return JSONResponse({"errors": [error]}, status_code=status)


def _outcome(status: int, code: str, text: str, expression: str | None = None) -> JSONResponse:
    issue: dict[str, Any] = {"severity": "error", "code": code, "details": {"text": text}}
    if expression:
        issue["expression"] = [expression]
    return JSONResponse(
        {"resourceType": "OperationOutcome", "issue": [issue]},
        status_code=status,
        media_type="application/fhir+json",
    )


def _page_count(data: bytes) -> int | None:
    try:
        from pypdf import PdfReader

        return len(PdfReader(io.BytesIO(data)).pages)
    except Exception:  # any unreadable PDF: the channel just does not claim a count
        return None


class Simulator:
    """Fax carrier, providers' FHIR servers and review agencies, on one ASGI app (``.app``).

    ``behaviours`` is keyed by provider id; ``directory`` maps a fax number or NPI to a provider
    id (unknown numbers behave as ``default``). ``http`` is used to fetch request letters and to
    POST webhooks to ``webhook_url``. ``signing_key`` is an Ed25519 private key (32 raw bytes);
    when given, webhooks are signed. ``provider_names`` (an addition to the brief) names
    providers on generated documents; the provider id is used otherwise.
    """

    def __init__(
        self,
        *,
        clock: Clock,
        webhook_url: str,
        behaviours: Mapping[str, ProviderBehaviour],
        directory: Mapping[str, str],
        default: ProviderBehaviour = ProviderBehaviour(),  # noqa: B008 - frozen, immutable
        http: httpx.Client,
        public_base_url: str,
        signing_key: bytes | None = None,
        carrier_fax_number: str = "+16175550000",
        provider_names: Mapping[str, str] | None = None,
    ) -> None:
        self._clock = clock
        self._webhook_url = webhook_url
        self._behaviours = dict(behaviours)
        self._directory = dict(directory)
        self._default = default
        self._http = http
        self._public = public_base_url.rstrip("/")
        self._signing_key = signing_key
        self._carrier_fax = carrier_fax_number
        self._names = dict(provider_names or {})

        self._lock = threading.RLock()
        self._fire_lock = threading.Lock()
        self._queue: list[tuple[datetime, int, _Item]] = []
        self._seq = itertools.count()
        self._faxes: dict[str, _Fax] = {}
        self._fax_keys: dict[str, str] = {}
        self._media: dict[str, tuple[bytes, str]] = {}
        self._tasks: dict[str, _Task] = {}
        self._task_keys: dict[str, str] = {}
        self._delivered: dict[str, int] = {}
        self._per_request: dict[str, int] = {}
        self._responded: set[str] = set()
        self._submissions: list[AgencySubmission] = []
        self._submission_keys: dict[tuple[str, str], AgencySubmission] = {}
        self._sent: list[dict[str, Any]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.app = self._build_app()

    # --- inspection ----------------------------------------------------------------------

    @property
    def submissions(self) -> list[AgencySubmission]:
        """Every packet the simulated agencies accepted, in arrival order (a copy)."""
        with self._lock:
            return list(self._submissions)

    @property
    def sent_webhooks(self) -> list[dict[str, Any]]:
        """Every webhook envelope delivered (2xx) to ``webhook_url``, in order (a copy)."""
        with self._lock:
            return list(self._sent)

    def delivered_count(self, provider_id: str) -> int:
        """How many of our requests have reached ``provider_id`` so far."""
        with self._lock:
            return self._delivered.get(provider_id, 0)

    # --- scheduling ----------------------------------------------------------------------

    def _push(self, due: datetime, item: _Item) -> None:
        with self._lock:
            heapq.heappush(self._queue, (due, next(self._seq), item))

    def _provider(self, key: str) -> tuple[str, ProviderBehaviour]:
        provider_id = self._directory.get(key, key)
        return provider_id, self._behaviours.get(provider_id, self._default)

    def next_event_at(self) -> datetime | None:
        """The due instant of the earliest pending webhook or fax transmission, or None."""
        with self._lock:
            return self._queue[0][0] if self._queue else None

    def fire_due(self) -> int:
        """Run everything due at ``clock.now()`` in time order; return webhooks delivered.

        A webhook whose POST fails (exception or non-2xx) stays queued and is retried on the
        next call, with ``meta.attempt`` incremented, as Telnyx retries.
        """
        with self._fire_lock:
            now = self._clock.now()
            self._advance_tasks(now)
            delivered = 0
            failed: list[tuple[datetime, _Item]] = []
            while True:
                with self._lock:
                    if not self._queue or self._queue[0][0] > now:
                        break
                    due, _, item = heapq.heappop(self._queue)
                if item.kind == "transmit":
                    self._transmit(item.fax_id, due)
                elif self._post(item, now):
                    delivered += 1
                else:
                    failed.append((due, item))
            for due, item in failed:
                self._push(due, item)
            return delivered

    def _post(self, item: _Item, now: datetime) -> bool:
        item.attempts += 1
        envelope = dict(item.envelope)
        envelope["meta"] = {"attempt": item.attempts, "delivered_to": item.url}
        body = json.dumps(envelope, separators=(",", ":")).encode()
        timestamp = str(int(now.timestamp()))
        headers = {"content-type": "application/json", "telnyx-timestamp": timestamp}
        if self._signing_key is not None:
            headers["telnyx-signature-ed25519"] = sign_webhook(self._signing_key, timestamp, body)
        event = envelope["data"]
        try:
            response = self._http.post(item.url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            log.info("sim.webhook_failed", event_id=event["id"], error=type(exc).__name__)
            return False
        if not response.is_success:
            log.info("sim.webhook_failed", event_id=event["id"], status=response.status_code)
            return False
        with self._lock:
            self._sent.append(envelope)
        return True

    def start_background(self, interval_s: float) -> None:
        """Call :meth:`fire_due` every ``interval_s`` seconds (wall time) on a daemon thread."""
        if self._thread is not None:
            return
        self._stop.clear()

        def loop() -> None:
            while not self._stop.is_set():
                try:
                    self.fire_due()
                except Exception as exc:  # keep firing: one bad event must not stop the far side
                    log.warning("sim.fire_failed", error=type(exc).__name__)
                self._stop.wait(interval_s)

        self._thread = threading.Thread(target=loop, name="simulator-fire", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the background thread started by :meth:`start_background`."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def serve(self, host: str = "127.0.0.1", port: int = 0) -> tuple[str, Any]:
        """Serve ``.app`` with uvicorn on a thread: ``(base_url, stop)``."""
        from simulator.serving import run_in_thread

        return run_in_thread(self.app, host, port)

    # --- fax -----------------------------------------------------------------------------

    def _envelope(self, event_type: str, payload: dict[str, Any], at: datetime) -> dict[str, Any]:
        return {
            "data": {
                "event_type": event_type,
                "id": str(uuid.uuid4()),
                "occurred_at": _iso(at),
                "record_type": "event",
                "payload": payload,
            }
        }

    def _fax_payload(self, fax: _Fax, status: str, **extra: Any) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "connection_id": fax.connection_id,
            "direction": "outbound",
            "fax_id": fax.id,
            "from": fax.from_number,
            "to": fax.to_number,
            "original_media_url": fax.media_url,
            "status": status,
            "user_id": "sim-user",
        }
        if fax.client_state:
            payload["client_state"] = fax.client_state
        payload.update(extra)
        return payload

    def _fax_event(
        self, fax: _Fax, event_type: str, at: datetime, status: str, **extra: Any
    ) -> None:
        envelope = self._envelope(event_type, self._fax_payload(fax, status, **extra), at)
        self._push(at, _Item(kind="webhook", url=fax.webhook_url, envelope=envelope))

    async def _create_fax(self, request: Request) -> Response:
        auth = request.headers.get("authorization", "")
        if not auth.startswith("Bearer ") or not auth[7:].strip():
            return _telnyx_error(401, "10009", "Authentication failed")
        try:
            body = json.loads(await request.body())
        except ValueError:
            return _telnyx_error(400, "10015", "Bad Request")
        if not isinstance(body, dict):
            return _telnyx_error(400, "10015", "Bad Request")
        for name in ("connection_id", "from", "to"):
            if not isinstance(body.get(name), str) or not body[name]:
                return _telnyx_error(422, "10004", "Missing required parameter", f"/{name}")
        if not body.get("media_url") and not body.get("media_name"):
            return _telnyx_error(422, "10004", "Missing required parameter", "/media_url")
        for name in ("to", "from"):
            if not _E164.match(body[name]):
                return _telnyx_error(
                    422, "10016", "Phone number must be in +E.164 format", f"/{name}"
                )
        media_url = body.get("media_url") or ""
        if not isinstance(media_url, str) or not media_url.startswith(("http://", "https://")):
            return _telnyx_error(422, "10003", "Invalid URL", "/media_url")
        key = request.headers.get("idempotency-key")
        now = self._clock.now()
        with self._lock:
            if key and key in self._fax_keys:
                fax = self._faxes[self._fax_keys[key]]
                return JSONResponse({"data": self._fax_resource(fax)}, status_code=202)
            fax = _Fax(
                id=str(uuid.uuid4()),
                connection_id=body["connection_id"],
                from_number=body["from"],
                to_number=body["to"],
                media_url=media_url,
                client_state=body.get("client_state") or None,
                webhook_url=body.get("webhook_url") or self._webhook_url,
                created_at=now,
            )
            self._faxes[fax.id] = fax
            if key:
                self._fax_keys[key] = fax.id
        _, behaviour = self._provider(fax.to_number)
        self._fax_event(fax, "fax.queued", now, "queued")
        self._fax_event(fax, "fax.media.processed", now + _QUEUED_TO_MEDIA, "media.processed")
        self._fax_event(fax, "fax.sending.started", now + _QUEUED_TO_SENDING, "sending")
        if behaviour.fax == "busy":
            self._fax_event(
                fax, "fax.failed", now + _QUEUED_TO_BUSY, "failed", failure_reason="user_busy"
            )
        else:
            self._push(now + _QUEUED_TO_DELIVERED, _Item(kind="transmit", fax_id=fax.id))
        log.info("sim.fax_queued", fax_id=fax.id)
        return JSONResponse({"data": self._fax_resource(fax)}, status_code=202)

    def _fax_resource(self, fax: _Fax) -> dict[str, Any]:
        resource = {
            "record_type": "fax",
            "id": fax.id,
            "connection_id": fax.connection_id,
            "direction": "outbound",
            "from": fax.from_number,
            "to": fax.to_number,
            "media_url": fax.media_url,
            "status": fax.status,
            "store_media": False,
            "webhook_url": fax.webhook_url,
            "created_at": _iso(fax.created_at),
            "updated_at": _iso(fax.created_at),
        }
        if fax.client_state:
            resource["client_state"] = fax.client_state
        return resource

    def _transmit(self, fax_id: str, due: datetime) -> None:
        """The fax reaches the provider's machine: fetch the letter, then deliver or fail."""
        with self._lock:
            fax = self._faxes[fax_id]
        try:
            response = self._http.get(fax.media_url)
            ok = response.is_success
            letter = response.content if ok else b""
        except httpx.HTTPError:
            ok, letter = False, b""
        if not ok:
            fax.status = "failed"
            self._fax_event(fax, "fax.failed", due, "failed", failure_reason="file_download_failed")
            return
        from worker.documents import extract_reference

        reference = extract_reference(letter)
        fax.status = "delivered"
        self._fax_event(
            fax,
            "fax.delivered",
            due,
            "delivered",
            page_count=_page_count(letter) or 1,
            call_duration_secs=60,
        )
        provider_id, behaviour = self._provider(fax.to_number)
        if self._count_delivery(provider_id, behaviour, reference or fax.to_number):
            at = due + timedelta(minutes=behaviour.reply_delay_minutes)
            self._schedule_inbound_fax(fax, provider_id, behaviour, reference or "UNREFERENCED", at)

    def _count_delivery(
        self, provider_id: str, behaviour: ProviderBehaviour, request_ref: str
    ) -> bool:
        """Count one delivered request; True when this one triggers the provider's answer.

        Counted per request (the carrier's reference), as a records office works: a provider
        that appears in several cases answers each of them by its own count."""
        with self._lock:
            self._delivered[provider_id] = self._delivered.get(provider_id, 0) + 1
            key = f"{provider_id}|{request_ref}"
            count = self._per_request.get(key, 0) + 1
            self._per_request[key] = count
            threshold = behaviour.respond_after_attempts
            if threshold is None or count < threshold or key in self._responded:
                return False
            self._responded.add(key)
            return True

    def _reply_document(
        self, provider_id: str, behaviour: ProviderBehaviour, reference: str, member_id: str
    ) -> bytes:
        from simulator.documents import (
            generate_no_records_letter,
            generate_records_pdf,
        )

        name = self._names.get(provider_id, provider_id)
        if behaviour.document is not None:
            return behaviour.document.read_bytes()
        if behaviour.reply == "no_records":
            return generate_no_records_letter(reference, name)
        return generate_records_pdf(reference, name, member_id, behaviour.pages)

    def _schedule_inbound_fax(
        self,
        fax: _Fax,
        provider_id: str,
        behaviour: ProviderBehaviour,
        reference: str,
        at: datetime,
    ) -> None:
        # A faxed letter carries no member id we can read back; records replies print none.
        document = self._reply_document(provider_id, behaviour, reference, member_id="")
        media_id = uuid.uuid4().hex
        inbound_id = str(uuid.uuid4())
        with self._lock:
            self._media[media_id] = (document, "application/pdf")
        payload = {
            "connection_id": fax.connection_id,
            "direction": "inbound",
            "fax_id": inbound_id,
            "from": fax.to_number,
            "to": self._carrier_fax,
            "media_url": f"{self._public}/v2/media/{media_id}",
            "page_count": _page_count(document),
            "partial_content": False,
            "status": "received",
            "user_id": "sim-user",
        }
        envelope = self._envelope("fax.received", payload, at)
        self._push(at, _Item(kind="webhook", url=self._webhook_url, envelope=envelope))
        log.info("sim.reply_scheduled", channel="fax", fax_id=inbound_id, at=_iso(at))

    async def _get_media(self, media_id: str) -> Response:
        with self._lock:
            found = self._media.get(media_id)
        if found is None:
            return _telnyx_error(404, "10005", "Resource not found")
        data, content_type = found
        return Response(content=data, media_type=content_type)

    # --- FHIR ----------------------------------------------------------------------------

    async def _create_task(self, request: Request) -> Response:
        try:
            body = json.loads(await request.body())
        except ValueError:
            return _outcome(400, "structure", "body is not JSON")
        if not isinstance(body, dict) or body.get("resourceType") != "Task":
            return _outcome(400, "structure", "resourceType must be Task")
        if body.get("status") != "requested" or body.get("intent") != "order":
            return _outcome(422, "invariant", "status must be requested, intent order", "Task")
        owner = (
            body.get("owner", {}).get("identifier", {})
            if isinstance(body.get("owner"), dict)
            else {}
        )
        npi = owner.get("value") if isinstance(owner, dict) else None
        if not isinstance(npi, str) or not npi:
            return _outcome(422, "required", "owner.identifier (NPI) is required", "Task.owner")
        subject = (
            body.get("for", {}).get("identifier", {}) if isinstance(body.get("for"), dict) else {}
        )
        member_id = subject.get("value") if isinstance(subject, dict) else None
        if not isinstance(member_id, str) or not member_id:
            return _outcome(422, "required", "for.identifier is required", "Task.for")
        identifiers = [i for i in body.get("identifier") or [] if isinstance(i, dict)]
        reference = next(
            (str(i.get("value")) for i in identifiers if i.get("system") == REFERENCE_SYSTEM),
            str(identifiers[0].get("value")) if identifiers else "UNREFERENCED",
        )
        lookups = [f"{i.get('system')}|{i.get('value')}" for i in identifiers]
        key = request.headers.get("idempotency-key")
        if_none_exist = request.headers.get("if-none-exist", "")
        now = self._clock.now()
        with self._lock:
            existing = None
            if if_none_exist.startswith("identifier="):
                existing = self._task_keys.get(if_none_exist[len("identifier=") :])
            if existing is None and key:
                existing = self._task_keys.get(f"idempotency|{key}")
            if existing is not None:
                task = self._tasks[existing]
                return self._task_response(task, now, status=200)
            provider_id, _ = self._provider(npi)
            task_id = uuid.uuid4().hex
            resource = dict(body)
            resource["id"] = task_id
            task = _Task(
                id=task_id,
                resource=resource,
                provider_id=provider_id,
                reference=reference,
                member_id=member_id,
                created_at=now,
            )
            self._tasks[task_id] = task
            for lookup in lookups:
                self._task_keys[lookup] = task_id
            if key:
                self._task_keys[f"idempotency|{key}"] = task_id
        log.info("sim.task_created", task_id=task_id)
        return self._task_response(task, now, status=201)

    def _task_response(self, task: _Task, now: datetime, *, status: int) -> Response:
        headers = {"Location": f"{self._public}/fhir/Task/{task.id}/_history/{task.version}"}
        return JSONResponse(
            self._render_task(task, now),
            status_code=status,
            headers=headers,
            media_type="application/fhir+json",
        )

    def _advance_tasks(self, now: datetime) -> None:
        """Accept every Task due by ``now`` (in acceptance order), counting deliveries."""
        with self._lock:
            due = sorted(
                (t for t in self._tasks.values() if not t.accepted),
                key=lambda t: t.created_at,
            )
            for task in due:
                accept_at = task.created_at + _TASK_ACCEPT_AFTER
                if accept_at > now:
                    break
                task.accepted = True
                task.version += 1
                behaviour = self._behaviours.get(task.provider_id, self._default)
                ref = next(
                    (
                        str(i.get("value"))
                        for i in task.resource.get("identifier", [])
                        if "request-reference" in str(i.get("system", ""))
                    ),
                    task.id,
                )
                if self._count_delivery(task.provider_id, behaviour, ref):
                    task.complete_at = accept_at + timedelta(minutes=behaviour.reply_delay_minutes)
                    task.reply = behaviour.reply
                    log.info("sim.reply_scheduled", channel="fhir", task_id=task.id)

    def _render_task(self, task: _Task, now: datetime) -> dict[str, Any]:
        resource = dict(task.resource)
        resource["meta"] = {**resource.get("meta", {}), "versionId": str(task.version)}
        resource["lastModified"] = _iso(now)
        if not task.accepted:
            resource["status"] = "requested"
        elif task.complete_at is None or now < task.complete_at:
            resource["status"] = "in-progress"
        elif task.reply == "no_records":
            resource["status"] = "rejected"
            resource["statusReason"] = {
                "coding": [{"system": _SIM_SYSTEM, "code": "no-data"}],
                "text": "no records",
            }
        else:
            if task.document is None:
                behaviour = self._behaviours.get(task.provider_id, self._default)
                task.document = self._reply_document(
                    task.provider_id, behaviour, task.reference, task.member_id
                )
            resource["status"] = "completed"
            resource["contained"] = [
                {
                    "resourceType": "DocumentReference",
                    "id": "records",
                    "status": "current",
                    "type": {"coding": [{"system": "http://loinc.org", "code": "11506-3"}]},
                    "content": [
                        {
                            "attachment": {
                                "contentType": "application/pdf",
                                "data": base64.b64encode(task.document).decode("ascii"),
                                "title": "records.pdf",
                            }
                        }
                    ],
                }
            ]
            resource["output"] = [
                {
                    "type": {"coding": [{"system": HREX_TEMP, "code": "data-value"}]},
                    "valueReference": {"reference": "#records"},
                }
            ]
        return resource

    async def _read_task(self, task_id: str) -> Response:
        now = self._clock.now()
        self._advance_tasks(now)
        with self._lock:
            task = self._tasks.get(task_id)
            if task is None:
                return _outcome(404, "not-found", "no such Task")
            rendered = self._render_task(task, now)
        return JSONResponse(rendered, media_type="application/fhir+json")

    # --- agency --------------------------------------------------------------------------

    async def _submit(self, agency_id: str, request: Request) -> Response:
        form = await request.form()
        metadata_raw, packet_part, manifest_part = (
            form.get("metadata"),
            form.get("packet"),
            form.get("manifest"),
        )
        if metadata_raw is None or packet_part is None or manifest_part is None:
            return _telnyx_error(400, "missing_part", "metadata, packet and manifest are required")

        async def read(part: str | UploadFile) -> bytes:
            return await part.read() if isinstance(part, UploadFile) else part.encode()

        try:
            metadata = json.loads(await read(metadata_raw))
            manifest = json.loads(await read(manifest_part))
        except ValueError:
            return _telnyx_error(422, "invalid_json", "metadata and manifest must be JSON")
        packet = await read(packet_part)
        await form.close()
        if not isinstance(metadata, dict) or not isinstance(metadata.get("sha256"), str):
            return _telnyx_error(422, "missing_sha256", "metadata.sha256 is required")
        digest = hashlib.sha256(packet).hexdigest()
        if digest != metadata["sha256"].lower():
            return _telnyx_error(422, "sha256_mismatch", "packet sha256 does not match metadata")
        pages = _page_count(packet) if packet.startswith(b"%PDF-") else None
        if pages is None:
            return _telnyx_error(422, "not_a_pdf", "packet is not a readable PDF")
        key = request.headers.get("idempotency-key")
        with self._lock:
            if key and (agency_id, key) in self._submission_keys:
                previous = self._submission_keys[(agency_id, key)]
                if previous.sha256 != digest:
                    return _telnyx_error(
                        422, "idempotency_key_reused", "Idempotency-Key reused for other content"
                    )
                return JSONResponse(
                    self._receipt(previous),
                    status_code=200,
                    headers={"Idempotent-Replayed": "true"},
                )
            submission = AgencySubmission(
                agency_id=agency_id,
                receipt_id=f"R-{uuid.uuid4().hex[:12].upper()}",
                idempotency_key=key,
                received_at=self._clock.now(),
                metadata=metadata,
                packet=packet,
                manifest=manifest,
                sha256=digest,
                pages=pages,
            )
            self._submissions.append(submission)
            if key:
                self._submission_keys[(agency_id, key)] = submission
        log.info("sim.packet_received", agency_id=agency_id, receipt_id=submission.receipt_id)
        return JSONResponse(self._receipt(submission), status_code=201)

    @staticmethod
    def _receipt(submission: AgencySubmission) -> dict[str, Any]:
        return {
            "receipt_id": submission.receipt_id,
            "received_at": _iso(submission.received_at),
            "sha256": submission.sha256,
            "agency_id": submission.agency_id,
            "pages": submission.pages,
            "supplemental": bool(submission.metadata.get("supplemental", False)),
        }

    async def _get_submission(self, agency_id: str, receipt_id: str) -> Response:
        with self._lock:
            for submission in self._submissions:
                if submission.agency_id == agency_id and submission.receipt_id == receipt_id:
                    return JSONResponse(self._receipt(submission))
        return _telnyx_error(404, "not_found", "no such submission")

    # --- app -----------------------------------------------------------------------------

    def _build_app(self) -> FastAPI:
        app = FastAPI(title="goodfaith simulator", openapi_url=None, docs_url=None, redoc_url=None)

        @app.post("/v2/faxes")
        async def create_fax(request: Request) -> Response:
            return await self._create_fax(request)

        @app.get("/v2/media/{media_id}")
        async def get_media(media_id: str) -> Response:
            return await self._get_media(media_id)

        @app.post("/fhir/Task")
        async def create_task(request: Request) -> Response:
            return await self._create_task(request)

        @app.get("/fhir/Task/{task_id}")
        async def read_task(task_id: str) -> Response:
            return await self._read_task(task_id)

        @app.post("/agency/{agency_id}/submissions")
        async def submit(agency_id: str, request: Request) -> Response:
            return await self._submit(agency_id, request)

        @app.get("/agency/{agency_id}/submissions/{receipt_id}")
        async def get_submission(agency_id: str, receipt_id: str) -> Response:
            return await self._get_submission(agency_id, receipt_id)

        return app
