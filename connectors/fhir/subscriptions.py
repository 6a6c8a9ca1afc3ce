"""Task notifications: the provider's FHIR server tells us when a CDex Task changes.

FHIR R4 Subscriptions Backport (``hl7.fhir.uv.subscriptions-backport``) on the HRex Task topic,
as Da Vinci CDex's task-based approach describes it. After creating a Task, the requester asks
the same server for a Subscription::

    POST [base]/Subscription
    Subscription  status=requested  end=<now + lifetime>
                  criteria   http://hl7.org/fhir/us/davinci-hrex/SubscriptionTopic/Task
                  _criteria  backport-filter-criteria = "Task?_id=<task id>"  (this Task only)
                  channel    type=rest-hook  endpoint=<our URL for this attempt>
                             payload=application/fhir+json (backport-payload-content: id-only)
                             header ["Authorization: Bearer <token>"]

The endpoint names the attempt (its idempotency key) and the token is an HMAC of it
(``Container.task_notify_token``): our side verifies a notification without storing anything,
and a token opens no other attempt's endpoint. ``id-only`` keeps PHI out of notifications:
they name the Task; we read it (the poll) to learn what changed.

A notification is a ``history`` Bundle whose first entry is the subscription's status: an R4
``Parameters`` (backport) or an R4B/R5 ``SubscriptionStatus``. :func:`parse_notification` reads
its ``type`` (``handshake``, ``heartbeat``, ``event-notification``, ``query-status``,
``query-event``) and the ``focus`` of each event (the Task's URL).

A server that refuses the Subscription (no Subscription support, a 4xx, a time-out) costs
nothing: the Task was made, the attempt is sent, and we poll it at the CDex cadence. A server
reached over ``https`` is asked only when our endpoint is ``https`` too (the bearer token never
travels in clear).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from connectors.base import WebhookError
from connectors.fhir.resources import listed

__all__ = [
    "BACKPORT",
    "HREX_TASK_TOPIC",
    "SUBSCRIPTION_LIFETIME",
    "TaskNotification",
    "TaskNotifications",
    "build_subscription",
    "parse_notification",
    "same_task",
]

HREX_TASK_TOPIC = "http://hl7.org/fhir/us/davinci-hrex/SubscriptionTopic/Task"
BACKPORT = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition"
#: How long a Subscription is asked for: longer than any request stays open (a review's is
#: days; a campaign's weeks). The server may end it sooner; polls then carry on alone.
SUBSCRIPTION_LIFETIME = timedelta(days=45)
#: Notification types that report a change (the others are a handshake, a heartbeat...).
_EVENT_TYPES = frozenset({"event-notification", "query-event"})
_TYPES = _EVENT_TYPES | {"handshake", "heartbeat", "query-status"}


@dataclass(frozen=True)
class TaskNotifications:
    """Where a provider's server notifies us of a Task's changes: ``endpoint(key)`` is our
    rest-hook URL for the attempt whose idempotency key is ``key``, ``token(key)`` the bearer
    token the server must send with each notification; ``lifetime`` how long to ask for."""

    endpoint: Callable[[str], str]
    token: Callable[[str], str]
    lifetime: timedelta = SUBSCRIPTION_LIFETIME


@dataclass(frozen=True)
class TaskNotification:
    """One notification as received: its ``kind`` (the SubscriptionStatus type) and the
    references of the resources its events are about (``focus``: Task URLs, absolute or
    relative, as the server wrote them; none for a handshake or a heartbeat)."""

    kind: str
    focus: tuple[str, ...] = ()

    @property
    def is_event(self) -> bool:
        """True when something changed (an event); False for a handshake, a heartbeat or a
        status query's answer."""
        return self.kind in _EVENT_TYPES


