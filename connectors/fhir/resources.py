"""Pure readers of FHIR R4 resources (Task, DocumentReference, Binary, Bundle), shared by FHIR
adapters. No I/O: callers fetch, these read what was fetched."""

from __future__ import annotations

import re
from typing import Any

__all__ = ["attachments", "has_code", "listed", "owner", "says_no_records", "status_reason"]

_NO_RECORDS = re.compile(r"no[\s_-]*(?:medical\s+)?(?:records?|data|matching)", re.IGNORECASE)


def listed(value: Any) -> list[Any]:
    """A FHIR array member as a list: what another server sends may be of any JSON type, and
    anything but an array is read as no entries."""
    return value if isinstance(value, list) else []


def has_code(concept: Any, code: str) -> bool:
    if not isinstance(concept, dict):
        return False
    return (
        any(isinstance(c, dict) and c.get("code") == code for c in listed(concept.get("coding")))
        or concept.get("text") == code
    )


def attachments(resource: Any) -> list[dict[str, Any]]:
    """Attachments of a DocumentReference, Binary, or every such entry of a Bundle."""
    if not isinstance(resource, dict):
        return []
    kind = resource.get("resourceType")
    if kind == "DocumentReference":
        return [
            c["attachment"]
            for c in listed(resource.get("content"))
            if isinstance(c, dict) and isinstance(c.get("attachment"), dict)
        ]
    if kind == "Binary":
        return [{"contentType": resource.get("contentType"), "data": resource.get("data")}]
    if kind == "Bundle":
        found: list[dict[str, Any]] = []
        for entry in listed(resource.get("entry")):
            if isinstance(entry, dict):
                found.extend(attachments(entry.get("resource")))
        return found
    return []


def status_reason(task: dict[str, Any]) -> str | None:
    reason = task.get("statusReason")
    if not isinstance(reason, dict):
        return None
    if isinstance(reason.get("text"), str) and reason["text"]:
        return str(reason["text"])[:200]
    for coding in listed(reason.get("coding")):
        if isinstance(coding, dict):
            label = coding.get("display") or coding.get("code")
            if isinstance(label, str) and label:
                return label[:200]
    return None


def says_no_records(task: dict[str, Any]) -> bool:
    reason = task.get("statusReason")
    if not isinstance(reason, dict):
        return False
    texts = [reason.get("text")]
    for coding in listed(reason.get("coding")):
        if isinstance(coding, dict):
            texts += [coding.get("code"), coding.get("display")]
    return any(isinstance(t, str) and _NO_RECORDS.search(t) for t in texts)


def owner(task: dict[str, Any]) -> str | None:
    owner = task.get("owner")
    if isinstance(owner, dict):
        ident = owner.get("identifier")
        if isinstance(ident, dict) and isinstance(ident.get("value"), str):
            return str(ident["value"])
    return None


def has_identifier(resource: dict[str, Any], system: str, value: str) -> bool:
    """``resource.identifier`` holds ``system|value``."""
    return any(
        isinstance(i, dict) and i.get("system") == system and i.get("value") == value
        for i in listed(resource.get("identifier"))
    )
