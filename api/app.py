"""The HTTP surface: intake, channel webhooks, request-letter media, ops and compliance views.

Who may call what (api/security.py): ``Authorization: Bearer <key>``, one role per key::

    intake      POST /v1/notifications, POST /v1/cases/{id}/cancel
    ops         GET /v1/cases, GET /v1/cases/{id}, GET /v1/cases/{id}/timeline,
                GET /v1/queues, GET /v1/dead-letters, POST /v1/dead-letters/{id}/retry
    compliance  GET /v1/exports/attempts, GET /v1/audit/verify,
                GET /v1/cases/{id}/packets/{sequence}[/manifest]
    admin       GET /v1/keys, POST /v1/keys, POST /v1/keys/{id}/revoke
    (signature) POST /v1/webhooks/{vendor}: the fax vendor's own signature, no key;
                POST /v1/webhooks/vendor?vendor_id=: a retrieval vendor's HMAC signature
    (token)     POST /v1/webhooks/cdex/{key}: a provider's FHIR server notifying us that the
                Task of attempt {key} changed, with the bearer token we gave its Subscription
    (token)     GET /v1/media/{attempt_id}?token=: an HMAC token for one letter;
                GET /v1/media/deliveries/{delivery_id}?token=: one packet fax's document
                (cover sheet + packet), while its delivery is under way
    (open)      GET /healthz, GET /metrics (aggregate counts, no PHI), GET /dashboard (the
                page and its script; the data it shows comes from the ops endpoints)

Errors are RFC 9457 problem details (api/problems.py): invalid notifications → 422 naming
each field (``errors``); webhooks that fail verification → 401; unknown ids → 404; over a
rate limit → 429. Handlers do the short write and enqueue the rest; nothing slow runs in a
request.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from dataclasses import asdict
from importlib import resources
from typing import Annotated, Any, Literal, TypeVar

import structlog
from fastapi import Depends, FastAPI, Header, HTTPException, Path, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from pydantic import BaseModel, ValidationError
from starlette.concurrency import run_in_threadpool

from api import contract, problems
from api.contract import (
    AssignBody,
    CancelBody,
    KeyBody,
    ReviewBody,
    binary,
    callback_body,
    errors,
)
from api.limits import EdgeLimits
from api.security import Guard
from connectors import jsonbody
from connectors.base import FaxReceivedEvent, FaxStatusEvent, WebhookError
from connectors.fhir.subscriptions import parse_notification
from connectors.registry import FAX_VENDORS, TASK_NOTIFY_ROUTE, WEBHOOK_ROUTE
from connectors.vendor.router import RetrievalVendors
from storage.auditchain import chain_head, verify_chain
from storage.db import transaction
from storage.models import Attempt, Delivery, Packet
from worker import services
from worker.campaign import CampaignError
from worker.domain.lifecycle import DeliveryStatus
from worker.notification import IntakeError, Notification
from worker.readmodels.attestation import attestation_json, attestation_pdf, case_attestation
from worker.readmodels.campaigns import campaign_detail, list_campaigns
from worker.readmodels.dashboard import CaseKind, dashboard, timeline
from worker.readmodels.deadletters import dead_letters
from worker.readmodels.export import (
    ExportFilter,
    find_case,
    iter_attempts,
    parse_bound,
    render_chunks,
)
from worker.readmodels.inbox import unmatched_content, unmatched_document, unmatched_documents
from worker.readmodels.metrics import render_metrics
from worker.readmodels.profiles import provider_profiles, render_profiles
from worker.readmodels.queues import QueueHealth
from worker.readmodels.report import build_report
from worker.services.coalescing import withdrawn
from worker.services.keys import Principal, Role, create_key, list_keys, revoke_key
from worker.services.review import Decision, ReviewOutcome
from worker.wiring import Container

log = structlog.get_logger("goodfaith.api")

#: Nesting the routes' JSON reader allows: the edge (api/limits.py) has already refused bodies
#: deeper than GOODFAITH_BODY_LIMITS__MAX_JSON_DEPTH, which is at most this; a backstop only.
JSON_BACKSTOP = 256
#: Paging stops here: an offset past any real table, and inside a 64-bit SQL integer.
MAX_OFFSET = 1_000_000_000
#: A packet's sequence number (1: the packet, 2...: supplements), bounded for SQL.
SEQUENCE = Path(ge=1, le=1_000_000, description="1 for the packet, 2... for supplements")

_DESCRIPTION = """goodfaith's HTTP surface: intake of external-review notifications, vendors'
webhooks, request-letter media, ops and compliance views.

