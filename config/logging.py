"""Logging is configured once, here. Every log line passes through :func:`redact_phi`.

Logs are structured (structlog, JSON by default). Queue payloads and log events carry ids,
never protected health information; the redaction processor is the safety net for mistakes.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

#: Keys whose values are PHI wherever they appear in a log event.
PHI_KEYS = frozenset(
    {
        "name",
        "insured_name",
        "member_id",
        "birth_date",
        "dob",
        "insured",
        "address",
        "phone",
        "ssn",
        "patient",
        "dispute",
        "service",
        "codes",
    }
)
REDACTED = "[redacted]"
_DATE_RE = re.compile(r"\b(19|20)\d{2}-\d{2}-\d{2}\b(?![T\d:])")
_SSN_RE = re.compile(r"\b\d{3}-\d{2}-\d{4}\b")


def _scrub(value: Any) -> Any:
    if isinstance(value, str):
        return _SSN_RE.sub(REDACTED, _DATE_RE.sub(REDACTED, value))
    if isinstance(value, dict):
        return {k: (REDACTED if k in PHI_KEYS else _scrub(v)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_scrub(v) for v in value]
    return value


def redact_phi(
    logger: Any, method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: blank PHI keys, and bare dates (birth dates) or SSNs in strings."""
    for key in list(event_dict):
        if key in PHI_KEYS:
            event_dict[key] = REDACTED
        elif key != "timestamp":
            event_dict[key] = _scrub(event_dict[key])
    return event_dict


def configure_logging(level: str = "INFO", fmt: str = "json", stream: Any = None) -> None:
    """Configure structlog and the stdlib root logger once per process."""
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        redact_phi,
        structlog.processors.format_exc_info,
        renderer,
    ]
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(file=stream or sys.stderr),
        cache_logger_on_first_use=False,
    )
    logging.basicConfig(level=level.upper(), stream=stream or sys.stderr, format="%(message)s")
    for noisy in (
        "werkzeug",
        "httpx",
        "httpcore",
        "botocore",
        "boto3",
        "urllib3",
        "uvicorn.access",
        "alembic",
    ):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # pypdf and pikepdf quote raw bytes of a document in their warnings: PHI must not reach logs
    for library in ("pypdf", "pikepdf"):
        logging.getLogger(library).setLevel(logging.ERROR)
