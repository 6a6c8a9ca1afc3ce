"""The vendor registry: which adapter serves each port, chosen by a settings name.

One table per port, each entry ``name → Vendor(settings model, factory)``::

    FAX_VENDORS        GOODFAITH_FAX__VENDOR          "telnyx"  → TelnyxSettings, TelnyxFax
                                                      "sinch"   → SinchSettings, SinchFax
    FHIR_VENDORS       GOODFAITH_FHIR__VENDOR         "cdex"    → FhirSettings, CDexTaskRequester
    AGENCY_TRANSPORTS  GOODFAITH_AGENCIES[id].transport  "https" → AgencySettings,
                                                                   HttpsAgencyDeliverer
                                                         "sftp"  → SftpAgencySettings,
                                                                   SftpAgencyDeliverer
                                                         "fax"   → FaxAgencySettings,
                                                                   FaxPacketDeliverer (over
                                                                   the FAX_VENDORS adapter)
    (any agency's ``fallback_fax_number``: a FaxPacketDeliverer too, ``AgencyRouter.fallback_for``)
    VENDOR_ADAPTERS    GOODFAITH_RETRIEVAL_VENDORS[id].adapter
                                                  "orders-v1" → RetrievalVendorSettings,
                                                                OrdersV1Vendor

A retrieval vendor with its own API is one adapter module in ``connectors/vendor/`` (the
``VendorAdapter`` protocol of connectors/vendor/router.py) plus one line in VENDOR_ADAPTERS;
every configured vendor id is served by one :class:`RetrievalVendors`, the ``vendor`` channel,
whose callbacks come to ``POST /v1/webhooks/vendor?vendor_id=<id>``.

Adding a vendor: write its adapter (``connectors/fax/<name>.py``, satisfying ``FaxChannel``
with ``vendor = "<name>"``) and its settings model (a ``FaxVendorSettings`` subclass with
``vendor: Literal["<name>"]``), then add one line to the table. Settings validation
(config/settings.py), :func:`worker.wiring.build_container` and the webhook route
``POST /v1/webhooks/{vendor}`` all read the table; nothing else changes.

The factory takes the vendor's settings and a :class:`BuildContext` (the shared HTTP client,
transport retries, our public base URL); nothing here runs at import.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import httpx
from pydantic import BaseModel

from config.settings import (
    AgencySettings,
    AgencyTransportSettings,
    FaxVendorSettings,
    FhirSettings,
)
from connectors.base import (
    AgencyNotConfigured,
    DeliveryReceipt,
    FaxChannel,
    FaxPacketTransport,
    PacketDeliverer,
    PacketSubmission,
    RecordsRequester,
)
from connectors.delivery.fax import FaxAgencySettings, FaxPacketDeliverer
from connectors.delivery.https import AgencyCredentials, HttpsAgencyDeliverer
from connectors.delivery.sftp import SftpAgencyDeliverer, SftpAgencySettings
from connectors.fax.sinch import SinchFax, SinchSettings
from connectors.fax.telnyx import TelnyxFax, TelnyxSettings
from connectors.fhir.cdex import CDexIdentity, CDexTaskRequester
from connectors.fhir.subscriptions import TaskNotifications
from connectors.retry import RetryingFactory
from connectors.vendor.orders import OrdersV1Vendor, RetrievalVendorSettings
from connectors.vendor.router import RetrievalVendors, VendorAdapter
from worker.domain.clock import Clock

__all__ = [
    "AGENCY_TRANSPORTS",
    "FAX_VENDORS",
    "FHIR_VENDORS",
    "VENDOR_ADAPTERS",
    "WEBHOOK_ROUTE",
    "Adapter",
    "AgencyRouter",
    "BuildContext",
    "Transport",
    "Vendor",
    "build_deliverer",
    "build_fax",
    "build_fhir",
    "build_vendors",
    "resolve_settings",
    "task_notify_url",
    "vendor_callback_url",
    "webhook_url",
]

#: The one inbound webhook route; ``{vendor}`` is the registry name.
WEBHOOK_ROUTE = "/v1/webhooks/{vendor}"
#: Where a provider's FHIR server notifies us of a CDex Task's changes; ``{key}`` is the
#: attempt's idempotency key (connectors/fhir/subscriptions.py).
TASK_NOTIFY_ROUTE = "/v1/webhooks/cdex/{key}"

S = TypeVar("S", bound=BaseModel)
T = TypeVar("T")


def webhook_url(public_base_url: str, vendor: str) -> str:
    """The URL a vendor is given for its webhooks: ours, at ``/v1/webhooks/<vendor>``."""
    return public_base_url.rstrip("/") + WEBHOOK_ROUTE.format(vendor=vendor)


def task_notify_url(public_base_url: str, key: str) -> str:
    """Our rest-hook endpoint for the Task sent by the attempt whose idempotency key is ``key``."""
    return public_base_url.rstrip("/") + TASK_NOTIFY_ROUTE.format(key=key)


def vendor_callback_url(public_base_url: str, vendor_id: str) -> str:
    """Where a retrieval vendor posts its callbacks: ``/v1/webhooks/vendor?vendor_id=<id>``."""
    return f"{webhook_url(public_base_url, RetrievalVendors.vendor)}?vendor_id={vendor_id}"


@dataclass(frozen=True)
class BuildContext:
    """What factories share: one HTTP client, transport retries, where we are reachable, and
    the clock (webhook timestamps are checked against it; None: the wall clock)."""

    http: httpx.Client
    retrying: RetryingFactory
    public_base_url: str
    #: the container's clock (a VirtualClock in simulations): webhook timestamps are checked
    #: against it; None is the system clock
    clock: Clock | None = None
    #: the fax adapter built from FAX_VENDORS (agency transports that fax go through it)
    fax: FaxChannel | None = None
    #: the carrier's name, printed on what transports send (the fax cover sheet)
    carrier_name: str = "goodfaith carrier"
    #: where providers' FHIR servers notify us of Task changes; None: we only poll
    task_notifications: TaskNotifications | None = None

    def webhook_url(self, vendor: str) -> str:
        return webhook_url(self.public_base_url, vendor)


@dataclass(frozen=True)
class Vendor(Generic[S, T]):
    """One registry entry: the vendor's settings model and how to build its adapter."""

    settings: type[S]
    build: Callable[[S, BuildContext], T]


