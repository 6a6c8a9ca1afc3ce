"""Limits at the edge: every request body is read here, whole and bounded, before any route
sees it; and no NUL character gets into a path or query (PostgreSQL's text cannot hold one:
a lookup by such an id failed with DataError, a 500).

- A NUL (``%00``) in the path or query → 422 problem (``/problems/nul-character``).
- More bytes than allowed (``Content-Length`` or counted as they arrive) → 413 problem
  (``/problems/body-too-large``); vendor webhooks (``/v1/webhooks/...``) have their own,
  larger limit (a Sinch inbound-fax callback may carry the fax's PDF).
- A body nested deeper than ``max_json_depth`` levels of ``[``/``{`` → 422 problem
  (``/problems/too-deeply-nested``), whatever its content type says (routes read JSON from
  the raw body); multipart forms are left to their parser. Python's JSON parser recurses once
  per level, so 100,000 ``[`` would otherwise end in ``RecursionError`` inside a route.

Settings: ``GOODFAITH_BODY_LIMITS__*`` (:class:`config.settings.BodyLimitSettings`), read on
the first request with a body (the container may not exist when the app is built).
"""

from __future__ import annotations

from collections.abc import Callable

from starlette.datastructures import Headers
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api import problems
from config.settings import BodyLimitSettings
from connectors.jsonbody import nesting_depth

__all__ = ["WEBHOOK_PREFIX", "EdgeLimits"]

WEBHOOK_PREFIX = "/v1/webhooks/"


class EdgeLimits:
    """ASGI middleware: reads the body (at most the limit), refuses it or replays it to
    ``app``. ``limits`` is called once, on the first request that carries a body."""

    def __init__(self, app: ASGIApp, limits: Callable[[], BodyLimitSettings]) -> None:
        self.app = app
        self._limits_source = limits
        self._limits: BodyLimitSettings | None = None

    def limits(self) -> BodyLimitSettings:
        if self._limits is None:
            self._limits = self._limits_source()
        return self._limits

    def _max_bytes(self, webhook: bool) -> int:
        limits = self.limits()
        return limits.webhook_max_bytes if webhook else limits.max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        path: str = scope.get("path", "")
        query: bytes = scope.get("query_string", b"")
        if "\x00" in path or b"%00" in query or b"\x00" in query:
            refusal = problems.problem(
                422,
                "the path or query holds a NUL character (%00), which no identifier or "
                "filter here can contain",
                type_="nul-character",
                title="NUL character in the request",
                instance=path.replace("\x00", "%00"),
            )
            await refusal(scope, receive, send)
            return
        webhook = path.startswith(WEBHOOK_PREFIX)
        setting = "WEBHOOK_MAX_BYTES" if webhook else "MAX_BYTES"
        declared = headers.get("content-length", "").strip()
        max_bytes: int | None = None  # known once the request shows it has a body
        if declared.isascii() and declared.isdigit() and declared.strip("0"):
            max_bytes = self._max_bytes(webhook)
            if len(declared) > 18 or int(declared) > max_bytes:
                await _too_large(path, max_bytes, setting)(scope, receive, send)
                return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away mid-body
                await self.app(scope, _replay([message], receive), send)
                return
            chunk = message.get("body", b"")
            if chunk:
                chunks.append(chunk)
                size += len(chunk)
                if max_bytes is None:
                    max_bytes = self._max_bytes(webhook)
                if size > max_bytes:
                    await _too_large(path, max_bytes, setting)(scope, receive, send)
                    return
            if not message.get("more_body"):
                break
        if not size:  # no body (a GET, an empty POST): nothing to check
            empty: Message = {"type": "http.request", "body": b"", "more_body": False}
            await self.app(scope, _replay([empty], receive), send)
            return
        limits = self.limits()
        body = b"".join(chunks)
        kind = headers.get("content-type", "").split(";")[0].strip().lower()
        if not kind.startswith("multipart/") and nesting_depth(body) > limits.max_json_depth:
            refusal = problems.problem(
                422,
                f"the body nests deeper than {limits.max_json_depth} levels of JSON arrays or "
                "objects (GOODFAITH_BODY_LIMITS__MAX_JSON_DEPTH)",
                type_="too-deeply-nested",
                title="Body nested too deeply",
                instance=path,
            )
            await refusal(scope, receive, send)
            return
        whole: Message = {"type": "http.request", "body": body, "more_body": False}
        await self.app(scope, _replay([whole], receive), send)


def _too_large(path: str, max_bytes: int, setting: str) -> Response:
    return problems.problem(
        413,
        f"the body is over {max_bytes} bytes (GOODFAITH_BODY_LIMITS__{setting})",
        type_="body-too-large",
        title="Body too large",
        instance=path,
    )


def _replay(messages: list[Message], receive: Receive) -> Receive:
    """A ``receive`` that answers ``messages`` first, then the client's own (disconnects)."""
    pending = list(messages)

    async def replayed() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replayed
