"""The simulator: every far side listed in :data:`FAR_SIDES` on one ASGI app, one event heap and
one clock.

Time is the injected ``clock``: nothing sleeps. A simulation driver advances a VirtualClock to
:meth:`Simulator.next_event_at` and calls :meth:`Simulator.fire_due`; in real-time mode
:meth:`Simulator.start_background` calls it on a thread.

Adding a vendor's far side: write its module (a :class:`~simulator.base.FarSide` subclass with
its router, see simulator/telnyx.py) and add the class to :data:`FAR_SIDES`. Tests may pass
their own list as ``far_sides``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, TypeVar

import httpx
import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from simulator.agency import AgencyFarSide, AgencySubmission
from simulator.agency_lines import AgencyFax, AgencyLine, AgencyLines
from simulator.base import Context, FarSide
from simulator.cdex import CDexFarSide
from simulator.events import Backoff, EventHeap
from simulator.providers import ProviderBehaviour, Providers
from simulator.serving import repeat_in_thread
from simulator.sinch import SinchFarSide
from simulator.telnyx import TelnyxFarSide, telnyx_error
from simulator.vendor import VendorFarSide
from worker.domain.clock import Clock

__all__ = ["FAR_SIDES", "Simulator", "build_app"]

log = structlog.get_logger(__name__)

FAR_SIDES: tuple[type[FarSide], ...] = (
    TelnyxFarSide,  # /v2/faxes, /v2/media/{id}: the fax carrier
    SinchFarSide,  # /v3/projects/{projectId}/faxes: the other fax carrier (Sinch Fax API v3)
    CDexFarSide,  # /fhir/Task: the providers' FHIR server
    AgencyFarSide,  # /agency/{id}/submissions: external review agencies
    VendorFarSide,  # /vendor/v1/orders: record-retrieval vendors (providers' designees)
)
"""Every vendor's far side the simulator serves, one line each."""

_F = TypeVar("_F", bound=FarSide)


def build_app(far_sides: Sequence[FarSide]) -> FastAPI:
    """One FastAPI app mounting each far side's router.

    Errors the routes do not answer themselves (an unknown route, a method the route does not
    take, a malformed parameter, an exception) are worded by the far side whose
    :attr:`~simulator.base.FarSide.prefixes` match the path, in its vendor's format; anything
    else in Telnyx's (``{"errors": [{"code", "title", "detail"}]}``), never FastAPI's own."""
    app = FastAPI(title="goodfaith simulator", openapi_url=None, docs_url=None, redoc_url=None)
    for side in far_sides:
        app.include_router(side.router())

    def worded(request: Request, status: int, title: str) -> Response:
        for side in far_sides:
            if request.url.path.startswith(side.prefixes):
                response = side.error(status, title)
                if response is not None:
                    return response
        return telnyx_error(status, title)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        titles = {404: "Resource not found", 405: "Method not allowed"}
        response = worded(request, exc.status_code, titles.get(exc.status_code, str(exc.detail)))
        for name, value in (exc.headers or {}).items():  # e.g. Allow on a 405
            response.headers[name] = value
        return response

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> Response:
        return worded(request, 422, "Invalid parameter")

    @app.exception_handler(Exception)
    async def crashed(request: Request, exc: Exception) -> Response:
        log.warning("sim.route_failed", path=request.url.path, error=type(exc).__name__)
        return worded(request, 500, "Unexpected error")

    return app


