"""Errors as RFC 9457 problem details (``application/problem+json``).

Every error the API answers has ``type``, ``title``, ``status`` and, where it helps, ``detail``
and ``instance`` (the request path); extension members carry structured data (``errors``: one
``{field, message}`` per invalid notification field). Never a stack trace, never PHI: details
name fields, ids and settings, not values. A failure nobody anticipated is a 500 whose body
says only that, and whose log line names the exception type.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["PROBLEM_JSON", "install", "problem"]

PROBLEM_JSON = "application/problem+json"
#: ``type`` URIs: ``about:blank`` means "the status code says it all" (RFC 9457 §4.2.1); ours
#: are relative references documented in the README's API section.
TYPE_BASE = "/problems/"

log = structlog.get_logger("goodfaith.api")


def problem(
    status: int,
    detail: str | None = None,
    *,
    type_: str | None = None,
    title: str | None = None,
    instance: str | None = None,
    headers: dict[str, str] | None = None,
    **extensions: Any,
) -> JSONResponse:
    """One problem-details response. ``type_`` is a short name (e.g. ``unauthorized``) made
    into ``/problems/<name>``; without it ``about:blank`` and the status phrase as title."""
    body: dict[str, Any] = {
        "type": TYPE_BASE + type_ if type_ else "about:blank",
        "title": title or HTTPStatus(status).phrase,
        "status": status,
    }
    if detail:
        body["detail"] = detail
    if instance:
        body["instance"] = instance
    body.update(extensions)
    return JSONResponse(body, status_code=status, headers=headers, media_type=PROBLEM_JSON)


def install(app: FastAPI) -> None:
    """Answer HTTP errors, request validation errors and unexpected exceptions as problems."""

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        detail: str | None = exc.detail if isinstance(exc.detail, str) else None
        if detail == HTTPStatus(exc.status_code).phrase:
            detail = None
        return problem(
            exc.status_code,
            detail,
            instance=request.url.path,
            headers=dict(exc.headers) if exc.headers else None,
        )

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> Response:
        errors = [
            {
                "field": ".".join(str(p) for p in e.get("loc", ()) if p not in ("query", "path")),
                "message": str(e.get("msg", "invalid")),
            }
            for e in exc.errors()
        ]  # field names and messages only: pydantic's "input" (the value) is left out
        return problem(
            422,
            "the request's parameters are invalid",
            type_="invalid-request",
            title="Invalid request",
            instance=request.url.path,
            errors=errors,
        )

    app.add_middleware(AnswerUnexpected)


class AnswerUnexpected:
    """ASGI middleware, the last line of defence: an exception no handler took becomes a 500
    problem whose body says only that, and whose log line names the exception type (no trace,
    no PHI). Plain ASGI rather than ``@app.middleware("http")``: Starlette's
    ``BaseHTTPMiddleware`` runs every request through a task group and a streamed copy of the
    response, which was over a quarter of the API's CPU on fax webhooks."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def sending(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, sending)
        except Exception as exc:
            log.error(
                "api.unexpected_error",
                error=type(exc).__name__,
                method=scope.get("method"),
                path=scope.get("path"),
            )
            if started:  # part of the answer is out: nothing to replace it with
                raise
            response = problem(
                500, "an unexpected error; it has been logged", instance=scope.get("path")
            )
            await response(scope, receive, send)