Protected operations need `Authorization: Bearer <key>` of the role each names in its
`security` (`goodfaith keys create --role intake|ops|compliance|admin`): no key or an unknown
one is 401, another role's key 403. Every error is an RFC 9457 problem
(`application/problem+json`). Bodies are limited at the edge: over the size limit 413, JSON
nested too deep 422. This document is committed as docs/openapi.json
(`goodfaith openapi -o docs/openapi.json` regenerates it)."""


def _record_then_enqueue(c: Container, record: Callable[..., list[Any]], *args: Any) -> None:
    """``record(c, *args)`` (a webhook's write), then the commands it returns enqueued: one
    worker thread's job, so the event loop hands off once per webhook, not twice."""
    follow = record(c, *args)
    if follow:
        c.dispatcher.enqueue(follow)


def create_app(
    container: Callable[[], Container], queues: Callable[[], QueueHealth | None] | None = None
) -> FastAPI:
    """The API over ``container``; ``queues`` reads the broker's queue health for /metrics
    (``goodfaith api`` passes one reading dramatiq's Redis keys; None: no queue figures)."""
    app = FastAPI(title="goodfaith", version="0.1.0", description=_DESCRIPTION)
    problems.install(app)
    app.add_exception_handler(InvalidBody, _invalid_body)
    contract.install(app)
    app.add_middleware(EdgeLimits, limits=lambda: container().settings.body_limits)
    guard = Guard(container)
    intake_role = Depends(guard.require(Role.INTAKE))
    ops = Depends(guard.require(Role.OPS))
    compliance = Depends(guard.require(Role.COMPLIANCE))

    @app.get("/healthz", response_model=contract.Health)
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.post(
        "/v1/notifications",
        status_code=201,
        response_model=contract.IntakeAccepted,
        response_model_exclude_none=True,
        responses={
            200: {
                "description": "the notification id was already taken in: that case",
                "model": contract.IntakeAccepted,
            },
            **errors(401, 403, 413, 422, 429),
        },
        openapi_extra=contract.body(
            Notification,
            description="the external-review notification",
            example=contract.NOTIFICATION_EXAMPLE,
        ),
    )
    async def notifications(request: Request, who: Principal = intake_role) -> Response:
        """Open a case: 201 with its id; 200 with the same id when the notification id was
        already taken in; 422 naming each invalid field (nothing is stored)."""
        guard.limit("intake", who.key_id)
        try:
            body = jsonbody.loads(await request.body(), JSON_BACKSTOP)
        except ValueError:
            return _invalid([("(body)", "not JSON (UTF-8)")])
        c = container()
        try:  # database work runs in the thread pool, never on the event loop
            result = await run_in_threadpool(services.intake, c, body)
        except IntakeError as exc:
            return _invalid(exc.errors)
        body_out: dict[str, Any] = {"case_id": result.case_id, "created": result.created}
        if result.warnings:  # the case is taken in, and flagged: say so to the sender too
            body_out["warnings"] = result.warnings
        return JSONResponse(body_out, status_code=201 if result.created else 200)

    @app.post(
        WEBHOOK_ROUTE.format(vendor=RetrievalVendors.vendor),
        response_model=contract.WebhookAccepted,
        responses=errors(401, 413, 422, 429),
        openapi_extra=callback_body(
            "a retrieval vendor's order callback (connectors/vendor/orders-v1.openapi.yaml), "
            "HMAC-signed (Goodfaith-Signature)",
            "application/json",
        ),
    )
    async def retrieval_vendor_webhook(
        request: Request, vendor_id: str | None = Query(None, max_length=64)
    ) -> dict[str, str]:
        """A retrieval vendor's order callback (connectors/vendor/orders-v1.openapi.yaml),
        signed with that vendor's secret; anything else is refused (401)."""
        guard.limit("webhooks", request.client.host if request.client else "unknown")
        c = container()
        body = await request.body()
        try:
            event = c.vendors.parse_callback(vendor_id, body, dict(request.headers))
        except WebhookError as exc:
            log.warning("webhook.rejected", vendor="vendor", error=str(exc))
            raise HTTPException(status_code=401, detail="webhook rejected") from None
        await run_in_threadpool(_record_then_enqueue, c, services.record_vendor_event, event)
        return {"status": "ok"}

    @app.post(
        TASK_NOTIFY_ROUTE,
        response_model=contract.WebhookAccepted,
        responses=errors(401, 413, 422, 429),
        openapi_extra=callback_body(
            "a FHIR Subscription notification (R4 Subscriptions Backport: a history Bundle "
            "whose first entry is the subscription status; id-only), with the bearer token "
            "given to its Subscription (Authorization)",
            "application/fhir+json",
        ),
    )
    async def task_notification(
        request: Request,
        key: str = Path(
            max_length=64, description="the idempotency key of the attempt that sent the Task"
        ),
    ) -> dict[str, str]:
        """A provider's FHIR server says the Task an attempt sent has changed (its
        Subscription, connectors/fhir/subscriptions.py): the Task is read at once. The
        bearer token is an HMAC of ``key``; a handshake or a heartbeat changes nothing."""
        guard.limit("webhooks", request.client.host if request.client else "unknown")
        c = container()
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        expected = c.task_notify_token(key)
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip(), expected):
            log.warning("webhook.rejected", vendor="cdex", error="bad or missing bearer token")
            raise HTTPException(status_code=401, detail="webhook rejected")
        try:
            note = parse_notification(await request.body())
        except WebhookError as exc:
            raise HTTPException(status_code=422, detail=str(exc)) from None
        if note.is_event:
            await run_in_threadpool(
                _record_then_enqueue, c, services.record_task_notification, key, note.focus
            )
        return {"status": "ok"}

    @app.post(
        WEBHOOK_ROUTE,
        response_model=contract.WebhookAccepted,
        responses=errors(401, 404, 413, 422, 429),
        openapi_extra=callback_body(
            "the vendor's own callback, verified by its signature (Telnyx: Ed25519 headers) "
            "or credentials (Sinch: Basic)",
            "application/json",
            "multipart/form-data",
        ),
    )
    async def vendor_webhook(
        request: Request,
        vendor: str = Path(
            description="the fax vendor's registry name; only the configured one answers",
            json_schema_extra={"enum": sorted(FAX_VENDORS)},
        ),
    ) -> dict[str, str]:
        """A fax vendor's status or inbound-fax callback (``{vendor}``: the configured one)."""
        guard.limit("webhooks", request.client.host if request.client else "unknown")
        c = container()
        if vendor != c.fax.vendor:  # the URL names the vendor we gave it to (registry name)
            raise HTTPException(status_code=404, detail=f"no webhook for vendor {vendor!r}")
        body = await request.body()
        try:
            event = c.fax.parse_webhook(body, dict(request.headers))
        except WebhookError as exc:
            log.warning("webhook.rejected", vendor=vendor, error=str(exc))
            raise HTTPException(status_code=401, detail="webhook rejected") from None
        if isinstance(event, FaxStatusEvent) and event.outcome is not None:
            await run_in_threadpool(_record_then_enqueue, c, services.record_fax_status, event)
        elif isinstance(event, FaxReceivedEvent):
            await run_in_threadpool(_record_then_enqueue, c, services.record_inbound_fax, event)
        # a progress event (queued, media processed, sending: three a fax) changes nothing
        return {"status": "ok"}

    @app.get(
        "/v1/media/{attempt_id}",
        response_class=Response,
        responses={
            **binary("application/pdf", description="the request letter"),
            **errors(404, 422),
        },
    )
    def media(attempt_id: str, token: str = Query(...)) -> Response:
        """One attempt's request letter, for the channel that sends it (an HMAC ``token``);
        not once every request it asks for was withdrawn (their cases cancelled): a fax still
        queued at the vendor then fails at the fetch instead of carrying the patient's details
        to the provider after the withdrawal."""
        c = container()
        # bytes: compare_digest refuses str with non-ASCII characters (TypeError)
        given = token.encode("utf-8", "replace")
        if not hmac.compare_digest(given, c.media_token(attempt_id).encode("ascii")):
            raise HTTPException(status_code=404)
        with transaction(c.sessions) as s:
            a = s.get(Attempt, attempt_id)
            uri = a.letter_uri if a is not None and not withdrawn(s, a) else None
        if uri is None:
            raise HTTPException(status_code=404)
        return Response(c.store.get(uri), media_type="application/pdf")

    @app.get(
        "/v1/media/deliveries/{delivery_id}",
        response_class=Response,
        responses={
            **binary("application/pdf", description="the packet fax's document"),
            **errors(404, 422),
        },
    )
    def delivery_media(delivery_id: str, token: str = Query(...)) -> Response:
        """The fax document of a packet faxed to an agency (cover sheet + packet), for the fax
        vendor to fetch: an HMAC token for this delivery, and only while it is under way."""
        c = container()
        # bytes: compare_digest refuses str with non-ASCII characters (TypeError)
        given = token.encode("utf-8", "replace")
        if not hmac.compare_digest(given, c.delivery_media_token(delivery_id).encode("ascii")):
            raise HTTPException(status_code=404)
        with transaction(c.sessions) as s:
            d = s.get(Delivery, delivery_id)
            uri = d.document_uri if d is not None and d.status == DeliveryStatus.PENDING else None
        if uri is None:
            raise HTTPException(status_code=404)
        return Response(c.store.get(uri), media_type="application/pdf")

    @app.get(
        "/v1/cases",
        dependencies=[ops],
        response_model=contract.CasesPage,
        responses=errors(401, 403, 422),
    )
    def cases(
        limit: int = Query(100, ge=0, le=500),
        offset: int = Query(0, ge=0, le=MAX_OFFSET),
        status: str | None = None,
        review_type: str | None = None,
        agency_id: str | None = None,
        kind: Annotated[
            CaseKind,
            Query(
                description="review (default): external reviews only; campaign: campaigns' "
                "cases; all: both. The counts follow it."
            ),
        ] = "review",
    ) -> dict[str, Any]:
        """The cases ops watch, by time left, with at-risk marks (readmodels/dashboard.py).
        External reviews only unless ``kind`` says otherwise."""
        return dashboard(
            container(),
            limit=limit,
            offset=offset,
            status=status,
            review_type=review_type,
            agency_id=agency_id,
            kind=kind,
        )

    @app.get(
        "/v1/cases/{case_id}/timeline",
        dependencies=[ops],
        response_model=contract.Timeline,
        responses=errors(401, 403, 404),
    )
    def case_timeline(case_id: str) -> dict[str, Any]:
        """Every audit event of the case in order, and its packets' index."""
        found = timeline(container(), case_id)
        if found is None:
            raise HTTPException(status_code=404, detail="no such case")
        return found

    @app.get(
        "/v1/queues",
        dependencies=[ops],
        response_model=contract.QueuesView,
        responses=errors(401, 403),
    )
    def queue_health_view() -> dict[str, Any]:
        """Depth, delayed, dead letters and oldest message age per queue, workers alive."""
        try:
            health = queues() if queues is not None else None
        except Exception:  # the broker does not answer: say so
            health = None
        if health is None:
            return {"broker_up": False, "queues": [], "workers_alive": None}
        return {"broker_up": True, **asdict(health)}

    @app.get(
        "/v1/cases/{case_id}",
        dependencies=[ops],
        response_model=contract.CaseView,
        responses=errors(401, 403, 404),
    )
    def case(case_id: str) -> dict[str, Any]:
        """The case with its requests, attempts, documents and packets."""
        report = build_report(container(), case_id)
        if not report["cases"]:
            raise HTTPException(status_code=404, detail="no such case")
        return dict(report["cases"][0])

    @app.post(
        "/v1/cases/{case_id}/cancel",
        dependencies=[intake_role],
        response_model=contract.CaseCancelled,
        responses=errors(401, 403, 409, 413, 422),
        openapi_extra=contract.body(CancelBody, required=False),
    )
    async def cancel(case_id: str, request: Request) -> dict[str, Any]:
        """The review ended (withdrawn, insurer reversed): outreach stops, no packet goes."""
        payload = await _read(request, CancelBody, empty_ok=True)
        cancelled = await run_in_threadpool(
            services.cancel_case, container(), case_id, payload.reason[:200]
        )
        if not cancelled:
            raise HTTPException(status_code=409, detail="case unknown or already closed")
        return {"case_id": case_id, "status": "cancelled"}

    @app.get(
        "/v1/exports/attempts",
        dependencies=[compliance],
        response_class=StreamingResponse,
        responses={
            200: {
                "description": "the attempt log (README: Compliance exports); header "
                "Goodfaith-Audit-Chain-Head: <seq>:<hash>",
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "required": ["attempts"],
                            "properties": {
                                "audit_chain_head": {
                                    "type": "object",
                                    "properties": {
                                        "seq": {"type": "integer"},
                                        "hash": {"type": "string"},
                                    },
                                },
                                "attempts": {"type": "array", "items": {"type": "object"}},
                            },
                        }
                    },
                    "text/csv": {"schema": {"type": "string"}},
                },
            },
            **errors(401, 403, 404, 422),
        },
    )
    def attempts_export(
        case_id: str | None = None,
        format: Literal["json", "csv"] = "json",
        provider_id: str | None = None,
        agency_id: str | None = None,
        jurisdiction: str | None = None,
        received_from: str | None = None,
        received_to: str | None = None,
        mask_destination: bool = False,
        campaign_id: str | None = None,
    ) -> Response:
        """The attempt log, streamed: filters on case (id or notification id), provider,
        agency, jurisdiction and the cases' receipt (``[received_from, received_to)``, dates
        or instants); ``mask_destination`` hides fax numbers but their last 4 digits."""
        try:
            start = parse_bound(received_from, "received_from") if received_from else None
            end = parse_bound(received_to, "received_to") if received_to else None
        except ValueError as exc:
            raise HTTPException(status_code=422, detail=str(exc)) from None
        c = container()
        if case_id is not None:  # the case id, or the notification id people see
            found = find_case(c.sessions, case_id)
            if found is None:
                raise HTTPException(
                    status_code=404, detail="no case has that id or notification id"
                )
            case_id = found
        flt = ExportFilter(
            case_id,
            provider_id,
            agency_id,
            jurisdiction,
            start,
            end,
            mask_destination,
            campaign_id,
        )
        head = chain_head(c.sessions)  # read first: the rows are at least this new
        media = "text/csv" if format == "csv" else "application/json"
        return StreamingResponse(
            render_chunks(iter_attempts(c, flt=flt), format, head),
            media_type=media,
            headers={"Goodfaith-Audit-Chain-Head": f"{head[0]}:{head[1]}"},
        )

    @app.get(
        "/v1/audit/verify",
        dependencies=[compliance],
        response_model=contract.AuditCheck,
        responses=errors(401, 403),
    )
    def audit_verify() -> dict[str, Any]:
        """The audit chain checked whole: ``ok``, events, head, and the first broken event."""
        check = verify_chain(container().sessions)
        return {**asdict(check), "message": check.describe()}

    @app.get(
        "/v1/cases/{case_id}/packets/{sequence}",
        dependencies=[compliance],
        response_class=Response,
        responses={
            **binary("application/pdf", description="the packet as delivered"),
            **errors(401, 403, 404, 422),
        },
    )
    def packet(case_id: str, sequence: int = SEQUENCE) -> Response:
        """The packet as delivered (PDF), byte for byte."""
        c = container()
        return Response(
            c.store.get(_packet(c, case_id, sequence).uri), media_type="application/pdf"
        )

    @app.get(
        "/v1/cases/{case_id}/packets/{sequence}/manifest",
        dependencies=[compliance],
        response_class=Response,
        responses={
            200: {
                "description": "the packet's manifest",
                "content": {"application/json": {"schema": {"type": "object"}}},
            },
            **errors(401, 403, 404, 422),
        },
    )
    def packet_manifest(case_id: str, sequence: int = SEQUENCE) -> Response:
        """The packet's manifest (JSON: the SHA-256 of the packet and of every part)."""
        c = container()
        uri = _packet(c, case_id, sequence).manifest_uri
        return Response(c.store.get(uri), media_type="application/json")

    @app.get(
        "/v1/cases/{case_id}/attestation",
        dependencies=[compliance],
        response_class=Response,
        responses={
            200: {
                "description": "the attestation: PDF (format=pdf) or JSON (format=json)",
                "content": {
                    "application/pdf": {"schema": {"type": "string", "format": "binary"}},
                    "application/json": {"schema": {"type": "object"}},
                },
            },
            **errors(401, 403, 404, 422),
        },
    )
    def attestation(case_id: str, format: Literal["pdf", "json"] = "pdf") -> Response:
        """The case's good-faith attestation, standalone (PDF, or JSON with ``format=json``)."""
        found = case_attestation(container(), case_id)
        if found is None:
            raise HTTPException(status_code=404)
        if format == "json":
            return JSONResponse(attestation_json(found))
        return Response(attestation_pdf(found), media_type="application/pdf")

    @app.get(
        "/metrics",
        response_class=PlainTextResponse,
        responses={200: {"description": "Prometheus text exposition format 0.0.4"}},
    )
    def metrics() -> PlainTextResponse:
        """Prometheus text (worker/readmodels/metrics.py): aggregate figures, no PHI."""
        return PlainTextResponse(
            render_metrics(container(), queues), media_type="text/plain; version=0.0.4"
        )

    _dead_letter_routes(app, container, ops)
    _inbox_routes(app, container, ops)
    _review_routes(app, container, ops)
    _dashboard_routes(app)
    _key_routes(app, container, Depends(guard.require(Role.ADMIN)))
    _campaign_routes(app, container, intake_role, ops)
    return app


