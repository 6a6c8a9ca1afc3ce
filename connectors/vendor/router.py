"""Every configured retrieval vendor behind one requester: the ``vendor`` channel.

A vendor channel's destination is a vendor id (``{"kind": "vendor", "vendor_id": "ciox"}``);
:class:`RetrievalVendors` routes each order to that vendor's adapter (built from its
``GOODFAITH_RETRIEVAL_VENDORS`` entry through ``VENDOR_ADAPTERS``). External ids are
``<vendor_id>/<order id>``, so polls, cancels and callbacks find their vendor again.

A vendor id nobody configured fails its attempt with ``InvalidDestination`` (the outreach
policy escalates to the next channel), and intake flags such a channel when it takes the case in.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Protocol

from connectors.base import (
    InvalidDestination,
    PollResult,
    RecordsRequest,
    Rejected,
    SendReceipt,
    WebhookError,
)
from connectors.vendor.orders import OrderEvent, next_poll_delay
from worker.domain.types import ChannelKind

__all__ = ["RetrievalVendors", "VendorAdapter"]


class VendorAdapter(Protocol):
    """What one vendor's adapter does (``connectors/vendor/orders.py`` is the reference):
    order ids here are the vendor's own, without the ``<vendor_id>/`` prefix."""

    vendor_id: str

    def send(self, request: RecordsRequest) -> SendReceipt: ...

    def find_sent(self, request: RecordsRequest, since: datetime) -> SendReceipt | None: ...

    def poll(self, order_id: str) -> PollResult: ...

    def cancel(self, order_id: str, reason: str) -> bool: ...

    def parse_callback(self, body: bytes, headers: Mapping[str, str]) -> OrderEvent: ...


class RetrievalVendors:
    """``PollingRequester`` + ``FindsSent`` + ``CancelsRequest`` over the configured vendors."""

    kind = ChannelKind.VENDOR
    vendor = "vendor"  # the registry name: callbacks come to POST /v1/webhooks/vendor

    def __init__(self, adapters: Mapping[str, VendorAdapter]) -> None:
        self._adapters = dict(adapters)

    def configured(self, vendor_id: str) -> bool:
        """Whether orders to ``vendor_id`` can be sent."""
        return vendor_id in self._adapters

    def adapter(self, vendor_id: str) -> VendorAdapter:
        """The adapter serving ``vendor_id``; ``InvalidDestination`` when none is configured."""
        found = self._adapters.get(vendor_id)
        if found is None:
            raise InvalidDestination(
                f"retrieval vendor {vendor_id!r} is not configured "
                "(add it to GOODFAITH_RETRIEVAL_VENDORS)"
            )
        return found

    def send(self, request: RecordsRequest) -> SendReceipt:
        if request.channel.kind is not ChannelKind.VENDOR:
            raise InvalidDestination(
                f"RetrievalVendors cannot send over a {request.channel.kind} channel"
            )
        return self.adapter(request.channel.destination).send(request)

    def find_sent(self, request: RecordsRequest, since: datetime) -> SendReceipt | None:
        return self.adapter(request.channel.destination).find_sent(request, since)

    def poll(self, external_id: str) -> PollResult:
        vendor_id, order_id = _split(external_id)
        return self.adapter(vendor_id).poll(order_id)

    def poll_delay(self, since_sent: timedelta) -> timedelta:
        return next_poll_delay(since_sent)

    def cancel(self, external_id: str, reason: str) -> bool:
        vendor_id, order_id = _split(external_id)
        return self.adapter(vendor_id).cancel(order_id, reason)

    def parse_callback(
        self, vendor_id: str | None, body: bytes, headers: Mapping[str, str]
    ) -> OrderEvent:
        """Verify one callback with ``vendor_id``'s secret. An unknown or missing vendor id is
        refused like a bad signature (``WebhookError``): a forger learns nothing."""
        adapter = self._adapters.get(vendor_id or "")
        if adapter is None:
            raise WebhookError("vendor callback: unknown vendor")
        return adapter.parse_callback(body, headers)


def _split(external_id: str) -> tuple[str, str]:
    vendor_id, sep, order_id = external_id.partition("/")
    if not sep or not vendor_id or not order_id:
        raise Rejected("vendor order: external_id must be '<vendor_id>/<order id>'")
    return vendor_id, order_id
