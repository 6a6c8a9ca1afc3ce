"""Typed settings from ``GOODFAITH_*`` environment variables.

Every setting has an embedded default that runs on one machine with nothing installed:
SQLite under ``./var/``, a local object-store folder, a private Redis started on demand.
Nested settings use ``__``: ``GOODFAITH_FAX__API_KEY``. Maps take JSON:
``GOODFAITH_AGENCIES='{"agency-a": {"name": "...", "submit_url": "https://...",
"bearer_token": "..."}}'``.

Which adapter serves a port is a setting, resolved against ``connectors/registry.py``: a
discriminated union whose members are the registered vendors' settings models::

    GOODFAITH_FAX__VENDOR=telnyx        (default) the rest of GOODFAITH_FAX__* is that
                                        vendor's model (connectors/fax/telnyx.py: TelnyxSettings)
    GOODFAITH_FHIR__VENDOR=cdex         (default) FhirSettings
    GOODFAITH_AGENCIES[id].transport    "https" (default) AgencySettings;
                                        "sftp" SftpAgencySettings (connectors/delivery/sftp.py);
                                        "fax" FaxAgencySettings (connectors/delivery/fax.py):
                                        agencies that take only fax; any transport may name a
                                        fallback_fax_number for when it fails permanently
    GOODFAITH_RETRIEVAL_VENDORS[id].adapter  "orders-v1" (default) RetrievalVendorSettings
                                        (connectors/vendor/orders.py): the provider designees'
                                        retrieval vendors, by vendor id

An unknown name fails at start-up, naming the setting and the registered names.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any, Literal

from pydantic import (
    BaseModel,
    Field,
    PositiveFloat,
    PositiveInt,
    SecretStr,
    SerializeAsAny,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from worker.domain.similarity import QASettings


class AgencyTransportSettings(BaseModel):
    """What every agency's settings share: its name and the ``transport`` that reaches it
    (registry: AGENCY_TRANSPORTS). Each transport subclasses it with its own fields.

    ``fallback_fax_number`` (E.164, optional): when the agency's own transport fails
    permanently (refused, our credentials rejected, the endpoint gone), the packet goes by fax
    to this number instead, through the fax vendor, and the case is flagged so that the
    transport gets fixed. Transient failures keep retrying the transport itself. Agencies that
    take only fax use ``transport: "fax"`` instead."""

    name: str
    transport: str = "https"
    fallback_fax_number: str | None = None

    @field_validator("fallback_fax_number")
    @classmethod
    def _fallback_e164(cls, v: str | None) -> str | None:
        if v is not None and not re.fullmatch(r"\+[1-9]\d{1,14}", v.strip()):
            raise ValueError("fallback_fax_number must be E.164, e.g. +16175550199")
        return v.strip() if v is not None else None


class AgencySettings(AgencyTransportSettings):
    """One external review agency reached over HTTPS (``transport="https"``, the default).

    Credentials are sent on every upload and never logged (``SecretStr`` prints as stars):
    either ``bearer_token`` (``Authorization: Bearer``) or ``basic_username`` +
    ``basic_password`` (``Authorization: Basic``), or neither.
    """

    submit_url: str  # HTTPS endpoint that accepts packet uploads (multipart)
    bearer_token: SecretStr | None = None
    basic_username: str | None = None
    basic_password: SecretStr | None = None

    @model_validator(mode="after")
    def _one_credential(self) -> AgencySettings:
        if (self.basic_username is None) != (self.basic_password is None):
            raise ValueError("set both basic_username and basic_password, or neither")
        if self.bearer_token is not None and self.basic_username is not None:
            raise ValueError(
                "set bearer_token or basic_username/basic_password, not both: "
                "each uses the Authorization header"
            )
        return self


class FaxVendorSettings(BaseModel):
    """What every fax vendor's settings share. Each vendor subclasses it with
    ``vendor: Literal["<name>"]`` and its own fields (account, keys, endpoints)."""

    vendor: str
    from_number: str = "+16175550000"  # the carrier's fax number; providers fax records back to it

    def secret_problems(self) -> list[str]:
        """What keeps this vendor from running in production (a missing or invalid webhook
        verification key...), one line each naming the setting; empty when it can run."""
        return []


def _absolute_uri(value: str) -> str:
    if not value.startswith(("urn:", "http://", "https://")) or any(c.isspace() for c in value):
        raise ValueError(
            "must be an absolute URI naming the identifier's namespace, e.g. "
            "https://payer.example/fhir/sid/member-id or urn:oid:2.16.840.1.113883.6.300"
        )
    return value


class FhirSettings(BaseModel):
    """The carrier's identity on FHIR requests (``GOODFAITH_FHIR__*``); ``vendor`` picks the
    FHIR adapter.

    Identifiers on a CDex Task are namespaced (``Identifier.system``, an absolute URI the
    carrier owns or a registered one): the member id in ``member_id_system``, the carrier
    itself as ``requester_identifier`` in ``requester_identifier_system`` (e.g. the NAIC
    company code, ``urn:oid:2.16.840.1.113883.6.300``), the claim and coverage under review in
    ``claim_id_system`` / ``coverage_id_system``. The ``urn:goodfaith:*`` defaults run the demo;
    set your own in production. ``signature_required`` is sent as the CDex ``signature-flag``
    input: whether the provider must sign the records it returns. ``subscriptions``: after
    each Task, ask the provider's server to notify us of its changes (a FHIR Subscription,
    connectors/fhir/subscriptions.py); polls then only cover a lost notification.
    """

    vendor: str = "cdex"
    requester_name: str = "goodfaith carrier"
    requester_identifier: str = "carrier-0001"
    requester_identifier_system: str = "urn:goodfaith:carrier-id"
    member_id_system: str = "urn:goodfaith:member-id"
    claim_id_system: str = "urn:goodfaith:claim-id"
    coverage_id_system: str = "urn:goodfaith:coverage-id"
    signature_required: bool = False
    subscriptions: bool = True

    @field_validator(
        "requester_identifier_system", "member_id_system", "claim_id_system", "coverage_id_system"
    )
    @classmethod
    def _system_is_a_uri(cls, v: str) -> str:
        return _absolute_uri(v)


class DocumentSettings(BaseModel):
    """Bounded work per inbound document (``GOODFAITH_DOCUMENTS__*``). A document over a limit
    is quarantined with a reason naming the limit. The checks run in a child process with
    ``max_memory_bytes`` of address space (RLIMIT_AS) and ``max_seconds`` of CPU time
    (RLIMIT_CPU), killed at ``max_seconds`` of wall time; ``isolated=False`` checks in the
    calling process instead (tests, benchmarks only)."""

    max_bytes: PositiveInt = 200 * 2**20  # bytes of one received file
    max_pages: PositiveInt = 5000  # pages of one document
    max_stream_bytes: PositiveInt = 256 * 2**20  # decompressed bytes of any one stream
    max_seconds: PositiveFloat = 60.0  # wall (and CPU) seconds for one document's checks
    max_memory_bytes: PositiveInt = 2 * 2**30  # address space of the checking process
    isolated: bool = True
    # Quality checks on the text (worker/domain/similarity.py): pages compared by the Jaccard
    # similarity of their word shingles, estimated by MinHash.
    qa_max_pages: PositiveInt = 500  # pages whose text is read and compared, per document
    qa_shingle_words: PositiveInt = 5
    qa_minhash_perm: PositiveInt = 64
    qa_min_words: PositiveInt = 40  # pages with fewer words are not compared (covers, scans)
    qa_clone_threshold: float = Field(default=0.85, gt=0, le=1)  # a page this similar: "cloned"
    qa_duplicate_threshold: float = Field(default=0.95, gt=0, le=1)  # every page: "duplicate"

    def qa(self) -> QASettings:
        """The quality-check thresholds as the domain rules take them."""
        return QASettings(
            shingle_words=self.qa_shingle_words,
            minhash_perm=self.qa_minhash_perm,
            min_words=self.qa_min_words,
            clone_threshold=self.qa_clone_threshold,
            duplicate_threshold=self.qa_duplicate_threshold,
        )


class RateLimitSettings(BaseModel):
    """Rate limits of the API (``GOODFAITH_RATE_LIMITS__*``), token buckets per caller: intake
    per API key, webhooks per client address. Rates are per second; 0 turns a limit off."""

    intake_per_s: float = Field(default=20.0, ge=0)
    intake_burst: PositiveInt = 200
    webhooks_per_s: float = Field(default=100.0, ge=0)
    webhooks_burst: PositiveInt = 1000


class BodyLimitSettings(BaseModel):
    """What the API reads of a request body (``GOODFAITH_BODY_LIMITS__*``), checked at the edge
    before any route: more bytes → 413, JSON nested deeper → 422 (api/limits.py)."""

    #: bytes of any body but a webhook's (a notification with 20 providers is ~15 KB)
    max_bytes: PositiveInt = 1_048_576
    #: bytes of a vendor webhook: a Sinch INCOMING_FAX callback may carry the fax's PDF
    webhook_max_bytes: PositiveInt = 33_554_432
    #: levels of JSON ``[``/``{`` (ours nest 5 deep; Python's parser recurses once per level)
    max_json_depth: int = Field(default=64, ge=8, le=256)


class DatabaseSettings(BaseModel):
    """The PostgreSQL connection pool of each process (``GOODFAITH_DB__*``); SQLite keeps its
    own embedded set-up. Each process holds at most ``pool_size + max_overflow`` connections:
    size them to the process's threads (``worker_threads`` plus the audit chainer and the
    scheduler's own reads), and the database (or PgBouncer) to the sum over processes.

    Behind PgBouncer in *transaction* pooling mode (each transaction may run on another server
    connection) set ``prepared_statements=false``: psycopg otherwise prepares a statement on
    the server after it ran ``prepare_threshold`` times on a connection, and the next
    transaction, on another server connection, finds it missing (or a name taken). PgBouncer
    1.21+ with ``max_prepared_statements > 0`` tracks them itself and needs no change."""

    pool_size: int = Field(default=10, ge=1)  # connections kept open per process
    max_overflow: int = Field(default=10, ge=0)  # more, opened under load and closed after
    pool_timeout_s: float = Field(default=30.0, gt=0)  # wait for a free connection, then fail
    pre_ping: bool = True  # test each connection as it leaves the pool (a restarted server)
    #: close connections older than this many seconds (-1: never); set it below any idle
    #: timeout between us and the database (PgBouncer's client_idle_timeout, a load balancer)
    pool_recycle_s: int = Field(default=-1, ge=-1)
    #: psycopg's server-side prepared statements; false behind a transaction-mode PgBouncer
    prepared_statements: bool = True
    prepare_threshold: PositiveInt = 5  # executions on one connection before one is prepared


# The registry is imported inside functions: it imports the models above (no import cycle),
# and importing it here would load every adapter with the settings.


def _default_fax() -> FaxVendorSettings:
    """The default vendor's settings, all defaults (GOODFAITH_FAX__VENDOR unset)."""
    from connectors.registry import FAX_VENDORS

    return FAX_VENDORS["telnyx"].settings()  # type: ignore[no-any-return]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="GOODFAITH_", env_nested_delimiter="__", extra="ignore"
    )

    database_url: str = "sqlite:///./var/goodfaith.db"
    db: DatabaseSettings = Field(default_factory=DatabaseSettings)  # pool (PostgreSQL only)
    redis_url: str | None = None  # unset: `goodfaith demo` starts a private Redis itself
    #: the message broker of the worker, API and scheduler processes (worker/brokers.py)
    broker: Literal["redis", "rabbitmq"] = "redis"
    rabbitmq_url: str = "amqp://guest:guest@127.0.0.1:5672/"  # used when broker = rabbitmq
    #: queues are ``<queue_prefix>.<lane>``: environments sharing one broker keep apart
    queue_prefix: str = Field(default="goodfaith", pattern=r"^[A-Za-z0-9_-]+$")
    object_store: str = "file://./var/objects"  # or s3://bucket/prefix
    s3_endpoint_url: str | None = None  # MinIO or moto; unset for AWS
    s3_region: str = "us-east-1"
    s3_sse: str | None = "AES256"  # server-side encryption; "aws:kms" or None to disable
    #: HTTP connections the process's one S3 client keeps (botocore's max_pool_connections);
    #: unset: the worker's threads (``worker_threads``, ``goodfaith worker -t``), at least 10,
    #: so no thread waits for or churns a connection
    s3_max_pool_connections: PositiveInt | None = None
    #: botocore's retry mode for S3: "standard" (exponential backoff with jitter on throttling,
    #: 5xx and connection errors) or "adaptive" (standard plus client-side rate limiting when
    #: S3 throttles: for many processes writing one prefix)
    s3_retry_mode: Literal["standard", "adaptive"] = "standard"
    s3_max_attempts: PositiveInt = 5  # S3 calls, first one included, before an error surfaces
    eoc_library: str = "file://./var/eoc"  # folder or s3:// prefix holding <plan_id>.pdf
    #: a file:// object store flushes each object to disk (fsync) and SQLite waits for the
    #: disk at its checkpoints (synchronous=NORMAL); false only for scratch state that is
    #: re-run, not recovered (a simulation's run folder): a crashed process loses nothing,
    #: but an OS crash or power cut may lose or damage its newest writes (the database
    #: too). PostgreSQL and S3 keep their own durability either way.
    durable_writes: bool = True
    public_base_url: str = "http://127.0.0.1:8000"  # where providers' channels reach our API
    media_secret: str = "change-me"  # HMAC key for signed request-letter URLs (see secret_problems)
    carrier_name: str = "goodfaith Health Plan"
    #: the person or role who answers for the good-faith attestation (printed on it)
    attestation_responsible: str = "Director, Appeals and Grievances"
    agencies: dict[str, SerializeAsAny[AgencyTransportSettings]] = Field(default_factory=dict)
    fax: SerializeAsAny[FaxVendorSettings] = Field(default_factory=_default_fax)
    fhir: SerializeAsAny[FhirSettings] = Field(default_factory=FhirSettings)
    #: record-retrieval vendors (providers' designees) by vendor id, as JSON:
    #: ``{"ciox": {"name": "Ciox Health", "api_base": "https://...", "api_key": "...",
    #: "webhook_secret": "..."}}``; a ``vendor`` channel names one of these ids
    retrieval_vendors: dict[str, Any] = Field(default_factory=dict)
    #: TOML file of designees by provider NPI (config/providers.py); unset: none
    provider_directory: str | None = None
    documents: DocumentSettings = Field(default_factory=DocumentSettings)
    rate_limits: RateLimitSettings = Field(default_factory=RateLimitSettings)
    body_limits: BodyLimitSettings = Field(default_factory=BodyLimitSettings)
    log_level: str = "INFO"
    log_format: str = "json"  # or "console"
    scheduler_interval_s: float = 5.0  # seconds between scheduler ticks in real time
    #: rehearsals only (bench/chaos.py): read the virtual time from this file
    #: (worker/sharedclock.py); unset, every process uses the wall clock
    clock_file: str | None = None
    # Fax status checks when no final webhook came (seconds, counted from the transmission):
    # first check, then every ..., give up (fail the attempt) after ... (lifecycle.StatusChecks)
    fax_status_check_after_s: float = Field(default=900.0, gt=0)
    fax_status_check_every_s: float = Field(default=900.0, gt=0)
    fax_status_give_up_s: float = Field(default=14_400.0, gt=0)
    worker_processes: int = 1
    worker_threads: int = 8
    #: seconds after a case's ``assemble_at`` before the watchdog treats it as not assembled
    #: (more than lifecycle.LEASE, so the cutoff timer's own re-fire comes first)
    watchdog_grace_s: float = 1200.0
    #: seconds the watchdog leaves a case alone after acting on it (at least LEASE, 600 s)
    watchdog_interval_s: float = 900.0

    def s3_pool_connections(self) -> int:
        """The S3 client's connection pool: ``s3_max_pool_connections``, else one per worker
        thread and never below botocore's default of 10."""
        return self.s3_max_pool_connections or max(10, self.worker_threads)

    @field_validator("object_store", "eoc_library")
    @classmethod
    def _known_scheme(cls, v: str) -> str:
        if not (v.startswith("file://") or v.startswith("s3://")):
            raise ValueError("must start with file:// or s3:// (e.g. file://./var/objects)")
        return v

    @field_validator("fax", mode="before")
    @classmethod
    def _fax_vendor(cls, v: Any) -> Any:
        from connectors.registry import FAX_VENDORS, resolve_settings

        return resolve_settings(
            FAX_VENDORS, v, key="vendor", default="telnyx", setting="GOODFAITH_FAX__VENDOR"
        )

    @field_validator("fhir", mode="before")
    @classmethod
    def _fhir_vendor(cls, v: Any) -> Any:
        from connectors.registry import FHIR_VENDORS, resolve_settings

        return resolve_settings(
            FHIR_VENDORS, v, key="vendor", default="cdex", setting="GOODFAITH_FHIR__VENDOR"
        )

    @field_validator("retrieval_vendors", mode="before")
    @classmethod
    def _vendor_adapters(cls, v: Any) -> Any:
        from connectors.registry import VENDOR_ADAPTERS, resolve_settings

        if not isinstance(v, dict):
            return v  # pydantic reports the type error
        return {
            vendor_id: resolve_settings(
                VENDOR_ADAPTERS,
                vendor,
                key="adapter",
                default="orders-v1",
                setting=f"GOODFAITH_RETRIEVAL_VENDORS[{vendor_id!r}].adapter",
            )
            for vendor_id, vendor in v.items()
        }

    @field_validator("agencies", mode="before")
    @classmethod
    def _agency_transports(cls, v: Any) -> Any:
        if not isinstance(v, dict):
            return v  # pydantic reports the type error
        return {agency_id: agency_settings(agency_id, agency) for agency_id, agency in v.items()}