#: The dashboard's files (api/static/): a page and its script, no data in them; the script
#: asks for a key once, keeps it in sessionStorage and sends it as a Bearer header.
_STATIC = {
    "/dashboard": ("dashboard.html", "text/html; charset=utf-8"),
    "/dashboard.js": ("dashboard.js", "text/javascript; charset=utf-8"),
    "/dashboard.css": ("dashboard.css", "text/css; charset=utf-8"),
}
_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'"
)


def _dashboard_routes(app: FastAPI) -> None:
    """GET /dashboard (open: the page holds no data; its fetches need an ops key)."""
    files = resources.files("api") / "static"

    def serve(name: str, media: str) -> Callable[[], Response]:
        body = (files / name).read_bytes()

        def page() -> Response:
            return Response(
                body,
                media_type=media,
                headers={
                    "Content-Security-Policy": _CSP,
                    "X-Content-Type-Options": "nosniff",
                    "Referrer-Policy": "no-referrer",
                    "Cache-Control": "no-store",
                },
            )

        return page

    for path, (name, media) in _STATIC.items():
        app.add_api_route(
            path,
            serve(name, media),
            methods=["GET"],
            response_class=Response,
            responses={
                200: {
                    "description": f"the ops dashboard's {name} (no data in it)",
                    "content": {media.split(";")[0]: {"schema": {"type": "string"}}},
                }
            },
        )