class Simulator:
    """Fax carrier, providers' FHIR servers and review agencies, on one ASGI app (``.app``).

    ``behaviours`` is keyed by provider id; ``directory`` maps a fax number or NPI to a provider
    id (unknown numbers behave as ``default``). ``http`` is used to fetch request letters and to
    POST webhooks to ``webhook_url``. ``signing_key`` is an Ed25519 private key (32 raw bytes);
    when given, webhooks are signed. ``provider_names`` names providers on generated documents;
    the provider id is used otherwise. ``far_sides`` are the far-side classes to serve.
    ``drop_webhooks``: the share (0–1) of outbound fax status webhooks lost outright (chosen
    with ``seed``), so that our status checks are exercised; ``drop_inbound_webhooks`` the share
    of ``fax.received`` webhooks lost (the providers' answers), so that our inbound sweep is. ``honour_idempotency_keys=False``
    makes the fax API create a new fax for every request, as a vendor without idempotency
    keys would: a repeated send then shows as a duplicate fax (``bench/chaos.py`` counts them).
    ``duplicate_webhooks`` and ``throttle`` (shares, seeded): callbacks delivered twice (the
    second after later ones; Telnyx's and Sinch's far sides) and API requests refused with 429
    + ``Retry-After`` (Sinch's). ``vendor_webhook_secret`` signs retrieval-vendor callbacks.
    ``webhook_backoff`` spaces the re-attempts of a webhook our
    side refused and says when the vendor gives up (default: :class:`Backoff`'s).
    ``agency_lines`` (by agency id): the fax lines of agencies
    (or fall back to fax), reached through whichever fax far side is dialled;
    ``refused_uploads``: agency ids whose upload endpoint answers every packet 403.
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
        far_sides: Sequence[type[FarSide]] = FAR_SIDES,
        drop_webhooks: float = 0.0,
        drop_inbound_webhooks: float = 0.0,
        duplicate_webhooks: float = 0.0,
        throttle: float = 0.0,
        seed: int = 0,
        honour_idempotency_keys: bool = True,
        vendor_webhook_secret: str | None = None,
        webhook_backoff: Backoff | None = None,
        agency_lines: Mapping[str, AgencyLine] | None = None,
        refused_uploads: Iterable[str] = (),
    ) -> None:
        if not 0.0 <= drop_webhooks <= 1.0 or not 0.0 <= drop_inbound_webhooks <= 1.0:
            raise ValueError("drop_webhooks is a share between 0 and 1 (e.g. 0.2)")
        if not (0.0 <= duplicate_webhooks <= 1.0 and 0.0 <= throttle <= 1.0):
            raise ValueError("duplicate_webhooks and throttle are shares between 0 and 1")
        self._events = EventHeap(webhook_backoff)
        self._providers = Providers(
            behaviours=behaviours,
            directory=directory,
            default=default,
            names=provider_names or {},
        )
        self._ctx = Context(
            clock=clock,
            events=self._events,
            providers=self._providers,
            http=http,
            public_base_url=public_base_url.rstrip("/"),
            webhook_url=webhook_url,
            signing_key=signing_key,
            carrier_fax_number=carrier_fax_number,
            drop_webhooks=drop_webhooks,
            drop_inbound_webhooks=drop_inbound_webhooks,
            duplicate_webhooks=duplicate_webhooks,
            throttle=throttle,
            seed=seed,
            honour_idempotency_keys=honour_idempotency_keys,
            vendor_webhook_secret=vendor_webhook_secret,
            agency_lines=AgencyLines(agency_lines),
            refused_uploads=frozenset(refused_uploads),
        )
        self.far_sides: list[FarSide] = [make(self._ctx) for make in far_sides]
        self._fire_lock = threading.Lock()
        self._stop_background: Callable[[], None] | None = None
        self.app = build_app(self.far_sides)

    # --- inspection ----------------------------------------------------------------------

    def far_side(self, kind: type[_F]) -> _F:
        """The running far side of class ``kind``; LookupError when it is not served."""
        for side in self.far_sides:
            if isinstance(side, kind):
                return side
        raise LookupError(f"{kind.__name__} is not served: add it to far_sides (FAR_SIDES)")

    @property
    def submissions(self) -> list[AgencySubmission]:
        """Every packet the simulated agencies accepted, in arrival order (a copy)."""
        return self.far_side(AgencyFarSide).submissions

    @property
    def agency_faxes(self) -> list[AgencyFax]:
        """Every fax the agencies that take only fax received, in arrival order (a copy)."""
        return self._ctx.agency_lines.received

    @property
    def sent_webhooks(self) -> list[dict[str, Any]]:
        """Every webhook envelope delivered (2xx) to our side, in order (a copy)."""
        return self._ctx.sent_webhooks

    @property
    def abandoned_webhooks(self) -> int:
        """How many webhooks the far sides gave up on (our side refused every try)."""
        return len(self._events.abandoned)

    def delivered_count(self, provider_id: str) -> int:
        """How many of our requests have reached ``provider_id`` so far."""
        return self._providers.delivered_count(provider_id)

    # --- time ----------------------------------------------------------------------------

    def next_event_at(self) -> datetime | None:
        """The due instant of the earliest pending webhook or fax transmission, or None."""
        return self._events.next_at()

    def fire_due(self) -> int:
        """Run everything due at ``clock.now()`` in time order; return webhooks delivered.

        Far sides first bring lazily evaluated state up to now (FHIR Tasks accepted, counting
        deliveries). A webhook whose POST fails (exception or non-2xx) is re-attempted after
        the backoff delay, with ``meta.attempt`` incremented, until the backoff gives up.
        """
        with self._fire_lock:
            now = self._ctx.clock.now()
            for side in self.far_sides:
                side.advance(now)
            return self._events.run_due(now)

    def _fire_logged(self) -> None:
        try:
            self.fire_due()
        except Exception as exc:  # keep firing: one bad event must not stop the far side
            log.warning("sim.fire_failed", error=type(exc).__name__)

    def start_background(self, interval_s: float) -> None:
        """Call :meth:`fire_due` every ``interval_s`` seconds (wall time) on a daemon thread."""
        if self._stop_background is None:
            self._stop_background = repeat_in_thread(
                self._fire_logged, interval_s, name="simulator-fire"
            )

    def stop(self) -> None:
        """Stop the background thread started by :meth:`start_background`."""
        if self._stop_background is not None:
            self._stop_background()
            self._stop_background = None