def agency_settings(agency_id: str, value: Any) -> Any:
    """One agency's settings (a mapping, as in ``GOODFAITH_AGENCIES``) validated as the model
    of the transport it names (``transport``, default ``https``); ValueError naming the setting
    for an unknown transport. Also used by the simulator to describe its agencies."""
    from connectors.registry import AGENCY_TRANSPORTS, resolve_settings

    return resolve_settings(
        AGENCY_TRANSPORTS,
        value,
        key="transport",
        default="https",
        setting=f"GOODFAITH_AGENCIES[{agency_id!r}].transport",
    )


#: The embedded default of ``GOODFAITH_MEDIA_SECRET``: production processes refuse to run on it.
DEFAULT_MEDIA_SECRET = "change-me"


def secret_problems(settings: Settings) -> list[str]:
    """Why ``settings`` must not run the production processes (``api``, ``worker``,
    ``scheduler``): a default or missing secret, each named by its environment variable.
    Empty when every secret is set. ``demo`` and ``simulate`` set their own."""
    problems: list[str] = []
    if not settings.media_secret or settings.media_secret == DEFAULT_MEDIA_SECRET:
        problems.append(
            "GOODFAITH_MEDIA_SECRET is unset or the default 'change-me': set a long random value "
            "(e.g. `python -c 'import secrets; print(secrets.token_urlsafe(32))'`)"
        )
    problems.extend(settings.fax.secret_problems())
    return problems


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment."""
    return Settings()
