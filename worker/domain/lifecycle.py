"""The case lifecycle: statuses and the rules that move a case, a request, an attempt and a
delivery from one status to the next. Pure: no I/O, no ORM; the use cases in
``worker/services/`` load rows, ask these functions, and write back what they say.

::

    case:     open ──► assembling ──► delivering ──► delivered | late
                │                                        │
                ├──► cancelled                           └──► (late records: supplemental packets)
                └──► completed (a campaign's case: every request closed; no packet, no agency)

    request:  open ──► fulfilled | no_records | unresponsive (at the cutoff) | cancelled

    attempt:  pending ──► sent ──► delivered | failed
                 │          ├──► (busy line: redial inside the same attempt, same row)
                 │          └──► (no final status by webhook: the vendor is asked, see
                 │                :class:`StatusChecks`; no answer in time → failed)
                 ├──► cancelled (the request or case closed before it went out)
                 └──► (left mid-send by a crash, :func:`left_mid_send`: the far side is
                       asked first, what it has is adopted, and only if nothing: sent)

    delivery: pending ──► delivered | failed (permanent error; transient errors retry)
              fax transports (no synchronous receipt, :func:`fax_delivery_action`):
              pending ──► (transmission handed to the vendor, awaiting its confirmation)
                 ──► delivered (fax.delivered / COMPLETED, by webhook or status check)
                 ──► (busy, other transient failure, no final status in time: a new
                      transmission on the delivery backoff) | failed (permanent failure)
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from worker.domain.types import AttemptOutcome

#: A timer the scheduler has enqueued work for is pushed this far ahead; the handler then sets
#: the real next time. If the message is lost, the work is enqueued again once the lease ends.
LEASE = timedelta(minutes=10)
#: A packet held for its missing EOC looks for it again this often (the notification's link,
#: then the carrier's library), so an EOC ops add is picked up within this time.
EOC_LOOK_AGAIN = timedelta(minutes=15)
#: Transport redials of one fax attempt (busy line, no answer): transmissions, not attempts.
MAX_TRANSMISSIONS = 3
#: Time between redials of one attempt.
REDIAL_DELAY = timedelta(minutes=5)
#: A transmission under way holds its attempt this long (longer than a connector call with all
#: its retries, about 2.5 minutes; shorter than :data:`LEASE`, so a timer that re-drives an
#: attempt left by a crash finds it free): another send command meanwhile is dropped.
SEND_LEASE = timedelta(minutes=5)
#: Waits before retrying an agency upload after each transient failure (seconds; the last
#: repeats): late beats never, so delivery never gives up on a transient error.
DELIVERY_BACKOFF_S = (60, 120, 300, 600, 900)
#: Failure reasons are stored clipped to this many characters.
REASON_CHARS = 256


class CaseStatus(StrEnum):
    OPEN = "open"  # outreach under way
    ASSEMBLING = "assembling"  # requests closed; the packet is being built
    DELIVERING = "delivering"  # packet built; the upload to the agency is pending
    DELIVERED = "delivered"  # the agency has the packet, on time
    LATE = "late"  # the agency has the packet, after ``due_at``
    CANCELLED = "cancelled"  # withdrawn or reversed before delivery
    COMPLETED = "completed"  # a campaign's case: its requests closed (campaigns have no packet)

    @property
    def delivered(self) -> bool:
        """The agency has the first packet (late records go into supplemental packets)."""
        return self in (CaseStatus.DELIVERED, CaseStatus.LATE)

    @property
    def closed(self) -> bool:
        """Nothing more is sent for the case: delivered, late, cancelled or completed."""
        return self.delivered or self in (CaseStatus.CANCELLED, CaseStatus.COMPLETED)

    @property
    def in_progress(self) -> bool:
        """Open, assembling or delivering: reported as ``open`` to outside readers."""
        return not self.closed


#: Case states whose timer (assembly cutoff, supplemental packet) the scheduler watches.
TIMED_CASE_STATES = (
    CaseStatus.OPEN,
    CaseStatus.ASSEMBLING,
    CaseStatus.DELIVERED,
    CaseStatus.LATE,
)


class RequestStatus(StrEnum):
    OPEN = "open"
    FULFILLED = "fulfilled"  # records came back
    NO_RECORDS = "no_records"  # the provider answered in writing that it holds none
    UNRESPONSIVE = "unresponsive"  # the assembly cutoff came first
    CANCELLED = "cancelled"


class DeliveryStatus(StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"
    CANCELLED = "cancelled"  # the case was withdrawn before the agency had the packet


class DocumentStatus(StrEnum):
    ACCEPTED = "accepted"
    QUARANTINED = "quarantined"


class DocumentKind(StrEnum):
    RECORDS = "records"
    NO_RECORDS = "no_records"  # a written "no records" reply: closes the request, not packed


class PacketKind(StrEnum):
    INITIAL = "initial"
    SUPPLEMENTAL = "supplemental"


# --- cases -----------------------------------------------------------------------------------


def packet_to_assemble(status: CaseStatus) -> PacketKind | None:
    """Which packet an assembly command builds for a case in ``status`` (None: nothing).

    An open case (or one whose assembly was interrupted) gets its first packet; a case the
    agency already has gets a supplemental packet of late records; a cancelled case, or one
    whose packet is already being delivered, gets none."""
    if status in (CaseStatus.OPEN, CaseStatus.ASSEMBLING):
        return PacketKind.INITIAL
    if status.delivered:
        return PacketKind.SUPPLEMENTAL
    return None


def status_on_delivery(delivered_at: datetime, due_at: datetime) -> CaseStatus:
    """The case status once the agency has the first packet: on time up to ``due_at``."""
    return CaseStatus.DELIVERED if delivered_at <= due_at else CaseStatus.LATE


def can_cancel(status: CaseStatus) -> bool:
    """Withdrawal or reversal stops a case until its packet is delivered, never after."""
    return not status.closed


def ready_to_assemble(case_status: CaseStatus, requests: Iterable[RequestStatus]) -> bool:
    """An open case is assembled as soon as every request is closed (before the cutoff)."""
    return case_status is CaseStatus.OPEN and all(r is not RequestStatus.OPEN for r in requests)


def wants_supplemental(case_status: CaseStatus, records: bool) -> bool:
    """Records arriving after the first packet went out go into a supplemental packet."""
    return case_status.delivered and records


def outreach_allowed(request: RequestStatus, case: CaseStatus) -> bool:
    """Attempts are planned and sent only while both the request and its case are open."""
    return request is RequestStatus.OPEN and case is CaseStatus.OPEN


# --- attempts --------------------------------------------------------------------------------


class SendAction(StrEnum):
    SEND = "send"  # first transmission, or a due redial
    LOOK = "look"  # counted but never answered (a crash): ask the far side, adopt or send
    DROP = "drop"  # stale message: the attempt is already past sending
    CANCEL = "cancel"  # the request or case closed before this attempt went out


def left_mid_send(outcome: AttemptOutcome, transmissions: int, has_external_id: bool) -> bool:
    """The attempt's transmission was counted but the far side's answer never recorded: the
    process stopped between "transmission counted" and "vendor answered". The fax (or Task)
    may or may not exist at the far side. A first transmission leaves the attempt pending; a
    redial leaves it sent, its previous transmission's external id cleared when the redial
    started. There is no column for this state: it is derived."""
    return (
        outcome in (AttemptOutcome.PENDING, AttemptOutcome.SENT)
        and transmissions >= 1
        and not has_external_id
    )


def send_action(
    outcome: AttemptOutcome,
    redial_due: bool,
    request: RequestStatus,
    case: CaseStatus,
    transmissions: int = 0,
    has_external_id: bool = False,
    in_flight: bool = False,
) -> SendAction:
    """What a send command does with an attempt.

    ``redial_due``: the attempt has a redial timer set (a busy line). ``in_flight``: another
    command is transmitting it now (its :data:`SEND_LEASE` has not ended): this one is dropped,
    whatever else holds, so one attempt is never on the wire twice. An attempt
    :func:`left_mid_send` is never sent blindly again: :attr:`SendAction.LOOK` first."""
    redial = redial_due and outcome is AttemptOutcome.SENT
    if in_flight or not (outcome is AttemptOutcome.PENDING or redial):
        return SendAction.DROP
    if not outreach_allowed(request, case):
        return SendAction.CANCEL
    if left_mid_send(outcome, transmissions, has_external_id):
        return SendAction.LOOK
    return SendAction.SEND


def transmission_key(idempotency_key: str, transmission: int) -> str:
    """The key the far side sees for one transmission: the attempt's own key for the first,
    a suffixed key for each redial (a redial is a new fax of the same attempt)."""
    return idempotency_key if transmission == 1 else f"{idempotency_key}-t{transmission}"


class FaxStep(StrEnum):
    IGNORE = "ignore"  # duplicate or late event for an attempt already finished
    DELIVERED = "delivered"
    REDIAL = "redial"  # a transport retry inside this attempt
    FAILED = "failed"  # the attempt failed: the policy plans the next one


def fax_status_step(
    current: AttemptOutcome,
    delivered: bool,
    retryable: bool,
    transmissions: int,
) -> FaxStep:
    """What a final fax status (delivered or failed) does to an attempt.

    Duplicate and out-of-order webhooks are harmless: an attempt already delivered, failed or
    cancelled ignores them. A retryable failure (busy, no answer) is redialled until
    :data:`MAX_TRANSMISSIONS` transmissions have been made."""
    if current.final:
        return FaxStep.IGNORE
    if delivered:
        return FaxStep.DELIVERED
    if retryable and transmissions < MAX_TRANSMISSIONS:
        return FaxStep.REDIAL
    return FaxStep.FAILED


#: A crashed send is looked for among the far side's faxes created since the attempt was
#: planned, less this much (clock skew between us and the vendor).
LOOKUP_SKEW = timedelta(minutes=5)


@dataclass(frozen=True)
class StatusChecks:
    """When to ask the fax vendor about a transmission whose final webhook has not come.

    ``after``: the first check, counted from the transmission (a fax normally ends within
    minutes; its webhook is then late or lost); ``every``: the wait between checks while the
    vendor still says queued or sending; ``give_up``: counted from the transmission, after which
    the attempt is failed (the policy then plans the next one). Calendar time.
    """

    after: timedelta = timedelta(minutes=15)
    every: timedelta = timedelta(minutes=15)
    give_up: timedelta = timedelta(hours=4)

    def first(self, sent_at: datetime) -> datetime:
        """The first check of a transmission made at ``sent_at``."""
        return sent_at + self.after

    def next(self, sent_at: datetime, now: datetime) -> datetime | None:
        """The check after one at ``now`` that found no final status; None: give up."""
        deadline = sent_at + self.give_up
        if now >= deadline:
            return None
        return min(max(now + self.every, self.first(sent_at)), deadline)


#: While answers are awaited (an open request whose fax reached the provider), the vendor is
#: asked this often for faxes received whose ``fax.received`` webhook never came.
INBOUND_SWEEP_EVERY = timedelta(minutes=30)
#: Each sweep lists what was received since the previous one, less this much (late listings,
#: clock skew); the first looks back this far too. Listing twice is harmless (one row per fax).
INBOUND_SWEEP_OVERLAP = timedelta(hours=1)


def failure_reason(text: str) -> str:
    """A failure reason as stored and shown on the attestation (clipped)."""
    return text[:REASON_CHARS]


# --- delivery --------------------------------------------------------------------------------


def delivery_backoff(tries: int) -> timedelta:
    """Wait before the next upload after ``tries`` transient failures (1-based)."""
    index = min(max(tries, 1), len(DELIVERY_BACKOFF_S)) - 1
    return timedelta(seconds=DELIVERY_BACKOFF_S[index])


def delivery_target_missed(now: datetime, deliver_by: datetime, delivered: bool) -> bool:
    """Past the internal delivery target and still undelivered: a person must look."""
    return not delivered and now >= deliver_by


# --- fax delivery (a transport the vendor confirms later) -----------------------------------


class FaxDeliveryAction(StrEnum):
    """What a delivery command does with a packet sent by fax (:func:`fax_delivery_action`)."""

    SEND = "send"  # start a new transmission (the first, or after a failed one)
    LOOK = "look"  # left mid-send by a crash: ask the vendor for it first, adopt or re-send
    CHECK = "check"  # handed to the vendor: ask where it stands (the webhook may be lost)
    DROP = "drop"  # another command is handing it to the vendor right now


def fax_delivery_action(
    sending_until: datetime | None, has_external_id: bool, now: datetime
) -> FaxDeliveryAction:
    """What a pending fax delivery needs. ``sending_until`` is the lease a transmission holds
    while it is handed to the vendor (cleared once the vendor answered or refused); still set
    after it ended, the process stopped mid-send and the fax may exist at the vendor."""
    if sending_until is not None:
        return FaxDeliveryAction.DROP if sending_until > now else FaxDeliveryAction.LOOK
    if has_external_id:
        return FaxDeliveryAction.CHECK
    return FaxDeliveryAction.SEND


class FaxDeliveryStep(StrEnum):
    DELIVERED = "delivered"
    RETRY = "retry"  # a new transmission on the delivery backoff (late beats never)
    FAILED = "failed"  # the packet cannot go by fax to this number: flag the case


#: A packet fax failing for a reason the vendor does not call retryable (not a busy line or a
#: dropped call) is still tried this many transmissions in all before the delivery fails: the
#: reason may be ours and passing (the vendor could not fetch the document from our API).
FAX_DELIVERY_TRANSMISSIONS_ON_HARD_FAILURE = 3


def fax_delivery_step(delivered: bool, retryable: bool, transmissions: int) -> FaxDeliveryStep:
    """What a final fax status means for a packet delivery. Unlike a request letter (whose
    failure only moves the outreach policy on), an undelivered packet must still reach the
    agency: a busy line or another retryable failure is tried again on the delivery backoff
    without end (late beats never); any other failure is tried again too, until
    :data:`FAX_DELIVERY_TRANSMISSIONS_ON_HARD_FAILURE` transmissions have been made, and then
    the delivery fails and the case is flagged (a wrong number does not fix itself)."""
    if delivered:
        return FaxDeliveryStep.DELIVERED
    if retryable or transmissions < FAX_DELIVERY_TRANSMISSIONS_ON_HARD_FAILURE:
        return FaxDeliveryStep.RETRY
    return FaxDeliveryStep.FAILED
