"""The external-review notification document that opens a case, and its validation.

Invalid input is refused whole, with one message per bad field; nothing is stored.
"""

from __future__ import annotations

import re
from datetime import date
from typing import Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from worker.domain.types import ReviewType

E164 = re.compile(r"^\+[1-9]\d{6,14}$")


class IntakeError(ValueError):
    """The notification is invalid. ``errors`` lists ``(field path, message)`` pairs."""

    def __init__(self, errors: list[tuple[str, str]]) -> None:
        self.errors = errors
        super().__init__("; ".join(f"{loc}: {msg}" for loc, msg in errors))


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, frozen=True)

    @field_validator("*", mode="after")
    @classmethod
    def _no_nul(cls, value: Any) -> Any:
        """PostgreSQL text cannot hold NUL: refused here, naming the field, not at the insert."""
        if isinstance(value, str) and "\x00" in value:
            raise ValueError("must not contain NUL (\\u0000) characters")
        if isinstance(value, list) and any(isinstance(v, str) and "\x00" in v for v in value):
            raise ValueError("must not contain NUL (\\u0000) characters")
        return value


class Insured(_Strict):
    member_id: str = Field(min_length=1, max_length=64)
    name: str = Field(min_length=1, max_length=256)
    birth_date: date


#: A business identifier as payers write them: visible ASCII, no spaces.
_BUSINESS_ID = r"^[\x21-\x7e]+$"


class Coverage(_Strict):
    """The insured's coverage. ``coverage_id`` (optional): the payer's identifier of the
    coverage (policy) under review, sent to FHIR providers as the Task's ``reasonReference``
    when no ``dispute.claim_id`` is given."""

    plan_id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")
    eoc_uri: str | None = None
    coverage_id: str | None = Field(default=None, min_length=1, max_length=64, pattern=_BUSINESS_ID)


class Dispute(_Strict):
    """What is disputed. ``claim_id`` (optional): the payer's identifier of the claim or prior
    authorization whose denial is under review (the FHIR Task's ``reasonReference``)."""

    service: str = Field(min_length=1, max_length=512)
    codes: list[str] = Field(default_factory=list)
    dates_of_service: list[date] = Field(default_factory=list)
    claim_id: str | None = Field(default=None, min_length=1, max_length=64, pattern=_BUSINESS_ID)


_VENDOR_ID = r"^[A-Za-z0-9._-]+$"


class ChannelIn(_Strict):
    """One way to reach a provider or its designee: ``{"kind": "fax", "number": "+1..."}``,
    ``{"kind": "fhir", "base_url": "https://..."}`` (a Da Vinci CDex server) or
    ``{"kind": "vendor", "vendor_id": "..."}`` (an order to a configured retrieval vendor,
    ``GOODFAITH_RETRIEVAL_VENDORS``)."""

    kind: Literal["fax", "fhir", "vendor"]
    number: str | None = None
    base_url: str | None = None
    vendor_id: str | None = Field(default=None, min_length=1, max_length=64, pattern=_VENDOR_ID)

    @model_validator(mode="after")
    def _destination(self) -> ChannelIn:
        given = {
            "number": self.number is not None,
            "base_url": self.base_url is not None,
            "vendor_id": self.vendor_id is not None,
        }
        wanted = {"fax": "number", "fhir": "base_url", "vendor": "vendor_id"}[self.kind]
        extra = [k for k, present in given.items() if present and k != wanted]
        if extra:
            raise ValueError(f"a {self.kind} channel takes only '{wanted}', not {extra[0]!r}")
        if self.kind == "fax":
            if not self.number or not E164.match(self.number):
                raise ValueError("a fax channel needs 'number' in E.164 form, e.g. +16175550101")
        elif self.kind == "fhir":
            if not self.base_url or not self.base_url.startswith(("https://", "http://")):
                raise ValueError("a fhir channel needs 'base_url' (https://...)")
        elif not self.vendor_id:
            raise ValueError("a vendor channel needs 'vendor_id', e.g. \"ciox\"")
        return self

    @property
    def destination(self) -> str:
        """The fax number, FHIR base URL or vendor id."""
        value = {"fax": self.number, "fhir": self.base_url, "vendor": self.vendor_id}[self.kind]
        assert value is not None
        return value


