"""The provider directory: designees (record-retrieval vendors) the carrier knows a provider
routes its records requests to, when the notification does not say so itself.

File (TOML; ``GOODFAITH_PROVIDER_DIRECTORY`` names it; unset: no directory)::

    # keyed by the provider's NPI (10 digits, valid check digit)
    [providers."1234567893"]
    name = "Springfield Orthopedics"          # optional, for people reading the file
    designee = { vendor_id = "ciox", name = "Ciox Health" }

A designee from the directory reaches the vendor through its order API (a ``vendor`` channel);
the vendor id must be configured in ``GOODFAITH_RETRIEVAL_VENDORS``. A designee named in the
notification wins over the directory's.

Unknown keys are refused, and every problem is reported at once, naming the file and the key.
Nothing is read at import.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from worker.notification import Designee, npi_check_digit

__all__ = [
    "ProviderDirectory",
    "ProviderDirectoryError",
    "load_provider_directory",
]


class ProviderDirectoryError(ValueError):
    """The directory file is unreadable or invalid; the message names the file and each key."""


class _Entry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str | None = Field(default=None, max_length=256)
    designee: Designee


class _File(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    providers: dict[str, _Entry] = Field(default_factory=dict)

    @field_validator("providers")
    @classmethod
    def _npis(cls, v: dict[str, _Entry]) -> dict[str, _Entry]:
        bad = [
            npi
            for npi in v
            if not (len(npi) == 10 and npi.isdigit() and npi_check_digit(npi[:9]) == int(npi[9]))
        ]
        if bad:
            raise ValueError(f"not an NPI (10 digits, valid check digit): {', '.join(bad)}")
        return v


class ProviderDirectory:
    """Designees by provider NPI. Empty when no file is configured."""

    def __init__(self, designees: Mapping[str, Designee] | None = None) -> None:
        self._designees = MappingProxyType(dict(designees or {}))

    def designee(self, npi: str | None) -> Designee | None:
        """The designee the directory knows for ``npi``, or None."""
        return self._designees.get(npi) if npi else None

    def __len__(self) -> int:
        return len(self._designees)


def load_provider_directory(path: str | Path | None) -> ProviderDirectory:
    """Read the directory at ``path`` (None or empty: an empty directory)."""
    if not path:
        return ProviderDirectory()
    file = Path(path)
    try:
        data = tomllib.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ProviderDirectoryError(f"{file}: no such provider directory file") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ProviderDirectoryError(f"{file}: not readable TOML ({exc})") from None
    try:
        parsed = _File.model_validate(data)
    except ValidationError as exc:
        problems = [
            f"{'.'.join(str(p) for p in e['loc'])}: "
            + ("unknown key" if e["type"] == "extra_forbidden" else e["msg"])
            for e in exc.errors()
        ]
        raise ProviderDirectoryError(f"{file}: " + "; ".join(problems)) from None
    return ProviderDirectory({npi: e.designee for npi, e in parsed.providers.items()})
