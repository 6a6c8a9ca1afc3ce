"""The HTTP surface: intake, channel webhooks, request-letter media, ops and compliance views.

Errors are translated here: invalid notifications → 422 naming each field; webhooks that
fail verification → 401; unknown ids → 404. Handlers do the short write and enqueue the
rest; nothing slow runs in a request.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Callable
from typing import Any

import structlog
from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from starlette.concurrency import run_in_threadpool

from connectors.base import FaxReceivedEvent, FaxStatusEvent, WebhookError
from connectors.registry import WEBHOOK_ROUTE
from storage.db import transaction
from storage.models import Attempt
from worker import services
from worker.notification import IntakeError
from worker.readmodels.attestation import attestation_json, attestation_pdf, case_attestation
from worker.readmodels.dashboard import dashboard, status_counts
from worker.readmodels.deadletters import dead_letters
from worker.readmodels.export import iter_attempts, render_export
from worker.readmodels.report import build_report
from worker.readmodels.risk import metric_lines
from worker.services.review import Decision, ReviewOutcome
from worker.wiring import Container

log = structlog.get_logger("goodfaith.api")


def create_app(container: Callable[[], Container]) -> FastAPI:
    app = FastAPI(title="goodfaith", version="0.1.0")

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/v1/notifications", status_code=201)
    async def notifications(request: Request) -> JSONResponse:
        try:
            body = await request.json()
        except ValueError:
            return JSONResponse({"errors": [{"field": "(body)", "message": "not JSON"}]}, 422)
        c = container()
        try:  # database work runs in the thread pool, never on the event loop
            result = await run_in_threadpool(services.intake, c, body)
        except IntakeError as exc:
            return JSONResponse(
                {"errors": [{"field": f, "message": m} for f, m in exc.errors]}, status_code=422
            )
        body_out: dict[str, Any] = {"case_id": result.case_id, "created": result.created}
        if result.warnings:  # the case is taken in, and flagged: say so to the sender too
            body_out["warnings"] = result.warnings
        return JSONResponse(body_out, status_code=201 if result.created else 200)

    @app.post(WEBHOOK_ROUTE)
    async def vendor_webhook(vendor: str, request: Request) -> dict[str, str]:
        c = container()
        if vendor != c.fax.vendor:  # the URL names the vendor we gave it to (registry name)
            raise HTTPException(status_code=404, detail=f"no webhook for vendor {vendor!r}")
        body = await request.body()
        try:
            event = c.fax.parse_webhook(body, dict(request.headers))
        except WebhookError as exc:
            log.warning("webhook.rejected", error=str(exc))
            raise HTTPException(status_code=401, detail="webhook rejected") from None
        follow: list[Any] = []
        if isinstance(event, FaxStatusEvent):
            follow = await run_in_threadpool(services.record_fax_status, c, event)
        elif isinstance(event, FaxReceivedEvent):
            follow = await run_in_threadpool(services.record_inbound_fax, c, event)
        await run_in_threadpool(c.dispatcher.enqueue, follow)
        return {"status": "ok"}

    @app.get("/v1/media/{attempt_id}")
    def media(attempt_id: str, token: str = Query(...)) -> Response:
        c = container()
        if not hmac.compare_digest(token, c.media_token(attempt_id)):
            raise HTTPException(status_code=404)
        with transaction(c.sessions) as s:
            a = s.get(Attempt, attempt_id)
            uri = a.letter_uri if a else None
        if uri is None:
            raise HTTPException(status_code=404)
        return Response(c.store.get(uri), media_type="application/pdf")

    @app.get("/v1/cases")
    def cases(
        limit: int = Query(100, ge=0, le=500), offset: int = Query(0, ge=0)
    ) -> dict[str, Any]:
        return dashboard(container(), limit=limit, offset=offset)

    @app.get("/v1/cases/{case_id}")
    def case(case_id: str) -> dict[str, Any]:
        report = build_report(container(), case_id)
        if not report["cases"]:
            raise HTTPException(status_code=404)
        return dict(report["cases"][0])

    @app.post("/v1/cases/{case_id}/cancel")
    async def cancel(case_id: str, request: Request) -> dict[str, Any]:
        raw = await request.body()
        try:
            payload = json.loads(raw) if raw else {}
        except ValueError:
            raise HTTPException(status_code=422, detail="body must be a JSON object") from None
        if not isinstance(payload, dict):
            raise HTTPException(status_code=422, detail="body must be a JSON object")
        reason = payload.get("reason", "withdrawn")
        cancelled = await run_in_threadpool(
            services.cancel_case, container(), case_id, str(reason)[:200]
        )
        if not cancelled:
            raise HTTPException(status_code=409, detail="case unknown or already closed")
        return {"case_id": case_id, "status": "cancelled"}

    @app.get("/v1/exports/attempts")
    def attempts_export(case_id: str | None = None, format: str = "json") -> Response:
        if format not in ("json", "csv"):
            raise HTTPException(status_code=422, detail="format must be csv or json")
        text = render_export(iter_attempts(container(), case_id), format)
        media = "text/csv" if format == "csv" else "application/json"
        return PlainTextResponse(text, media_type=media)

    @app.get("/v1/cases/{case_id}/attestation")
    def attestation(case_id: str, format: str = "pdf") -> Response:
        if format not in ("pdf", "json"):
            raise HTTPException(status_code=422, detail="format must be pdf or json")
        found = case_attestation(container(), case_id)
        if found is None:
            raise HTTPException(status_code=404)
        if format == "json":
            return JSONResponse(attestation_json(found))
        return Response(attestation_pdf(found), media_type="application/pdf")

    @app.get("/metrics")
    def metrics() -> PlainTextResponse:
        counts = status_counts(container())
        lines = ["# TYPE goodfaith_cases gauge"]
        lines += [f'goodfaith_cases{{status="{k}"}} {v}' for k, v in sorted(counts.items())]
        lines += metric_lines(container())
        return PlainTextResponse("\n".join(lines) + "\n")

    _dead_letter_routes(app, container)
    _review_routes(app, container)
    return app


def _dead_letter_routes(app: FastAPI, container: Callable[[], Container]) -> None:
    """Ops: list the messages dramatiq gave up on, and retry one (its command is re-enqueued)."""

    @app.get("/v1/dead-letters")
    def list_dead_letters(
        include_retried: bool = Query(False, alias="all"),
        limit: int = Query(100, ge=0, le=500),
        offset: int = Query(0, ge=0),
    ) -> dict[str, Any]:
        page = dead_letters(
            container(), include_retried=include_retried, limit=limit, offset=offset
        )
        return page

    @app.post("/v1/dead-letters/{letter_id}/retry")
    def retry_dead_letter(letter_id: str) -> dict[str, str]:
        outcome = services.retry_dead_letter(container(), letter_id)
        if outcome is services.RetryOutcome.UNKNOWN:
            raise HTTPException(status_code=404, detail="no such dead letter")
        if outcome is services.RetryOutcome.ALREADY_RETRIED:
            raise HTTPException(status_code=409, detail="dead letter already retried")
        return {"id": letter_id, "status": outcome.value}


# --- ops review queue (issue 10) --------------------------------------------------------------
# A block of its own: the access-control work attaches the ``ops`` role to these routes at merge.


def _review_routes(app: FastAPI, container: Callable[[], Container]) -> None:
    """Ops: the documents flagged at intake that wait for a person, and the decision on one
    (release: it goes into the packet; reject: quarantined, never sent). Audited."""

    @app.get("/v1/review")
    def review_queue() -> dict[str, Any]:
        items = services.review_queue(container())
        return {"documents": [item.as_dict() for item in items], "count": len(items)}

    async def _decide(document_id: str, request: Request, decision: Decision) -> dict[str, str]:
        raw = await request.body()
        try:
            payload = json.loads(raw) if raw else {}
        except ValueError:
            raise HTTPException(status_code=422, detail="body must be a JSON object") from None
        if not isinstance(payload, dict):
            raise HTTPException(status_code=422, detail="body must be a JSON object")
        reviewer = str(payload.get("reviewer") or "").strip()
        if not reviewer:
            raise HTTPException(status_code=422, detail="reviewer: who decides (a name or id)")
        note = str(payload.get("note") or "")
        outcome = await run_in_threadpool(
            services.review_document, container(), document_id, decision, reviewer, note
        )
        if outcome is ReviewOutcome.UNKNOWN:
            raise HTTPException(status_code=404, detail="no such document")
        if outcome is ReviewOutcome.NOT_PENDING:
            raise HTTPException(status_code=409, detail="document is not waiting for review")
        return {"document_id": document_id, "status": f"{decision.value}d"}

    @app.post("/v1/review/{document_id}/release")
    async def release_document(document_id: str, request: Request) -> dict[str, str]:
        return await _decide(document_id, request, Decision.RELEASE)

    @app.post("/v1/review/{document_id}/reject")
    async def reject_document(document_id: str, request: Request) -> dict[str, str]:
        return await _decide(document_id, request, Decision.REJECT)