@dataclass(frozen=True)
class Adapter(Generic[S]):
    """A retrieval vendor's adapter: builds one per configured vendor id."""

    settings: type[S]
    build: Callable[[S, BuildContext, str], VendorAdapter]


@dataclass(frozen=True)
class Transport(Generic[S]):
    """An agency transport: builds one deliverer for every agency that uses it."""

    settings: type[S]
    build: Callable[[Mapping[str, S], BuildContext], PacketDeliverer | FaxPacketTransport]


# --- factories ---------------------------------------------------------------------------------


def _telnyx(s: TelnyxSettings, ctx: BuildContext) -> TelnyxFax:
    return TelnyxFax(
        ctx.http,
        api_key=s.api_key,
        connection_id=s.connection_id,
        from_number=s.from_number,
        webhook_url=ctx.webhook_url(TelnyxFax.vendor),
        base_url=s.api_base,
        public_key=s.webhook_public_key,
        retrying=ctx.retrying,
        clock=ctx.clock,
        media_hosts=s.media_hosts,
    )


def _sinch(s: SinchSettings, ctx: BuildContext) -> SinchFax:
    return SinchFax(
        ctx.http,
        project_id=s.project_id,
        key_id=s.key_id,
        key_secret=s.key_secret,
        from_number=s.from_number,
        webhook_url=ctx.webhook_url(SinchFax.vendor),
        webhook_username=s.webhook_username,
        webhook_password=s.webhook_password,
        base_url=s.api_base,
        retrying=ctx.retrying,
        clock=ctx.clock,
    )


def _cdex(s: FhirSettings, ctx: BuildContext) -> CDexTaskRequester:
    return CDexTaskRequester(
        ctx.http,
        requester_name=s.requester_name,
        requester_identifier=s.requester_identifier,
        retrying=ctx.retrying,
        clock=ctx.clock,
        notifications=ctx.task_notifications if s.subscriptions else None,
        identity=CDexIdentity(
            requester_name=s.requester_name,
            requester_identifier=s.requester_identifier,
            requester_identifier_system=s.requester_identifier_system,
            member_id_system=s.member_id_system,
            claim_id_system=s.claim_id_system,
            coverage_id_system=s.coverage_id_system,
            signature_required=s.signature_required,
        ),
    )