def _invalid(found: Any) -> Response:
    """422 problem naming each invalid field of a notification (``errors``)."""
    return problems.problem(
        422,
        "the notification is invalid: see errors",
        type_="invalid-notification",
        title="Invalid notification",
        errors=[{"field": f, "message": m} for f, m in found],
    )


class InvalidBody(Exception):
    """A small request body that is not the route's model; answered as a 422 problem."""

    def __init__(self, found: list[tuple[str, str]]) -> None:
        self.errors = found
        super().__init__("; ".join(f"{f}: {m}" for f, m in found))


M = TypeVar("M", bound=BaseModel)


async def _read(request: Request, model: type[M], *, empty_ok: bool = False) -> M:
    """The JSON body as ``model`` (an empty body is ``{}`` when ``empty_ok``); InvalidBody
    naming each field otherwise."""
    raw = await request.body()
    if not raw.strip() and empty_ok:
        return model()
    try:
        data = jsonbody.loads(raw, JSON_BACKSTOP)
    except ValueError:
        raise InvalidBody([("(body)", "not JSON (UTF-8)")]) from None
    if not isinstance(data, dict):
        raise InvalidBody([("(body)", "must be a JSON object")])
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise InvalidBody(
            [
                (".".join(str(p) for p in e["loc"]) or "(body)", e["msg"])
                for e in exc.errors(include_input=False)
            ]
        ) from None


