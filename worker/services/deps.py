"""Dependency injection for use cases: a handler names what it needs, and gets only that.

A handler's keyword-only parameters name attributes of the :class:`~worker.wiring.Container`
(``sessions``, ``clock``, ``store``, ``requesters``, ...). :func:`call` passes exactly those,
so a handler's signature is the list of what it touches, and a test can call it with fakes
for just those.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from functools import cache
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from worker.wiring import Container

T = TypeVar("T")


@cache
def needs(handler: Callable[..., Any]) -> tuple[str, ...]:
    """The container attributes ``handler`` asks for (its keyword-only parameters)."""
    return tuple(
        name
        for name, p in inspect.signature(handler).parameters.items()
        if p.kind is inspect.Parameter.KEYWORD_ONLY
    )


def call(handler: Callable[..., T], c: Container, *args: Any) -> T:
    """Run ``handler(*args)`` with the container attributes it names injected."""
    return handler(*args, **{name: getattr(c, name) for name in needs(handler)})
