"""The providers on the far side: how each behaves, who a fax number or NPI reaches, how many of
our requests reached it, and what it answers with. Shared by every channel's far side, so a
provider reached by fax and by FHIR keeps one count."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from simulator.documents import generate_no_records_letter, generate_records_pdf

__all__ = ["ProviderBehaviour", "Providers"]


@dataclass(frozen=True)
class ProviderBehaviour:
    """A provider's behaviour in the simulator.

    - ``respond_after_attempts``: the provider answers once the count of our requests that
      reached it (fax delivered, FHIR Task accepted) reaches this number; it answers once.
      ``None`` = it never answers.
    - ``reply_delay_minutes``: minutes (elapsed, on the simulator's clock) from the request that
      triggers the answer to the answer.
    - ``pages``: pages of the generated records reply.
    - ``fax``: ``"busy"`` = every fax transmission to its number fails with ``user_busy``.
    - ``fhir``: how its FHIR server takes a CDex Task: ``"ok"`` (accepted, then answered as
      above), ``"rejects"`` (the Task is ``rejected`` when the provider looks at it),
      ``"fails"`` (the Task ``failed``), ``"down"`` (the server answers 503 to every new Task).
      A rejected or failed Task did not reach the provider's records office: not counted.
    - ``vendor``: how its retrieval vendor (designee) takes an order: ``"ok"`` (worked, then
      answered as above), ``"no_records"`` (a certificate of no records once the order reached
      the provider, whatever the count), ``"down"`` (the vendor answers 503 to every new order).
    - ``fhir_subscriptions``: whether its FHIR server takes a Subscription to a Task and
      notifies of its changes (False: 404, as a server without them; its Tasks are polled).
    - ``reply``: ``"records"`` or a written ``"no_records"`` answer.
    - ``document``: a file sent as-is instead of a generated records PDF (e.g. a broken PDF).
    """

    respond_after_attempts: int | None = 1
    reply_delay_minutes: float = 60
    pages: int = 5
    fax: Literal["ok", "busy"] = "ok"
    fhir: Literal["ok", "rejects", "fails", "down"] = "ok"
    fhir_subscriptions: bool = True
    vendor: Literal["ok", "no_records", "down"] = "ok"
    reply: Literal["records", "no_records"] = "records"
    document: Path | None = None


class Providers:
    """Every simulated provider. Thread-safe.

    ``behaviours`` is keyed by provider id; ``directory`` maps a fax number or NPI to a provider
    id (unknown keys are their own provider id, behaving as ``default``). ``names`` names
    providers on generated documents; the provider id is used otherwise.
    """

    def __init__(
        self,
        *,
        behaviours: Mapping[str, ProviderBehaviour],
        directory: Mapping[str, str],
        default: ProviderBehaviour,
        names: Mapping[str, str],
    ) -> None:
        self._behaviours = dict(behaviours)
        self._directory = dict(directory)
        self._default = default
        self._names = dict(names)
        self._lock = threading.Lock()
        self._delivered: dict[str, int] = {}
        self._per_request: dict[str, int] = {}
        self._responded: set[str] = set()

    def lookup(self, key: str) -> tuple[str, ProviderBehaviour]:
        """The provider a fax number or NPI reaches, and its behaviour."""
        provider_id = self._directory.get(key, key)
        return provider_id, self.behaviour(provider_id)

    def behaviour(self, provider_id: str) -> ProviderBehaviour:
        return self._behaviours.get(provider_id, self._default)

    def delivered_count(self, provider_id: str) -> int:
        """How many of our requests have reached ``provider_id`` so far."""
        with self._lock:
            return self._delivered.get(provider_id, 0)

    def count_delivery(
        self, provider_id: str, behaviour: ProviderBehaviour, request_ref: str
    ) -> bool:
        """Count one delivered request; True when this one triggers the provider's answer.

        Counted per request (the carrier's reference), as a records office works: a provider
        that appears in several cases answers each of them by its own count."""
        with self._lock:
            self._delivered[provider_id] = self._delivered.get(provider_id, 0) + 1
            key = f"{provider_id}|{request_ref}"
            count = self._per_request.get(key, 0) + 1
            self._per_request[key] = count
            threshold = behaviour.respond_after_attempts
            if threshold is None or count < threshold or key in self._responded:
                return False
            self._responded.add(key)
            return True

    def reply_document(
        self,
        provider_id: str,
        behaviour: ProviderBehaviour,
        reference: str,
        member_id: str,
        *,
        patient_name: str = "",
        birth_date: str = "",
    ) -> bytes:
        """The provider's answer quoting ``reference``: its own ``document`` file as-is, a "no
        records" letter, or a generated records PDF of ``behaviour.pages`` pages naming the
        patient as the request gave them."""
        name = self._names.get(provider_id, provider_id)
        if behaviour.document is not None:
            return behaviour.document.read_bytes()
        if behaviour.reply == "no_records":
            return generate_no_records_letter(reference, name)
        return generate_records_pdf(
            reference,
            name,
            member_id,
            behaviour.pages,
            patient_name=patient_name,
            birth_date=birth_date,
        )
