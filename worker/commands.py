"""Commands: what a worker is told to do next. Frozen, carrying ids only (never PHI).

Each command maps to one dramatiq actor (worker/actors.py) and one service function
(worker/services.py). A service returns the follow-up commands; the caller enqueues them
after its transaction has committed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import get_args


@dataclass(frozen=True)
class OpenCase:
    case_id: str


@dataclass(frozen=True)
class PlanOutreach:
    request_id: str


@dataclass(frozen=True)
class FirstAttempts:
    """Plan and send the first attempts of a batch of a campaign's requests, a few
    transactions for the whole batch (the bulk lane: services/bulk.py). Its one id is the
    requests' ids, comma-separated (at most ``bulk.BATCH``)."""

    request_ids: str

    @property
    def ids(self) -> list[str]:
        return self.request_ids.split(",")


@dataclass(frozen=True)
class SendAttempt:
    attempt_id: str


@dataclass(frozen=True)
class PollTask:
    attempt_id: str


@dataclass(frozen=True)
class ReconcileAttempt:
    """Ask the fax vendor where an attempt's transmission stands (its webhook is late/lost)."""

    attempt_id: str


@dataclass(frozen=True)
class CancelAttempt:
    """Withdraw a cancelled case's attempt at the far side (its FHIR Task → cancelled)."""

    attempt_id: str


@dataclass(frozen=True)
class IngestInbound:
    inbound_id: str


@dataclass(frozen=True)
class SweepInbound:
    sweep_id: str  # a Sweep row (storage/models.py): "inbound_fax"


@dataclass(frozen=True)
class AssemblePacket:
    case_id: str


@dataclass(frozen=True)
class DeliverPacket:
    delivery_id: str


Command = (
    OpenCase
    | PlanOutreach
    | FirstAttempts
    | SendAttempt
    | PollTask
    | ReconcileAttempt
    | CancelAttempt
    | IngestInbound
    | SweepInbound
    | AssemblePacket
    | DeliverPacket
)


def command_named(name: str, entity_id: str) -> Command:
    """Rebuild a command from its type name and id (a dead letter's retry); KeyError if unknown."""
    types = {t.__name__: t for t in get_args(Command)}
    command: Command = types[name](entity_id)
    return command


def entity_id(command: Command) -> str:
    """The one id a command carries (the inverse of :func:`command_named`)."""
    value: str = next(iter(vars(command).values()))
    return value
