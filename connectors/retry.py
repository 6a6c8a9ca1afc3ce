"""Transport retries inside one attempt (ARCHITECTURE decision 5).

Only :class:`~connectors.base.TransientError` is retried (timeouts, connection failures, 5xx,
429); every other error propagates at once. Waits grow exponentially from ``initial_wait`` up to
``max_wait`` **seconds**, plus up to ``initial_wait`` seconds of random jitter so that many
workers do not retry in step. After ``max_attempts`` tries the last error is re-raised as is
(never wrapped in ``tenacity.RetryError``), so callers only ever see our error tree.

Connectors take a *factory* (``retrying: RetryingFactory``) rather than one ``Retrying`` object:
each call builds a fresh controller, and tests or the time-compressed simulation pass
``lambda: transport_retrying(sleep=no_sleep)`` so no wall-clock time passes.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import tenacity

from connectors.base import TransientError

__all__ = ["RetryingFactory", "no_sleep", "no_wait_retrying", "transport_retrying"]

RetryingFactory = Callable[[], tenacity.Retrying]


def transport_retrying(
    *,
    max_attempts: int = 4,
    initial_wait: float = 1.0,
    max_wait: float = 30.0,
    sleep: Callable[[float], None] = time.sleep,
) -> tenacity.Retrying:
    """A ``tenacity.Retrying`` that retries only ``TransientError``.

    ``max_attempts`` counts tries (1 = no retry). ``initial_wait`` and ``max_wait`` are seconds.
    ``sleep`` receives seconds; pass :func:`no_sleep` in tests and simulations.
    """
    if max_attempts < 1:
        raise ValueError("max_attempts must be at least 1 (1 means: try once, never retry)")
    return tenacity.Retrying(
        retry=tenacity.retry_if_exception_type(TransientError),
        stop=tenacity.stop_after_attempt(max_attempts),
        wait=tenacity.wait_exponential_jitter(
            initial=initial_wait, max=max_wait, jitter=initial_wait
        ),
        sleep=sleep,
        reraise=True,
    )


def no_sleep(seconds: float) -> None:
    """A ``sleep`` that returns at once: transport retries cost no wall-clock time."""
    del seconds


def no_wait_retrying(max_attempts: int = 4) -> tenacity.Retrying:
    """``transport_retrying`` with :func:`no_sleep`: for tests and the simulation."""
    return transport_retrying(max_attempts=max_attempts, sleep=no_sleep)
