"""Who may call what: Bearer API keys with one role each, and rate limits.

``Authorization: Bearer <key>`` (keys from ``goodfaith keys create --role ...``). No key, a
malformed header or an unknown / revoked key → 401 with ``WWW-Authenticate: Bearer``; a live
key whose role does not open the endpoint → 403. Both are logged (``auth.refused``) with the
reason, the path, the role needed and the key's id when known — never the key itself.

Rate limits are token buckets in this process (one per caller): intake per key, webhooks per
client address; over the limit → 429 with ``Retry-After`` (seconds). Settings
``GOODFAITH_RATE_LIMITS__*``; a rate of 0 turns a limit off (time-compressed simulations).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import structlog
from fastapi import HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from worker.services.keys import Principal, Role, authenticate
from worker.wiring import Container

__all__ = ["Guard", "RateLimiter", "TokenBucket"]

log = structlog.get_logger("goodfaith.api")

#: Declares the scheme in the OpenAPI document; errors are ours (auto_error=False).
bearer = HTTPBearer(auto_error=False, description="an API key: goodfaith keys create --role ...")


@dataclass
class TokenBucket:
    """``rate`` tokens per second up to ``burst``; ``take`` returns 0 when allowed, else the
    seconds until one token is back."""

    rate: float
    burst: float
    tokens: float
    stamp: float

    def take(self, now: float) -> float:
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.rate


@dataclass
class RateLimiter:
    """One token bucket per caller key; ``rate`` per second (0: no limit), ``burst`` tokens.
    At most ``max_callers`` buckets are kept (the oldest are dropped first)."""

    rate: float
    burst: int
    clock: Callable[[], float] = time.monotonic
    max_callers: int = 10_000
    _buckets: dict[str, TokenBucket] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def check(self, caller: str) -> float:
        """0 when ``caller`` may go on, else the seconds to wait."""
        if self.rate <= 0:
            return 0.0
        now = self.clock()
        with self._lock:
            bucket = self._buckets.get(caller)
            if bucket is None:
                if len(self._buckets) >= self.max_callers:
                    self._buckets.pop(next(iter(self._buckets)))
                bucket = self._buckets[caller] = TokenBucket(
                    self.rate, max(1, self.burst), max(1, self.burst), now
                )
            return bucket.take(now)


def too_many(wait_s: float, what: str) -> HTTPException:
    return HTTPException(
        status_code=429,
        detail=f"rate limit for {what} reached: retry after the number of seconds in Retry-After",
        headers={"Retry-After": str(max(1, math.ceil(wait_s)))},
    )


class Guard:
    """The API's checks, built from the container's settings on first use (the container may
    not exist when the app is created)."""

    def __init__(self, container: Callable[[], Container]) -> None:
        self._container = container
        self._lock = threading.Lock()
        self._limiters: dict[str, RateLimiter] = {}

    def limiter(self, name: str) -> RateLimiter:
        with self._lock:
            found = self._limiters.get(name)
            if found is None:
                limits = self._container().settings.rate_limits
                rate, burst = {
                    "intake": (limits.intake_per_s, limits.intake_burst),
                    "webhooks": (limits.webhooks_per_s, limits.webhooks_burst),
                }[name]
                found = self._limiters[name] = RateLimiter(rate, burst)
            return found

    def limit(self, name: str, caller: str) -> None:
        """429 when ``caller`` is over the ``name`` limit."""
        wait = self.limiter(name).check(caller)
        if wait > 0:
            log.warning("api.rate_limited", limit=name, caller=caller)
            raise too_many(wait, name)

    def require(self, *roles: Role) -> Callable[..., object]:
        """A FastAPI dependency: the caller's Principal when its key has one of ``roles``."""
        wanted = frozenset(roles)
        needed = ",".join(sorted(r.value for r in wanted))

        async def dependency(request: Request) -> Principal:
            credentials: HTTPAuthorizationCredentials | None = await bearer(request)
            path = request.url.path
            if credentials is None or not credentials.credentials:
                _refused("no_key", path, needed)
                raise _unauthorized("send Authorization: Bearer <key> (goodfaith keys create)")
            principal = await run_in_threadpool(
                authenticate, self._container().sessions, credentials.credentials
            )
            if principal is None:
                _refused("unknown_key", path, needed)
                raise _unauthorized("the key is unknown or revoked")
            if principal.role not in wanted:
                _refused("wrong_role", path, needed, key_id=principal.key_id, role=principal.role)
                raise HTTPException(
                    status_code=403, detail=f"this endpoint needs a key with role {needed}"
                )
            return principal

        dependency.goodfaith_roles = tuple(sorted(r.value for r in wanted))  # type: ignore[attr-defined]
        return dependency


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(status_code=401, detail=detail, headers={"WWW-Authenticate": "Bearer"})


def _refused(reason: str, path: str, needed: str, **extra: str) -> None:
    log.warning("auth.refused", reason=reason, path=path, needed=needed, **extra)