class Designee(_Strict):
    """The provider's designee, e.g. a record-retrieval vendor."""

    vendor_id: str = Field(min_length=1, max_length=64, pattern=_VENDOR_ID)
    name: str = Field(min_length=1, max_length=256)
    #: how to reach it; default: an order through the vendor's API (``kind: vendor``)
    channels: list[ChannelIn] = Field(default_factory=list)

    @model_validator(mode="after")
    def _vendor_channel(self) -> Designee:
        if not self.channels:
            object.__setattr__(
                self, "channels", [ChannelIn(kind="vendor", vendor_id=self.vendor_id)]
            )
        return self


def npi_check_digit(first_nine: str) -> int:
    """The NPI check digit: Luhn over '80840' + the first nine digits."""
    total = 0
    for i, ch in enumerate(reversed("80840" + first_nine)):
        d = int(ch)
        if i % 2 == 0:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return (10 - total % 10) % 10


def _npi_ok(npi: str) -> bool:
    return bool(re.fullmatch(r"\d{10}", npi)) and npi_check_digit(npi[:9]) == int(npi[9])


_HHMM = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")


class ProviderIn(_Strict):
    """One provider. ``business_hours`` (optional, ``["HH:MM", "HH:MM"]`` local to the
    jurisdiction) are the provider's own opening hours, used to time outreach on standard
    reviews instead of the jurisdiction's."""

    provider_id: str = Field(min_length=1, max_length=64)
    name: str = Field(min_length=1, max_length=256)
    npi: str | None = None
    role: Literal["treating", "requesting", "consulting", "other"] = "treating"
    network: Literal["in", "out"] = "in"
    channels: list[ChannelIn] = Field(min_length=1)
    designee: Designee | None = None
    business_hours: list[str] | None = None

    @model_validator(mode="after")
    def _npi(self) -> ProviderIn:
        if self.business_hours is not None:
            hours = self.business_hours
            if len(hours) != 2 or not all(_HHMM.match(h) for h in hours) or hours[0] >= hours[1]:
                raise ValueError(
                    'business_hours must be ["HH:MM", "HH:MM"], opening before closing, '
                    'e.g. ["08:30", "16:30"]'
                )
        if self.npi is not None and not _npi_ok(self.npi):
            raise ValueError("npi must be 10 digits with a valid check digit")
        if any(ch.kind == "fhir" for ch in self.channels) and not self.npi:
            raise ValueError("a provider with a fhir channel needs its npi (the Task owner)")
        return self


class Notification(_Strict):
    notification_id: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:-]+$")
    received_at: AwareDatetime
    jurisdiction: str = Field(min_length=1, max_length=16)
    review_type: ReviewType
    agency_id: str = Field(min_length=1, max_length=64)
    insured: Insured
    coverage: Coverage
    authorization_uri: str | None = None
    dispute: Dispute
    providers: list[ProviderIn] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_providers(self) -> Notification:
        ids = [p.provider_id for p in self.providers]
        if len(ids) != len(set(ids)):
            raise ValueError("providers: provider_id values must be unique")
        return self


def parse_notification(data: Any) -> Notification:
    """Validate an intake document; raises IntakeError naming every bad field."""
    if not isinstance(data, dict):
        raise IntakeError([("(document)", "must be a JSON object")])
    try:
        return Notification.model_validate(data)
    except ValidationError as exc:
        errors = []
        for err in exc.errors():
            loc = ".".join(str(p) for p in err["loc"]) or "(document)"
            msg = err["msg"].removeprefix("Value error, ")
            errors.append((loc, msg))
        raise IntakeError(errors) from None
