"""Value types shared by the domain, the workers and the connectors.

Plain frozen dataclasses and string enums: no I/O, no ORM. Instants are timezone-aware.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum


class ReviewType(StrEnum):
    STANDARD = "standard"
    EXPEDITED = "expedited"


class ChannelKind(StrEnum):
    FAX = "fax"
    FHIR = "fhir"  # Da Vinci CDex Task data request
    VENDOR = "vendor"  # an order to a record-retrieval vendor (connectors/vendor/)


class AttemptReason(StrEnum):
    INITIAL = "initial"
    FOLLOW_UP = "follow_up"
    ESCALATION = "escalation"  # previous transmission failed: another channel or the designee


class AttemptOutcome(StrEnum):
    """Transmission outcome of one attempt (not whether records came back)."""

    PENDING = "pending"  # row written, not yet handed to the connector
    SENT = "sent"  # accepted by the channel, final status not yet known
    DELIVERED = "delivered"  # the far side confirmed receipt (fax.delivered, Task accepted)
    FAILED = "failed"  # the transmission finally failed (after transport retries)
    CANCELLED = "cancelled"  # never sent: the request or case closed first

    @property
    def final(self) -> bool:
        """No later status webhook or poll changes this outcome."""
        return self in (AttemptOutcome.DELIVERED, AttemptOutcome.FAILED, AttemptOutcome.CANCELLED)


@dataclass(frozen=True)
class Channel:
    """One way of reaching a provider or its designee (a record-retrieval vendor)."""

    kind: ChannelKind
    destination: str  # E.164 fax number, a FHIR base URL, or a retrieval vendor's id
    designee: bool = False  # True when this reaches the provider's designee, not the provider
    owner_id: str | None = None  # FHIR: the owner identifier (provider NPI) for the Task


@dataclass(frozen=True)
class AttemptFact:
    """What the outreach policy needs to know about an attempt already made."""

    number: int  # 1-based
    planned_at: datetime
    sent_at: datetime | None
    channel: Channel
    outcome: AttemptOutcome


@dataclass(frozen=True)
class PlannedAttempt:
    """The policy's decision: make attempt ``number`` at ``at`` over ``channel``."""

    number: int
    at: datetime
    channel: Channel
    reason: AttemptReason