def _invalid_body(request: Request, exc: Exception) -> Response:
    found = exc.errors if isinstance(exc, InvalidBody) else []
    return problems.problem(
        422,
        "the body is invalid: see errors",
        type_="invalid-body",
        title="Invalid body",
        instance=request.url.path,
        errors=[{"field": f, "message": m} for f, m in found],
    )


def _packet(c: Container, case_id: str, sequence: int) -> Packet:
    with transaction(c.sessions) as s:
        found = s.query(Packet).filter_by(case_id=case_id, sequence=sequence).one_or_none()
    if found is None:
        raise HTTPException(status_code=404, detail="no such packet")
    return found


def _campaign_routes(
    app: FastAPI, container: Callable[[], Container], intake_role: Any, ops: Any
) -> None:
    """Campaigns (bulk record retrieval): loaded and cancelled by the carrier's systems (an
    intake key, like notifications and case cancels); progress and provider profiles for ops.
    """

    @app.post(
        "/v1/campaigns",
        status_code=201,
        response_model=contract.CampaignLoaded,
        responses={
            200: {
                "description": "this load was made before (the same Idempotency-Key, or the "
                "same content without one): the campaign it made; nothing stored",
                "model": contract.CampaignLoaded,
            },
            **errors(401, 403, 413, 422),
        },
        openapi_extra=contract.body(contract.CampaignLoad, description="the campaign"),
    )
    async def load_campaign(
        request: Request,
        who: Principal = intake_role,
        idempotency_key: str | None = Header(
            None,
            alias="Idempotency-Key",
            min_length=1,
            max_length=64,
            description="names this load: the same key again returns the campaign it made "
            "(200), with other content 422; without it the content's SHA-256 names the load",
        ),
    ) -> Response:
        """Load a campaign: one open request per row, all or nothing (422 naming every bad
        value by row and column). 201 with its id; 200 with the same id when this load was
        made before, as notifications do: a retried or repeated load never makes a second
        campaign."""
        try:
            body = jsonbody.loads(await request.body(), JSON_BACKSTOP)
        except ValueError:
            return _invalid_campaign([(0, "(body)", "not JSON (UTF-8)")])
        try:
            result = await run_in_threadpool(
                services.load_campaign,
                container(),
                body,
                f"key:{who.key_id}",
                None,
                idempotency_key,
            )
        except CampaignError as exc:
            return _invalid_campaign(exc.errors)
        return JSONResponse(
            {
                "campaign_id": result.campaign_id,
                "requests": result.requests,
                "created": result.created,
                "status": result.status,
            },
            status_code=201 if result.created else 200,
        )

    @app.get("/v1/campaigns", dependencies=[ops], responses=errors(401, 403, 422))
    def campaigns_list(
        limit: int = Query(50, ge=1, le=200), offset: int = Query(0, ge=0)
    ) -> dict[str, Any]:
        return list_campaigns(container(), limit=limit, offset=offset)

    @app.get("/v1/campaigns/{campaign_id}", dependencies=[ops], responses=errors(401, 403, 404))
    def campaign_one(campaign_id: str) -> dict[str, Any]:
        found = campaign_detail(container(), campaign_id)
        if found is None:
            raise HTTPException(status_code=404, detail="no such campaign")
        return found

    @app.post(
        "/v1/campaigns/{campaign_id}/cancel",
        response_model=contract.CampaignCancelled,
        responses=errors(401, 403, 404, 413, 422),
        openapi_extra=contract.body(CancelBody, required=False),
    )
    async def campaign_cancel(
        campaign_id: str, request: Request, who: Principal = intake_role
    ) -> dict[str, Any]:
        """Cancel every open request of the campaign (audited); 404 for an unknown one."""
        payload = await _read(request, CancelBody, empty_ok=True)
        reason = payload.reason if "reason" in payload.model_fields_set else "campaign cancelled"
        reason = reason[:200]
        cancelled = await run_in_threadpool(
            services.cancel_campaign, container(), campaign_id, reason, f"key:{who.key_id}"
        )
        if cancelled is None:
            raise HTTPException(status_code=404, detail="no such campaign")
        return {"campaign_id": campaign_id, "status": "cancelled", "cases_cancelled": cancelled}

    @app.get(
        "/v1/providers/profiles",
        dependencies=[ops],
        response_class=Response,
        responses={
            200: {
                "description": "one row per provider",
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "required": ["profiles"],
                            "properties": {
                                "profiles": {"type": "array", "items": {"type": "object"}}
                            },
                        }
                    },
                    "text/csv": {"schema": {"type": "string"}},
                },
            },
            **errors(401, 403, 422),
        },
    )
    def profiles(provider_id: str | None = None, format: str = "json") -> Response:
        """Per provider: retrieval rate, time to reply, channel success (JSON or CSV)."""
        if format not in ("json", "csv"):
            raise HTTPException(status_code=422, detail="format must be csv or json")
        rows = provider_profiles(container(), provider_id)
        media = "text/csv" if format == "csv" else "application/json"
        return Response("".join(render_profiles(rows, format)), media_type=media)


