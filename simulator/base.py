"""What every far side shares, and the small interface one vendor's far side implements.

A far side is one module per vendor (simulator/telnyx.py, cdex.py, agency.py) holding a
:class:`FarSide` subclass: its endpoints as a FastAPI router, its own state, and the events it
schedules on the shared :class:`~simulator.events.EventHeap`. It is built with the shared
:class:`Context` and served once its class is listed in ``simulator.app.FAR_SIDES``.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx
from fastapi import APIRouter
from fastapi.responses import Response

from simulator.agency_lines import AgencyLines
from simulator.events import EventHeap
from simulator.providers import Providers
from worker.domain.clock import Clock

__all__ = ["Context", "FarSide"]


@dataclass
class Context:
    """Shared by every far side.

    ``http`` fetches what our side serves (request letters) and POSTs webhooks to our side;
    ``public_base_url`` is where the simulator itself is reachable (media URLs, Locations);
    ``webhook_url`` is our side's webhook endpoint; ``signing_key`` an Ed25519 private key
    (32 raw bytes) for signed webhooks, or None; ``carrier_fax_number`` our own fax number,
    the one providers fax their answers to; ``drop_webhooks`` the share (0–1) of outbound fax
    status webhooks lost outright, chosen with ``seed``; ``duplicate_webhooks`` the share of
    delivered callbacks delivered again a minute later (after later ones: out of order);
    ``throttle`` the share of API requests refused with 429 and ``Retry-After``. Far sides
    that support the last two say so. ``agency_lines``: the fax lines of agencies that take
    only fax (simulator/agency_lines.py); a fax far side dialling one of them delivers there.
    """

    clock: Clock
    events: EventHeap
    providers: Providers
    http: httpx.Client
    public_base_url: str
    webhook_url: str
    signing_key: bytes | None = None
    carrier_fax_number: str = "+16175550000"
    drop_webhooks: float = 0.0  # share of outbound fax status webhooks lost on purpose
    drop_inbound_webhooks: float = 0.0  # share of fax.received webhooks lost on purpose
    duplicate_webhooks: float = 0.0  # share of delivered callbacks sent again, a minute later
    throttle: float = 0.0  # share of API requests answered 429 with Retry-After (not acted on)
    seed: int = 0  # for the random choices far sides make (which webhooks are lost)
    honour_idempotency_keys: bool = True  # False: every fax request creates a new fax
    #: the HMAC key retrieval-vendor callbacks are signed with (simulator/vendor.py); None:
    #: unsigned (our side refuses them)
    vendor_webhook_secret: str | None = None
    #: agencies' fax lines: the fax far sides deliver faxes to these numbers to the agency
    agency_lines: AgencyLines = field(default_factory=AgencyLines)
    #: agencies whose upload endpoint answers every packet 403 (credentials not accepted)
    refused_uploads: frozenset[str] = frozenset()
    _sent: list[dict[str, Any]] = field(default_factory=list, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def record_webhook(self, envelope: dict[str, Any]) -> None:
        """Note a webhook envelope our side accepted (2xx), for :attr:`sent_webhooks`."""
        with self._lock:
            self._sent.append(envelope)

    @property
    def sent_webhooks(self) -> list[dict[str, Any]]:
        """Every webhook envelope our side accepted, in order (a copy)."""
        with self._lock:
            return list(self._sent)


class FarSide(ABC):
    """One vendor's far side. Subclass it in the vendor's module, then list the class in
    ``simulator.app.FAR_SIDES``; the simulator builds it with the shared :class:`Context` and
    mounts :meth:`router` on its app."""

    #: path prefixes whose errors this far side words (unknown routes, wrong methods, bad
    #: parameters), e.g. ``("/v2/",)``; see :meth:`error`
    prefixes: tuple[str, ...] = ()

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def error(self, status: int, title: str) -> Response | None:
        """An error response in this vendor's own format (HTTP ``status``, ``title`` in words),
        for paths under :attr:`prefixes`; None leaves it to the simulator's default (Telnyx's
        format)."""
        return None

    @abstractmethod
    def router(self) -> APIRouter:
        """The vendor's endpoints, with their full paths (e.g. ``/v2/faxes``)."""

    def advance(self, now: datetime) -> None:  # noqa: B027 - optional hook, empty on purpose
        """Bring state evaluated lazily from the clock up to ``now``; runs before due events
        fire. Nothing to do by default."""