def build_subscription(
    task_id: str, endpoint: str, token: str, end: datetime, *, reason: str
) -> dict[str, Any]:
    """The backport Subscription to the HRex Task topic, filtered to Task ``task_id``; no PHI
    (the endpoint and token name only the attempt)."""
    return {
        "resourceType": "Subscription",
        "meta": {"profile": [f"{BACKPORT}/backport-subscription"]},
        "status": "requested",
        "end": end.isoformat().replace("+00:00", "Z"),
        "reason": reason,
        "criteria": HREX_TASK_TOPIC,
        "_criteria": {
            "extension": [
                {
                    "url": f"{BACKPORT}/backport-filter-criteria",
                    "valueString": f"Task?_id={task_id}",
                }
            ]
        },
        "channel": {
            "type": "rest-hook",
            "endpoint": endpoint,
            "payload": "application/fhir+json",
            "_payload": {
                "extension": [
                    {"url": f"{BACKPORT}/backport-payload-content", "valueCode": "id-only"}
                ]
            },
            "header": [f"Authorization: Bearer {token}"],
        },
    }


def parse_notification(body: bytes) -> TaskNotification:
    """Read a rest-hook notification Bundle; ``WebhookError`` when it is not one."""
    try:
        bundle = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise WebhookError("Task notification: the body is not JSON") from None
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        raise WebhookError("Task notification: the body is not a Bundle")
    given = bundle.get("entry")
    entries: list[Any] = given if isinstance(given, list) else []
    first = entries[0] if entries else None
    status = first.get("resource") if isinstance(first, dict) else None
    if not isinstance(status, dict):
        raise WebhookError("Task notification: no subscription status in the first entry")
    if status.get("resourceType") == "Parameters":
        kind, focus = _from_parameters(status)
    elif status.get("resourceType") == "SubscriptionStatus":
        kind, focus = _from_status(status)
    else:
        raise WebhookError("Task notification: the first entry is not a subscription status")
    if kind not in _TYPES:
        raise WebhookError("Task notification: unknown notification type")
    if not focus:  # a server sending full resources may name them only in the entries
        focus = tuple(
            str(entry["fullUrl"])
            for entry in entries[1:]
            if isinstance(entry, dict) and isinstance(entry.get("fullUrl"), str)
        )
    return TaskNotification(kind, focus)


def _from_parameters(status: dict[str, Any]) -> tuple[str | None, tuple[str, ...]]:
    """R4 backport: ``Parameters`` with ``type`` and ``notification-event`` parts."""
    kind: str | None = None
    focus: list[str] = []
    for parameter in _listed(status.get("parameter")):
        name = parameter.get("name")
        if name == "type":
            kind = parameter.get("valueCode")
        elif name == "notification-event":
            for part in _listed(parameter.get("part")):
                if part.get("name") == "focus":
                    focus += _reference(part.get("valueReference"))
    return kind, tuple(focus)


def _from_status(status: dict[str, Any]) -> tuple[str | None, tuple[str, ...]]:
    """R4B/R5: ``SubscriptionStatus`` with ``type`` and ``notificationEvent[].focus``."""
    focus: list[str] = []
    for event in _listed(status.get("notificationEvent")):
        focus += _reference(event.get("focus"))
    kind = status.get("type")
    return (kind if isinstance(kind, str) else None), tuple(focus)


def same_task(reference: str, task_url: str) -> bool:
    """True when ``reference`` (absolute or relative, with or without ``_history``) names the
    Task at ``task_url`` (absolute, as ``send`` returned it)."""
    wanted = task_url.split("/_history/")[0].rstrip("/")
    named = reference.split("/_history/")[0].rstrip("/")
    if "://" in named:
        return named == wanted
    return wanted.endswith("/" + named) if named.startswith("Task/") else False


def _listed(value: Any) -> list[dict[str, Any]]:
    """The objects of a FHIR array (anything else in it is skipped)."""
    return [item for item in listed(value) if isinstance(item, dict)]


def _reference(value: Any) -> list[str]:
    if isinstance(value, dict) and isinstance(value.get("reference"), str):
        return [value["reference"]]
    return []