def _invalid_campaign(errors: list[tuple[int, str, str]]) -> Response:
    """422 problem naming each bad value of a campaign by row and column."""
    return problems.problem(
        422,
        "the campaign is invalid: see errors (row 1 is the first request row); nothing stored",
        type_="invalid-campaign",
        title="Invalid campaign",
        errors=[
            {
                "field": col if r == 0 else f"requests[{r}].{col}",
                "row": r,
                "column": col,
                "message": m,
            }
            for r, col, m in errors[:1000]
        ],
        error_count=len(errors),
    )


def _dead_letter_routes(app: FastAPI, container: Callable[[], Container], ops: Any) -> None:
    """Ops: list the messages dramatiq gave up on, and retry one (its command is re-enqueued)."""

    @app.get(
        "/v1/dead-letters",
        dependencies=[ops],
        response_model=contract.DeadLettersPage,
        responses=errors(401, 403, 422),
    )
    def list_dead_letters(
        include_retried: bool = Query(False, alias="all"),
        limit: int = Query(100, ge=0, le=500),
        offset: int = Query(0, ge=0, le=MAX_OFFSET),
    ) -> dict[str, Any]:
        page = dead_letters(
            container(), include_retried=include_retried, limit=limit, offset=offset
        )
        return page

    @app.post(
        "/v1/dead-letters/{letter_id}/retry",
        dependencies=[ops],
        response_model=contract.Outcome,
        responses=errors(401, 403, 404, 409),
    )
    def retry_dead_letter(letter_id: str) -> dict[str, str]:
        outcome = services.retry_dead_letter(container(), letter_id)
        if outcome is services.RetryOutcome.UNKNOWN:
            raise HTTPException(status_code=404, detail="no such dead letter")
        if outcome is services.RetryOutcome.ALREADY_RETRIED:
            raise HTTPException(status_code=409, detail="dead letter already retried")
        return {"id": letter_id, "status": outcome.value}


