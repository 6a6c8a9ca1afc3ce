"""The small interfaces every channel implements, and the error tree they raise.

Outside errors (httpx, HTTP status codes, vendor error bodies) are translated here, at the
boundary, into one tree:

    ConnectorError
    ├── TransientError        timeout, connection reset, 5xx, 429: retried inside one attempt
    │                         (tenacity, see connectors/retry.py); an attempt is not a retry
    └── PermanentError        retrying will not help
        ├── InvalidDestination  bad or unreachable number / endpoint (4xx naming the target)
        ├── Rejected            the far side refused the request (other 4xx)
        ├── AuthError           401/403: our credentials or configuration are wrong
        ├── AgencyNotConfigured no delivery route for the agency: fix the agency settings
        └── HashMismatch        a packet's bytes are not the ones recorded (ours or the agency's)
    WebhookError              an inbound webhook that is malformed or fails its signature

Packet delivery has two shapes: a :class:`PacketDeliverer` hands a packet over and gets the
agency's receipt at once (HTTPS, SFTP); a :class:`FaxPacketTransport` faxes it, and the fax
vendor confirms delivery later (webhook or status check).

Actors never import a concrete connector: ``worker/wiring.py`` builds implementations through
``connectors/registry.py`` (one folder per port: ``fax/``, ``fhir/``, ``delivery/``; one module
per vendor), and actors see only these protocols.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol, runtime_checkable

from worker.domain.types import AttemptOutcome, Channel, ChannelKind


class ConnectorError(Exception):
    """Base of every error a connector raises."""


class TransientError(ConnectorError):
    """Worth retrying soon: timeout, connection failure, 5xx, 429."""


class PermanentError(ConnectorError):
    """Retrying will not help."""


class InvalidDestination(PermanentError):
    """The number or endpoint is invalid or unreachable."""


class Rejected(PermanentError):
    """The far side refused the request."""


class AuthError(PermanentError):
    """Credentials or account configuration are wrong (401/403). Fix the settings."""


class AgencyNotConfigured(PermanentError):
    """No submission route is configured for the agency. Add it to the agency settings."""


class HashMismatch(PermanentError):
    """The packet's bytes do not match the SHA-256 we recorded, or the agency's hash differs."""


class WebhookError(ConnectorError):
    """An inbound webhook is malformed or its signature does not verify."""


# --- outbound records requests ------------------------------------------------------------


@dataclass(frozen=True)
class PatientRef:
    """Who the records are about, for channels that search a chart by person (a retrieval
    vendor); ``birth_date`` is ISO ``YYYY-MM-DD``."""

    name: str
    birth_date: str


@dataclass(frozen=True)
class ProviderRef:
    """Whose records are asked for: our provider id, name and NPI (when known)."""

    id: str
    name: str
    npi: str | None = None


@dataclass(frozen=True)
class RecordsRequest:
    """What one attempt sends. ``idempotency_key`` is the attempt's key: connectors pass it to
    the far side wherever it supports one, so a redelivered message never sends twice."""

    idempotency_key: str
    reference: str  # our request reference ("GF-XXXXXXXX"), printed on the letter
    channel: Channel
    document_url: str  # where the far side fetches the request letter + authorization (PDF)
    member_id: str  # FHIR Task.for.identifier
    requester: str  # the carrier's name
    purpose: str  # human-readable reason, e.g. "External review (958 CMR 3.409) ..."
    callback_url: str | None = None  # status webhook URL, where the channel supports one
    attempt_number: int = 1
    respond_by: datetime | None = None  # when we need the answer (the case's assembly cutoff)
    requested: str | None = None  # what is requested, in words (as on the letter)
    patient: PatientRef | None = None  # vendor orders: who the chart belongs to
    provider: ProviderRef | None = None  # vendor orders: whose chart
    #: FHIR data-code: the one document type requested (LOINC). CDex allows one code input per
    #: Task (cdex-9), so several document types are several requests.
    loinc_code: str = "11506-3"
    #: where the insured's signed authorization for release can be fetched (FHIR basedOn);
    #: None when the case has none
    authorization_url: str | None = None
    claim_id: str | None = None  # the claim / prior authorization under review (payer's id)
    coverage_id: str | None = None  # the coverage under review (payer's id)


@dataclass(frozen=True)
class SendReceipt:
    external_id: str  # the channel's id for this transmission (fax id, FHIR Task URL, order)
    outcome: AttemptOutcome = AttemptOutcome.SENT
    #: the far side notifies us of this request's changes until then (a CDex Subscription):
    #: polls are only a safety net; None: it does not, poll at the channel's cadence
    notified_until: datetime | None = None
    #: what to end when nothing more is awaited from this request (the CDex Subscription's
    #: URL, :class:`EndsNotifications`); None: nothing to end
    subscription: str | None = None


@runtime_checkable
class RecordsRequester(Protocol):
    """Sends one records request over one kind of channel.

    ``vendor`` is the adapter's registry name ("telnyx", "cdex"): the vendor an attempt went
    through, and the ``{vendor}`` of its webhook URL.
    """

    kind: ChannelKind
    vendor: str

    def send(self, request: RecordsRequest) -> SendReceipt: ...


@runtime_checkable
class FindsSent(Protocol):
    """A requester that can say whether the far side already has one of our requests.

    Used after a crash between "transmission counted" and "vendor answered": the attempt is
    looked for before anything is sent again, and adopted when found."""

    def find_sent(self, request: RecordsRequest, since: datetime) -> SendReceipt | None:
        """The far side's transmission carrying ``request.idempotency_key`` made at or after
        ``since``, as a receipt (its external id; outcome SENT), or None when there is none."""
        ...


@runtime_checkable
class CancelsRequest(Protocol):
    """A requester that can withdraw a request it sent (a case was withdrawn or reversed)."""

    def cancel(self, external_id: str, reason: str) -> bool:
        """Withdraw the request ``external_id`` at the far side, saying ``reason`` (no PHI).
        True when it was withdrawn now; False when there was nothing left to withdraw (the
        far side had finished it, or no longer knows it)."""
        ...


@runtime_checkable
class EndsNotifications(Protocol):
    """A requester whose far side notifies us of a request's changes until told to stop (a
    CDex Subscription): once nothing more is awaited from the request, goodfaith ends it,
    so a campaign of 100,000 requests leaves no 100,000 live Subscriptions behind it."""

    def end_notifications(self, subscription: str) -> bool:
        """End ``subscription`` (:attr:`SendReceipt.subscription`). True when ended now;
        False when the far side no longer had it. Raises a ConnectorError when it could not
        be ended (the far side ends it by itself at its end date)."""
        ...


@dataclass(frozen=True)
class InboundDocument:
    """A document that came back from a provider, before any checks."""

    data: bytes
    content_type: str  # "application/pdf" expected; anything else is quarantined later
    source: ChannelKind
    external_id: str  # unique per inbound document on that channel (dedupes redelivery)
    sender: str | None = None  # fax number or FHIR owner
    partial: bool = False  # fax: the channel says content may be incomplete
    #: the channel says this is a formal "no records" statement (a vendor's certificate)
    no_records: bool = False


@dataclass(frozen=True)
class PollResult:
    """The state of a pull-style request (FHIR Task) at one poll."""

    status: str  # the HRex Task status: requested|accepted|rejected|in-progress|on-hold|failed|completed
    outcome: AttemptOutcome | None  # transmission outcome once known (accepted → DELIVERED)
    documents: tuple[InboundDocument, ...] = ()
    no_records: bool = False  # the provider answered in writing that it holds no records
    reason: str | None = None  # Task.statusReason text


@runtime_checkable
class PollingRequester(RecordsRequester, Protocol):
    """A requester whose answers are fetched by polling (Da Vinci CDex Task)."""

    def poll(self, external_id: str) -> PollResult: ...

    def poll_delay(self, since_sent: timedelta) -> timedelta:
        """How long to wait before the next poll of a request sent ``since_sent`` ago."""
        ...


# --- fax webhooks ----------------------------------------------------------------------------


@dataclass(frozen=True)
class FaxStatusEvent:
    """Outbound fax progress (fax.queued, fax.media.processed, fax.sending.started,
    fax.delivered, fax.failed)."""

    event_id: str
    event_type: str
    fax_id: str
    occurred_at: datetime
    outcome: AttemptOutcome | None  # DELIVERED / FAILED on final events, else None
    failure_reason: str | None = None
    client_state: str | None = None  # decoded from base64
    retryable: bool = False  # failed for a reason worth redialling soon (busy, no answer)


@dataclass(frozen=True)
class FaxReceivedEvent:
    """An inbound fax (fax.received). ``media_url`` is short-lived: fetch it promptly."""

    event_id: str
    fax_id: str
    occurred_at: datetime
    from_number: str
    to_number: str
    media_url: str
    page_count: int | None = None
    partial: bool = False


@runtime_checkable
class FaxChannel(RecordsRequester, FindsSent, Protocol):
    def status(self, external_id: str) -> FaxStatusEvent | None:
        """Ask the vendor where one outbound fax stands (a webhook may have been lost).

        ``outcome`` is DELIVERED / FAILED once final, None while queued or sending; None (no
        event) when the vendor does not know the fax."""
        ...

    def parse_webhook(
        self, body: bytes, headers: Mapping[str, str]
    ) -> FaxStatusEvent | FaxReceivedEvent | None:
        """Verify and decode one webhook; None for event types we do not act on.
        Raises WebhookError for bad signatures or malformed bodies."""
        ...

    def fetch_media(self, url: str) -> InboundDocument:
        """Download an inbound fax's document."""
        ...


