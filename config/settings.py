"""Typed settings from ``GOODFAITH_*`` environment variables.

Every setting has an embedded default that runs on one machine with nothing installed:
SQLite under ``./var/``, a local object-store folder, a private Redis started on demand.
Nested settings use ``__``: ``GOODFAITH_FAX__API_KEY``. Maps take JSON:
``GOODFAITH_AGENCIES='{"agency-a": {"name": "...", "submit_url": "https://..."}}'``.
"""

from __future__ import annotations

from functools import lru_cache

from pydantic import BaseModel, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class AgencySettings(BaseModel):
    name: str
    submit_url: str  # HTTPS endpoint that accepts packet uploads (multipart)


class FaxSettings(BaseModel):
    """Telnyx Programmable Fax account."""

    api_base: str = "https://api.telnyx.com"
    api_key: str = ""
    connection_id: str = ""
    from_number: str = "+16175550000"  # the carrier's fax number; providers fax records back to it
    webhook_public_key: str | None = None  # Ed25519, base64: when set, webhooks must verify


class FhirSettings(BaseModel):
    requester_name: str = "goodfaith carrier"
    requester_identifier: str = "carrier-0001"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="GOODFAITH_", env_nested_delimiter="__", extra="ignore"
    )

    database_url: str = "sqlite:///./var/goodfaith.db"
    redis_url: str | None = None  # unset: `goodfaith demo` starts a private Redis itself
    object_store: str = "file://./var/objects"  # or s3://bucket/prefix
    s3_endpoint_url: str | None = None  # MinIO or moto; unset for AWS
    s3_region: str = "us-east-1"
    s3_sse: str | None = "AES256"  # server-side encryption; "aws:kms" or None to disable
    eoc_library: str = "file://./var/eoc"  # folder or s3:// prefix holding <plan_id>.pdf
    public_base_url: str = "http://127.0.0.1:8000"  # where providers' channels reach our API
    media_secret: str = "change-me"  # HMAC key for signed request-letter URLs
    carrier_name: str = "goodfaith Health Plan"
    agencies: dict[str, AgencySettings] = Field(default_factory=dict)
    fax: FaxSettings = Field(default_factory=FaxSettings)
    fhir: FhirSettings = Field(default_factory=FhirSettings)
    log_level: str = "INFO"
    log_format: str = "json"  # or "console"
    scheduler_interval_s: float = 5.0  # seconds between scheduler ticks in real time
    worker_processes: int = 1
    worker_threads: int = 8

    @field_validator("object_store", "eoc_library")
    @classmethod
    def _known_scheme(cls, v: str) -> str:
        if not (v.startswith("file://") or v.startswith("s3://")):
            raise ValueError("must start with file:// or s3:// (e.g. file://./var/objects)")
        return v


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment."""
    return Settings()