def _key_routes(app: FastAPI, container: Callable[[], Container], admin: Any) -> None:
    """Admin: API keys (``goodfaith keys`` does the same from the command line)."""

    @app.get(
        "/v1/keys",
        dependencies=[admin],
        response_model=contract.KeyList,
        responses=errors(401, 403, 422),
    )
    def keys(include_revoked: bool = Query(False, alias="all")) -> dict[str, Any]:
        return {"keys": list_keys(container().sessions, include_revoked)}

    @app.post(
        "/v1/keys",
        status_code=201,
        dependencies=[admin],
        response_model=contract.KeyCreated,
        responses=errors(401, 403, 413, 422),
        openapi_extra=contract.body(KeyBody),
    )
    async def new_key(request: Request) -> dict[str, str]:
        """A new API key with one role; the key itself is in this answer only."""
        payload = await _read(request, KeyBody)
        c = container()
        made = await run_in_threadpool(
            create_key, c.sessions, payload.role, payload.name[:128], c.clock.now()
        )
        return {"id": made.id, "role": made.role.value, "name": made.name, "key": made.key}

    @app.post(
        "/v1/keys/{key_id}/revoke",
        dependencies=[admin],
        response_model=contract.Outcome,
        responses=errors(401, 403, 404),
    )
    def revoke(key_id: str) -> dict[str, str]:
        c = container()
        done = revoke_key(c.sessions, key_id, c.clock.now())
        if done is None:
            raise HTTPException(status_code=404, detail="no such key")
        return {"id": key_id, "status": "revoked" if done else "already revoked"}