@runtime_checkable
class ListsReceived(Protocol):
    """A fax channel that can list the faxes it received: the inbound sweep finds any whose
    ``fax.received`` webhook was lost (a provider's answer must never be)."""

    def list_received(self, since: datetime) -> list[FaxReceivedEvent]:
        """Every fax received at or after ``since`` (complete ones), oldest first."""
        ...


# --- packet delivery -------------------------------------------------------------------------


@dataclass(frozen=True)
class PacketSubmission:
    idempotency_key: str  # the delivery's key: the agency dedupes on it
    agency_id: str
    case_ref: str  # our case id
    notification_id: str
    packet_pdf: bytes
    manifest: Mapping[str, Any]
    sha256: str  # of packet_pdf
    supplemental: bool = False


@dataclass(frozen=True)
class DeliveryReceipt:
    receipt_id: str
    received_at: datetime
    sha256: str  # as the agency computed it; must equal ours
    extra: Mapping[str, Any] = field(default_factory=dict)


@runtime_checkable
class PacketDeliverer(Protocol):
    """Hands a packet to an external review agency."""

    def deliver(self, submission: PacketSubmission) -> DeliveryReceipt: ...


@dataclass(frozen=True)
class PacketFax:
    """One fax transmission of a packet to an agency. The fax vendor fetches the document
    (cover sheet + packet) from ``document_url``: ours, signed for this delivery, with no PHI
    in it. ``key`` is the transmission's key (the delivery's key for the first transmission,
    suffixed for each later one): the vendor dedupes on it where it can, and
    :meth:`FaxPacketTransport.find_sent` looks for it after a crash."""

    submission: PacketSubmission
    key: str
    document_url: str