def _orders_v1(s: RetrievalVendorSettings, ctx: BuildContext, vendor_id: str) -> OrdersV1Vendor:
    return OrdersV1Vendor(
        ctx.http,
        vendor_id=vendor_id,
        settings=s,
        callback_url=vendor_callback_url(ctx.public_base_url, vendor_id),
        retrying=ctx.retrying,
        clock=ctx.clock,
    )


def _https(agencies: Mapping[str, AgencySettings], ctx: BuildContext) -> HttpsAgencyDeliverer:
    return HttpsAgencyDeliverer(
        ctx.http,
        submit_urls={k: a.submit_url for k, a in agencies.items()},
        credentials={k: _credentials(a) for k, a in agencies.items()},
        retrying=ctx.retrying,
    )


def _sftp(agencies: Mapping[str, SftpAgencySettings], ctx: BuildContext) -> SftpAgencyDeliverer:
    return SftpAgencyDeliverer(agencies, retrying=ctx.retrying, clock=ctx.clock)


def _fax_agencies(
    agencies: Mapping[str, FaxAgencySettings], ctx: BuildContext
) -> FaxPacketDeliverer:
    if ctx.fax is None:
        raise ValueError("fax agency transport: build the fax adapter first (BuildContext.fax)")
    return FaxPacketDeliverer(ctx.fax, agencies, carrier_name=ctx.carrier_name)


def _credentials(a: AgencySettings) -> AgencyCredentials:
    return AgencyCredentials(
        bearer_token=a.bearer_token.get_secret_value() if a.bearer_token else None,
        basic_username=a.basic_username,
        basic_password=a.basic_password.get_secret_value() if a.basic_password else None,
    )


# --- the tables: registering a vendor is one line ----------------------------------------------

FAX_VENDORS: dict[str, Vendor[Any, FaxChannel]] = {
    "telnyx": Vendor(TelnyxSettings, _telnyx),
    "sinch": Vendor(SinchSettings, _sinch),
}
FHIR_VENDORS: dict[str, Vendor[Any, RecordsRequester]] = {
    "cdex": Vendor(FhirSettings, _cdex),
}
VENDOR_ADAPTERS: dict[str, Adapter[Any]] = {
    "orders-v1": Adapter(RetrievalVendorSettings, _orders_v1),
}
AGENCY_TRANSPORTS: dict[str, Transport[Any]] = {
    "https": Transport(AgencySettings, _https),
    "sftp": Transport(SftpAgencySettings, _sftp),
    "fax": Transport(FaxAgencySettings, _fax_agencies),
}


# --- settings resolution (called by config/settings.py validators) ----------------------------


def resolve_settings(
    table: Mapping[str, Vendor[Any, Any] | Transport[Any] | Adapter[Any]],
    value: Any,
    *,
    key: str,
    default: str,
    setting: str,
) -> Any:
    """``value`` validated as the settings model that ``value[key]`` names in ``table``.

    A discriminated union on ``key`` whose members are the registered models. An unknown
    name raises ``ValueError`` naming ``setting`` and every registered name.
    """
    if isinstance(value, BaseModel):
        name = getattr(value, key, default)
        entry = _entry(table, name, setting)
        if isinstance(value, entry.settings):
            return value
        value = value.model_dump()
    if not isinstance(value, Mapping):
        return value  # not a mapping: pydantic reports the type error
    name = value.get(key, default)
    entry = _entry(table, name, setting)
    return entry.settings.model_validate({**value, key: name})


def _entry(
    table: Mapping[str, Vendor[Any, Any] | Transport[Any] | Adapter[Any]],
    name: object,
    setting: str,
) -> Vendor[Any, Any] | Transport[Any] | Adapter[Any]:
    entry = table.get(name) if isinstance(name, str) else None
    if entry is None:
        known = ", ".join(sorted(table))
        raise ValueError(
            f"{setting}={name!r} is not a registered name; known: {known} "
            "(register new ones in connectors/registry.py)"
        )
    return entry