def _inbox_routes(app: FastAPI, container: Callable[[], Container], ops: Any) -> None:
    """Ops: the unmatched inbox. List the inbound documents no request owns, open one (details,
    then its bytes), assign it to a request (``{"request": id or GF-reference, "by": who}``;
    audited), after which it counts for that request."""

    @app.get(
        "/v1/inbox",
        dependencies=[ops],
        response_model=contract.InboxPage,
        responses=errors(401, 403, 422),
    )
    def inbox(
        limit: int = Query(100, ge=0, le=500), offset: int = Query(0, ge=0, le=MAX_OFFSET)
    ) -> dict[str, Any]:
        return unmatched_documents(container(), limit=limit, offset=offset)

    @app.get(
        "/v1/inbox/{document_id}",
        dependencies=[ops],
        response_model=contract.InboxDocument,
        responses=errors(401, 403, 404),
    )
    def inbox_document(document_id: str) -> dict[str, Any]:
        found = unmatched_document(container(), document_id)
        if found is None:
            raise HTTPException(status_code=404, detail="no unmatched document by that id")
        return found

    @app.get(
        "/v1/inbox/{document_id}/content",
        dependencies=[ops],
        response_class=Response,
        responses={
            **binary("application/pdf", description="the document's PDF"),
            **errors(401, 403, 404),
        },
    )
    def inbox_content(document_id: str) -> Response:
        data = unmatched_content(container(), document_id)
        if data is None:
            raise HTTPException(status_code=404, detail="no unmatched document by that id")
        return Response(data, media_type="application/pdf")

    @app.post(
        "/v1/inbox/{document_id}/assign",
        dependencies=[ops],
        response_model=contract.DocumentOutcome,
        responses=errors(401, 403, 404, 409, 413, 422),
        openapi_extra=contract.body(AssignBody),
    )
    async def inbox_assign(document_id: str, request: Request) -> dict[str, str]:
        payload = await _read(request, AssignBody)
        outcome = await run_in_threadpool(
            services.assign_document, container(), document_id, payload.request, payload.by
        )
        if outcome is services.AssignOutcome.UNKNOWN_DOCUMENT:
            raise HTTPException(status_code=404, detail="no document by that id")
        if outcome is services.AssignOutcome.UNKNOWN_REQUEST:
            raise HTTPException(status_code=404, detail="no request by that id or reference")
        if outcome is services.AssignOutcome.ALREADY_ASSIGNED:
            raise HTTPException(status_code=409, detail="document already belongs to a request")
        return {"document_id": document_id, "status": outcome.value}


# --- ops review queue -------------------------------------------------------------------------


def _review_routes(app: FastAPI, container: Callable[[], Container], ops: Any) -> None:
    """Ops: the documents flagged at intake that wait for a person, and the decision on one
    (release: it goes into the packet; reject: quarantined, never sent). Audited."""

    @app.get(
        "/v1/review",
        dependencies=[ops],
        response_model=contract.ReviewQueue,
        responses=errors(401, 403),
    )
    def review_queue() -> dict[str, Any]:
        items = services.review_queue(container())
        return {"documents": [item.as_dict() for item in items], "count": len(items)}

    async def _decide(document_id: str, request: Request, decision: Decision) -> dict[str, str]:
        payload = await _read(request, ReviewBody)
        outcome = await run_in_threadpool(
            services.review_document,
            container(),
            document_id,
            decision,
            payload.reviewer,
            payload.note,
        )
        if outcome is ReviewOutcome.UNKNOWN:
            raise HTTPException(status_code=404, detail="no such document")
        if outcome is ReviewOutcome.NOT_PENDING:
            raise HTTPException(status_code=409, detail="document is not waiting for review")
        return {"document_id": document_id, "status": f"{decision.value}d"}

    decided: dict[str, Any] = {
        "dependencies": [ops],
        "response_model": contract.DocumentOutcome,
        "responses": errors(401, 403, 404, 409, 413, 422),
        "openapi_extra": contract.body(ReviewBody),
    }

    @app.post("/v1/review/{document_id}/release", **decided)
    async def release_document(document_id: str, request: Request) -> dict[str, str]:
        return await _decide(document_id, request, Decision.RELEASE)

    @app.post("/v1/review/{document_id}/reject", **decided)
    async def reject_document(document_id: str, request: Request) -> dict[str, str]:
        return await _decide(document_id, request, Decision.REJECT)
