"""How one simulated provider behaves on the far side of every channel."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

__all__ = ["ProviderBehaviour"]


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
    - ``reply``: ``"records"`` or a written ``"no_records"`` answer.
    - ``document``: a file sent as-is instead of a generated records PDF (e.g. a broken PDF).
    """

    respond_after_attempts: int | None = 1
    reply_delay_minutes: float = 60
    pages: int = 5
    fax: Literal["ok", "busy"] = "ok"
    reply: Literal["records", "no_records"] = "records"
    document: Path | None = None