# --- building ----------------------------------------------------------------------------------


def build_fax(settings: FaxVendorSettings, ctx: BuildContext) -> FaxChannel:
    """The fax adapter ``settings.vendor`` names."""
    entry = _entry(FAX_VENDORS, settings.vendor, "GOODFAITH_FAX__VENDOR")
    assert isinstance(entry, Vendor)
    fax: FaxChannel = entry.build(settings, ctx)
    return fax


def build_fhir(settings: FhirSettings, ctx: BuildContext) -> RecordsRequester:
    """The FHIR adapter ``settings.vendor`` names."""
    entry = _entry(FHIR_VENDORS, settings.vendor, "GOODFAITH_FHIR__VENDOR")
    assert isinstance(entry, Vendor)
    requester: RecordsRequester = entry.build(settings, ctx)
    return requester


def build_vendors(vendors: Mapping[str, BaseModel], ctx: BuildContext) -> RetrievalVendors:
    """The ``vendor`` channel: one adapter per configured vendor id (its ``adapter`` names the
    VENDOR_ADAPTERS entry)."""
    adapters: dict[str, VendorAdapter] = {}
    for vendor_id, settings in vendors.items():
        name = getattr(settings, "adapter", "orders-v1")
        entry = _entry(VENDOR_ADAPTERS, name, f"GOODFAITH_RETRIEVAL_VENDORS[{vendor_id!r}]")
        assert isinstance(entry, Adapter)
        adapters[vendor_id] = entry.build(settings, ctx, vendor_id)
    return RetrievalVendors(adapters)


def build_deliverer(
    agencies: Mapping[str, AgencyTransportSettings], ctx: BuildContext
) -> AgencyRouter:
    """One deliverer per transport in use, routed by agency id."""
    by_transport: dict[str, dict[str, AgencyTransportSettings]] = {}
    for agency_id, agency in agencies.items():
        by_transport.setdefault(agency.transport, {})[agency_id] = agency
    routes: dict[str, PacketDeliverer | FaxPacketTransport] = {}
    for transport, members in by_transport.items():
        entry = _entry(AGENCY_TRANSPORTS, transport, f"agency transport of {sorted(members)}")
        assert isinstance(entry, Transport)
        deliverer = entry.build(members, ctx)
        routes.update(dict.fromkeys(members, deliverer))
    fallbacks = {
        agency_id: FaxAgencySettings(name=agency.name, fax_number=agency.fallback_fax_number)
        for agency_id, agency in agencies.items()
        if agency.fallback_fax_number is not None
    }
    by_fax = _fax_agencies(fallbacks, ctx) if fallbacks else None
    return AgencyRouter(routes, dict.fromkeys(fallbacks, by_fax) if by_fax else None)


class AgencyRouter:
    """``PacketDeliverer`` that hands each submission to its agency's transport
    (``RoutesAgencies``: the delivery service asks :meth:`transport_for` first, and drives a
    fax transport itself, since its receipt comes later)."""

    def __init__(
        self,
        routes: Mapping[str, PacketDeliverer | FaxPacketTransport],
        fallbacks: Mapping[str, FaxPacketTransport] | None = None,
    ) -> None:
        self.routes = dict(routes)
        self.fallbacks = dict(fallbacks or {})

    def transport_for(self, agency_id: str) -> PacketDeliverer | FaxPacketTransport | None:
        return self.routes.get(agency_id)

    def fallback_for(self, agency_id: str) -> FaxPacketTransport | None:
        return self.fallbacks.get(agency_id)

    def deliver(self, submission: PacketSubmission) -> DeliveryReceipt:
        deliverer = self.routes.get(submission.agency_id)
        if deliverer is None:
            raise AgencyNotConfigured(
                f"no submission route for agency {submission.agency_id!r}; "
                "add it to the agency settings (GOODFAITH_AGENCIES)"
            )
        if not isinstance(deliverer, PacketDeliverer):
            raise AgencyNotConfigured(
                f"agency {submission.agency_id!r} is reached by fax, which has no immediate "
                "receipt: deliver through worker/services/delivery.py"
            )
        return deliverer.deliver(submission)
