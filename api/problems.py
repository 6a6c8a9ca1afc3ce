"""Errors as RFC 9457 problem details (``application/problem+json``).

Every error the API answers has ``type``, ``title``, ``status`` and, where it helps, ``detail``
and ``instance`` (the request path); extension members carry structured data (``errors``: one
``{field, message}`` per invalid notification field). Never a stack trace, never PHI: details
name fields, ids and settings, not values. A failure nobody anticipated is a 500 whose body
says only that, and whose log line names the exception type.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from http import HTTPStatus
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

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

    @app.middleware("http")
    async def unexpected(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        try:
            return await call_next(request)
        except Exception as exc:  # the last line of defence: no trace, no PHI in the answer
            log.error(
                "api.unexpected_error",
                error=type(exc).__name__,
                method=request.method,
                path=request.url.path,
            )
            return problem(
                500, "an unexpected error; it has been logged", instance=request.url.path
            )