@runtime_checkable
class FaxPacketTransport(Protocol):
    """An agency transport without a synchronous receipt: the packet goes by fax, and it is
    delivered only when the fax vendor confirms it (its status webhook, or :meth:`status` when
    the webhook is lost). ``worker/services/delivery.py`` drives it: the document is built and
    stored once, each transmission is counted before :meth:`transmit`, a transmission left by
    a crash is looked for with :meth:`find_sent` before anything is sent again."""

    vendor: str  # the fax vendor's registry name (its webhooks arrive at /v1/webhooks/<vendor>)

    def fax_document(self, submission: PacketSubmission, at: datetime) -> bytes:
        """What is faxed: a cover sheet (case and notification reference, page count, the
        packet's SHA-256; ``at`` is the instant printed on it) followed by the packet."""
        ...

    def transmit(self, fax: PacketFax) -> SendReceipt:
        """Hand one transmission to the fax vendor; the receipt's ``external_id`` is the
        vendor's fax id (outcome SENT: not yet delivered)."""
        ...

    def find_sent(self, fax: PacketFax, since: datetime) -> SendReceipt | None:
        """The vendor's fax carrying ``fax.key`` made at or after ``since``, or None."""
        ...

    def status(self, external_id: str) -> FaxStatusEvent | None:
        """Where one transmission stands at the vendor (None: the vendor does not know it)."""
        ...


@runtime_checkable
class RoutesAgencies(Protocol):
    """A deliverer that knows each agency's transport (``connectors.registry.AgencyRouter``)."""

    def transport_for(self, agency_id: str) -> PacketDeliverer | FaxPacketTransport | None:
        """The transport that reaches ``agency_id``; None when none is configured."""
        ...

    def fallback_for(self, agency_id: str) -> FaxPacketTransport | None:
        """The fax that carries ``agency_id``'s packets when its own transport fails
        permanently (its ``fallback_fax_number``); None when it has none."""
        ...
