"""Da Vinci CDex (STU 2.x) Task Data Request: ask a provider's FHIR server for records, then poll.

``send`` posts a Task to ``[base]/Task`` where ``base`` is ``request.channel.destination``::

    Task  status=requested  intent=order
          code      cdex-temp#data-request-code
          identifier[0] our request reference (type cdex-temp#tracking-id)
          identifier[1] the attempt's idempotency key
          for.identifier        member id (type v2-0203#MB, system: the payer's member-id namespace)
          owner.identifier      provider NPI (http://hl7.org/fhir/sid/us-npi)
          requester             carrier (identifier system + value, display)
          authoredOn (the injected clock), reasonCode.text = purpose
          reasonReference       the claim under review (type Claim) or else the coverage (type
                                Coverage; its payer id, or the member id when none was given),
                                by business identifier (type v2-0203#FILL: payer-assigned)
          basedOn               #authorization: a contained DocumentReference (LOINC 64292-6,
                                release-of-information consent) whose attachment URL is our
                                token-protected media route (the request letter with the
                                insured's signed authorization attached); only when we hold one
          input  data-code (hrex-temp) = ONE LOINC code; purpose-of-use (cdex-temp) = COVERAGE;
                 signature-flag (cdex-temp) = whether the records must come signed

One document type per Task: the profile allows exactly one code input (``cdex-9``, slice
``input:code`` max 1), and several codings in one CodeableConcept would read as synonyms of one
code. A request for several document types is several requests (``RecordsRequest.loinc_code``).

The POST carries ``If-None-Exist: identifier=<attempt system>|<key>`` (FHIR conditional
create) and an ``Idempotency-Key`` header, so re-sending the same attempt finds the Task already
made.

**external_id is the Task's absolute URL** (``<base>/Task/<id>``, without ``_history``): a poller
needs the server as well as the id, and an absolute URL is a valid FHIR reference. ``poll``
GETs it and maps the HRex status:

    requested                         → outcome SENT
    accepted | in-progress | on-hold  → outcome DELIVERED
    completed                         → DELIVERED + documents from output ``data-value``
    rejected | failed                 → no_records=True (outcome DELIVERED) when statusReason
                                        says "no records"/"no data"; else outcome FAILED

After a crash between "transmission counted" and "vendor answered", ``find_sent`` searches
``GET [base]/Task?identifier=<attempt system>|<key>`` (FHIR token search on ``Task.identifier``;
a ``searchset`` Bundle whose ``entry[].resource`` are Tasks) and adopts the Task found.

When the case is withdrawn or reversed, ``cancel`` sets an unfinished Task to ``cancelled``
(base FHIR TaskStatus; HRex's profile leaves it out, a withdrawal needs it) with a
``statusReason``: ``PUT`` of the Task read, ``If-Match`` on its version.

Documents come from ``Task.output[data-value]``: ``valueAttachment``, or ``valueReference`` to a
contained (``#id``) or resolvable (relative or absolute) DocumentReference, Bundle or Binary;
attachments carry base64 ``data`` or a ``url`` we GET.

With ``notifications`` set, ``send`` then asks the same server to notify us of the Task's changes
(a Subscription: connectors/fhir/subscriptions.py); the receipt's ``notified_until`` says whether
it agreed, and polls of a notified Task are only a safety net (worker/domain/polling.py).

Polling cadence (CDex): :func:`next_poll_delay`. Reading Task parts: connectors/fhir/resources.py.
Settings: ``config.settings.FhirSettings`` (``GOODFAITH_FHIR__VENDOR=cdex``, the default).
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx

from connectors.base import (
    ConnectorError,
    InboundDocument,
    InvalidDestination,
    PollResult,
    RecordsRequest,
    Rejected,
    SendReceipt,
    TransientError,
)
from connectors.fhir.resources import attachments as _attachments
from connectors.fhir.resources import has_code as _has_code
from connectors.fhir.resources import has_identifier as _has_identifier
from connectors.fhir.resources import listed
from connectors.fhir.resources import owner as _owner
from connectors.fhir.resources import says_no_records as _says_no_records
from connectors.fhir.resources import status_reason as _status_reason
from connectors.fhir.subscriptions import TaskNotifications, build_subscription
from connectors.http_errors import call, json_object
from connectors.instants import utc_instant
from connectors.retry import RetryingFactory, transport_retrying
from worker.domain.clock import Clock, SystemClock
from worker.domain.types import AttemptOutcome, ChannelKind

__all__ = [
    "ATTEMPT_SYSTEM",
    "CDEX_TEMP",
    "HREX_TEMP",
    "LOINC",
    "NPI_SYSTEM",
    "REFERENCE_SYSTEM",
    "SLOW_AFTER",
    "SLOW_POLL",
    "CDexIdentity",
    "CDexTaskRequester",
    "build_task",
    "next_poll_delay",
    "split_task_url",
]

CDEX_TEMP = "http://hl7.org/fhir/us/davinci-cdex/CodeSystem/cdex-temp"
HREX_TEMP = "http://hl7.org/fhir/us/davinci-hrex/CodeSystem/hrex-temp"
NPI_SYSTEM = "http://hl7.org/fhir/sid/us-npi"
LOINC = "http://loinc.org"
V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"
ACT_REASON = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
TASK_PROFILE = "http://hl7.org/fhir/us/davinci-cdex/StructureDefinition/cdex-task-data-request"
#: Identifier systems for our request reference and the attempt's idempotency key.
REFERENCE_SYSTEM = "urn:goodfaith:request-reference"
ATTEMPT_SYSTEM = "urn:goodfaith:attempt-key"
FHIR_JSON = "application/fhir+json"
#: LOINC "Release of information consent Document": the insured's authorization for release
RELEASE_CONSENT_LOINC = "64292-6"
AUTHORIZATION_ID = "authorization"  # the contained DocumentReference's id (basedOn "#...")


@dataclass(frozen=True)
class CDexIdentity:
    """Who asks, and the namespaces (``Identifier.system``, absolute URIs) of the identifiers
    a Task carries; from ``config.settings.FhirSettings``. ``signature_required``: the
    ``signature-flag`` input (the provider must sign what it returns)."""

    requester_name: str
    requester_identifier: str
    requester_identifier_system: str = "urn:goodfaith:carrier-id"
    member_id_system: str = "urn:goodfaith:member-id"
    claim_id_system: str = "urn:goodfaith:claim-id"
    coverage_id_system: str = "urn:goodfaith:coverage-id"
    signature_required: bool = False


_SENT = frozenset({"requested", "draft", "received", "ready"})
_DELIVERED = frozenset({"accepted", "in-progress", "on-hold"})
_ENDED = frozenset({"rejected", "failed", "cancelled", "entered-in-error"})
_TASK_URL = re.compile(r"^(?P<base>https?://.+)/Task/(?P<id>[A-Za-z0-9\-.]{1,64})$")
_FHIR_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")  # FHIR's id type


#: After this long open, a Task is polled every :data:`SLOW_POLL` instead of hourly.
SLOW_AFTER = timedelta(hours=8)
#: The interval between polls of a Task open longer than :data:`SLOW_AFTER`.
SLOW_POLL = timedelta(hours=4)


def next_poll_delay(since_sent: timedelta) -> timedelta:
    """How long to wait before the next poll of a Task sent ``since_sent`` ago (CDex cadence).

    First poll 1 minute after sending; then every 5 minutes until 30 minutes have passed; then
    hourly until 8 hours (:data:`SLOW_AFTER`); then every 4 hours (:data:`SLOW_POLL`).
    Elapsed wall time, not business time. HRex asks for polls *no more often* than every 5
    minutes for the first 30 minutes, then hourly; a Task left open for a working day is
    read less often. The pipeline still reads it shortly before anything acts on the answer
    (the next attempt, the packet's assembly: worker/domain/polling.py).
    """
    if since_sent < timedelta(minutes=1):
        return timedelta(minutes=1) - since_sent
    if since_sent < timedelta(minutes=30):
        return timedelta(minutes=5)
    if since_sent < SLOW_AFTER:
        return timedelta(hours=1)
    return SLOW_POLL


def split_task_url(external_id: str) -> tuple[str, str]:
    """``"<base>/Task/<id>"`` → ``(base, id)``; ``Rejected`` when it is not such a URL."""
    match = _TASK_URL.match(external_id.split("/_history/")[0])
    if match is None:
        raise Rejected(
            "CDex poll: external_id must be the Task's absolute URL '<base>/Task/<id>', "
            "as returned by send()"
        )
    return match.group("base"), match.group("id")


def build_task(
    request: RecordsRequest, identity: CDexIdentity, *, authored_on: str
) -> dict[str, Any]:
    """The CDex Task Data Request for ``request`` (pure; ``authored_on`` is ISO-8601)."""
    owner_npi = request.channel.owner_id
    if not owner_npi:
        raise InvalidDestination(
            "CDex Task needs the provider's NPI as channel.owner_id; fix the provider directory"
        )
    member = {
        "type": {"coding": [{"system": V2_0203, "code": "MB"}], "text": "Member Number"},
        "system": identity.member_id_system,
        "value": request.member_id,
    }
    task: dict[str, Any] = {
        "resourceType": "Task",
        "meta": {"profile": [TASK_PROFILE]},
        "identifier": [
            {
                "type": {"coding": [{"system": CDEX_TEMP, "code": "tracking-id"}]},
                "system": REFERENCE_SYSTEM,
                "value": request.reference,
            },
            {"system": ATTEMPT_SYSTEM, "value": request.idempotency_key},
        ],
        "status": "requested",
        "intent": "order",
        "code": {"coding": [{"system": CDEX_TEMP, "code": "data-request-code"}]},
        "for": {"identifier": member},
        "authoredOn": authored_on,
        "requester": {
            "identifier": {
                "system": identity.requester_identifier_system,
                "value": identity.requester_identifier,
            },
            "display": request.requester or identity.requester_name,
        },
        "owner": {"identifier": {"system": NPI_SYSTEM, "value": owner_npi}},
        "reasonCode": {"text": request.purpose},
        "reasonReference": _reason(request, identity, member),
        "input": [
            {
                "type": {"coding": [{"system": HREX_TEMP, "code": "data-code"}]},
                "valueCodeableConcept": {"coding": [{"system": LOINC, "code": request.loinc_code}]},
            },
            {
                "type": {"coding": [{"system": CDEX_TEMP, "code": "purpose-of-use"}]},
                "valueCodeableConcept": {"coding": [{"system": ACT_REASON, "code": "COVERAGE"}]},
            },
            {
                "type": {"coding": [{"system": CDEX_TEMP, "code": "signature-flag"}]},
                "valueBoolean": identity.signature_required,
            },
        ],
    }
    if request.authorization_url:
        task["contained"] = [_authorization(request.authorization_url, member)]
        task["basedOn"] = [
            {
                "reference": f"#{AUTHORIZATION_ID}",
                "type": "DocumentReference",
                "display": "Insured's authorization for release of medical records",
            }
        ]
    return task


def _reason(
    request: RecordsRequest, identity: CDexIdentity, member: dict[str, Any]
) -> dict[str, Any]:
    """``Task.reasonReference``: the claim under review by its payer-assigned identifier, else
    the coverage (its payer id, else the member id that identifies it in US Core)."""
    payer_assigned = {"coding": [{"system": V2_0203, "code": "FILL"}]}
    if request.claim_id:
        return {
            "type": "Claim",
            "identifier": {
                "type": payer_assigned,
                "system": identity.claim_id_system,
                "value": request.claim_id,
            },
        }
    if request.coverage_id:
        return {
            "type": "Coverage",
            "identifier": {
                "type": payer_assigned,
                "system": identity.coverage_id_system,
                "value": request.coverage_id,
            },
        }
    return {"type": "Coverage", "identifier": member}


def _authorization(url: str, member: dict[str, Any]) -> dict[str, Any]:
    """The contained DocumentReference the Task's ``basedOn`` points at: where the provider
    fetches the insured's signed authorization (a PDF; the URL carries its own access token)."""
    return {
        "resourceType": "DocumentReference",
        "id": AUTHORIZATION_ID,
        "status": "current",
        "type": {
            "coding": [
                {
                    "system": LOINC,
                    "code": RELEASE_CONSENT_LOINC,
                    "display": "Release of information consent Document",
                }
            ]
        },
        "subject": {"identifier": member},
        "description": (
            "The insured's signed authorization for release of medical records, attached to "
            "the carrier's request letter"
        ),
        "content": [
            {
                "attachment": {
                    "contentType": "application/pdf",
                    "url": url,
                    "title": "request-letter-with-authorization.pdf",
                }
            }
        ],
    }


class CDexTaskRequester:
    """``PollingRequester`` over Da Vinci CDex Task Data Request.

    ``clock`` (optional; the system clock by default) stamps ``authoredOn``; the container
    passes its own (connectors/registry.py). ``identity`` (optional) names the identifier
    namespaces and the signature flag; without it, ``requester_name`` and
    ``requester_identifier`` with the default namespaces. ``notifications`` (optional): ask
    for a Subscription to each Task made (connectors/fhir/subscriptions.py); None: poll only.
    """

    kind = ChannelKind.FHIR
    vendor = "cdex"

    def __init__(
        self,
        client: httpx.Client,
        *,
        requester_name: str,
        requester_identifier: str,
        retrying: RetryingFactory = transport_retrying,
        clock: Clock | None = None,
        identity: CDexIdentity | None = None,
        notifications: TaskNotifications | None = None,
    ) -> None:
        self._client = client
        self._notifications = notifications
        self._identity = identity or CDexIdentity(requester_name, requester_identifier)
        self._retrying = retrying
        self.clock: Clock = clock if clock is not None else SystemClock()

    def send(self, request: RecordsRequest) -> SendReceipt:
        """POST the Task; ``external_id`` is the Task's absolute URL."""
        if request.channel.kind is not ChannelKind.FHIR:
            raise InvalidDestination(
                f"CDexTaskRequester cannot send over a {request.channel.kind} channel"
            )
        base = request.channel.destination.rstrip("/")
        if urlsplit(base).scheme not in ("http", "https"):
            raise InvalidDestination("CDex: channel.destination must be the FHIR base URL")
        task = build_task(
            request,
            self._identity,
            authored_on=self.clock.now().isoformat().replace("+00:00", "Z"),
        )
        response = call(
            self._client,
            "POST",
            f"{base}/Task",
            what="CDex create Task",
            retrying=self._retrying,
            destination=base,
            json=task,
            headers={
                "Content-Type": FHIR_JSON,
                "Accept": FHIR_JSON,
                "Prefer": "return=representation",
                "Idempotency-Key": request.idempotency_key,
                "If-None-Exist": f"identifier={ATTEMPT_SYSTEM}|{request.idempotency_key}",
            },
        )
        task_id = _task_id(response)
        until, subscription = self._subscribe(base, task_id, request.idempotency_key)
        return SendReceipt(
            external_id=f"{base}/Task/{task_id}", notified_until=until, subscription=subscription
        )

    def _subscribe(self, base: str, task_id: str, key: str) -> tuple[datetime | None, str | None]:
        """Ask ``base`` to notify us of Task ``task_id``'s changes: the instant the
        Subscription ends and its URL (None when the server gave it no id: it ends by
        itself then), or (None, None) when the server did not take it (it may not support
        Subscriptions) or was not asked (an https server, our endpoint not https): the Task is
        made either way, and polls cover it."""
        if self._notifications is None:
            return None, None
        n = self._notifications
        endpoint = n.endpoint(key)
        if urlsplit(base).scheme == "https" and urlsplit(endpoint).scheme != "https":
            # a server we reach over TLS is not asked to send our bearer token in clear (an
            # http:// public URL in production is a misconfiguration): its Task is polled
            return None, None
        end = self.clock.now() + n.lifetime
        body = build_subscription(
            task_id,
            endpoint,
            n.token(key),
            end,
            reason="notify the requester when its records request (Task) changes",
        )
        try:
            response = call(
                self._client,
                "POST",
                f"{base}/Subscription",
                what="CDex create Subscription",
                retrying=self._retrying,
                json=body,
                headers={"Content-Type": FHIR_JSON, "Accept": FHIR_JSON},
            )
            made = json_object(response, what="CDex create Subscription")
        except ConnectorError:
            return None, None
        if made.get("resourceType") != "Subscription" or made.get("status") in ("off", "error"):
            return None, None
        granted = utc_instant(made.get("end"))
        made_id = made.get("id")
        url = f"{base}/Subscription/{made_id}" if _is_fhir_id(made_id) else None
        return (min(end, granted) if granted is not None else end), url

    def end_notifications(self, subscription: str) -> bool:
        """``DELETE`` the Subscription at ``subscription`` (its URL, from :meth:`send`): its
        Task is answered or given up, nothing more is awaited. False when the server no
        longer has it (404, 410)."""
        if urlsplit(subscription).scheme not in ("http", "https"):
            raise InvalidDestination("CDex: a Subscription is named by its URL")
        response = call(
            self._client,
            "DELETE",
            subscription,
            what="CDex delete Subscription",
            retrying=self._retrying,
            answers=frozenset({404, 410}),
            headers={"Accept": FHIR_JSON},
        )
        return response.status_code not in (404, 410)

    def find_sent(self, request: RecordsRequest, since: datetime) -> SendReceipt | None:
        """The Task carrying ``request``'s key as an identifier (``since`` is not needed: the
        key is unique), or None. ``external_id`` is its absolute URL, as from :meth:`send`."""
        base = request.channel.destination.rstrip("/")
        if urlsplit(base).scheme not in ("http", "https"):
            raise InvalidDestination("CDex: channel.destination must be the FHIR base URL")
        response = call(
            self._client,
            "GET",
            f"{base}/Task",
            what="CDex search Task",
            retrying=self._retrying,
            destination=base,
            params={"identifier": f"{ATTEMPT_SYSTEM}|{request.idempotency_key}"},
            headers={"Accept": FHIR_JSON},
        )
        bundle = json_object(response, what="CDex search Task")
        if bundle.get("resourceType") != "Bundle":
            raise Rejected("CDex search Task: the body is not a Bundle")
        for entry in listed(bundle.get("entry")):
            resource = entry.get("resource") if isinstance(entry, dict) else None
            if not isinstance(resource, dict) or resource.get("resourceType") != "Task":
                continue  # e.g. an OperationOutcome entry (search mode "outcome")
            if not _has_identifier(resource, ATTEMPT_SYSTEM, request.idempotency_key):
                continue  # a server that ignored the parameter: match it ourselves
            task_id = resource.get("id")
            if isinstance(task_id, str) and task_id:
                return SendReceipt(external_id=f"{base}/Task/{task_id}")
        return None

    def poll_delay(self, since_sent: timedelta) -> timedelta:
        """The CDex polling cadence (:func:`next_poll_delay`)."""
        return next_poll_delay(since_sent)

    def poll(self, external_id: str) -> PollResult:
        """GET the Task at ``external_id`` (its absolute URL) and map its status."""
        base, _ = split_task_url(external_id)
        url = external_id.split("/_history/")[0]
        response = call(
            self._client,
            "GET",
            url,
            what="CDex read Task",
            retrying=self._retrying,
            headers={"Accept": FHIR_JSON},
        )
        task = json_object(response, what="CDex read Task")
        if task.get("resourceType") != "Task" or not isinstance(task.get("status"), str):
            raise Rejected("CDex read Task: the body is not a Task with a status")
        status: str = task["status"]
        reason = _status_reason(task)
        if status in _SENT:
            return PollResult(status=status, outcome=AttemptOutcome.SENT, reason=reason)
        if status in _DELIVERED:
            return PollResult(status=status, outcome=AttemptOutcome.DELIVERED, reason=reason)
        if status == "completed":
            documents = tuple(self._documents(task, base=base, task_url=url))
            no_records = not documents and reason is not None and _says_no_records(task)
            return PollResult(
                status=status,
                outcome=AttemptOutcome.DELIVERED,
                documents=documents,
                no_records=no_records,
                reason=reason,
            )
        if status in _ENDED:
            if status in ("rejected", "failed") and _says_no_records(task):
                return PollResult(
                    status=status,
                    outcome=AttemptOutcome.DELIVERED,
                    no_records=True,
                    reason=reason or "no records",
                )
            return PollResult(
                status=status,
                outcome=AttemptOutcome.FAILED,
                reason=reason or f"Task {status} without a statusReason",
            )
        raise Rejected(f"CDex read Task: unknown status {status[:40]!r}")

    def cancel(self, external_id: str, reason: str) -> bool:
        """Withdraw the Task at ``external_id``: read it, and unless it has finished
        (completed, rejected, failed, cancelled, entered-in-error) PUT it back with status
        ``cancelled`` and ``statusReason.text`` = ``reason``, conditional on the version read
        (``If-Match``). A Task the server no longer has (404/410) or that has finished: False.
        A version conflict (412: the provider changed it meanwhile) is transient: read again."""
        url = external_id.split("/_history/")[0]
        response = call(
            self._client,
            "GET",
            url,
            what="CDex read Task",
            retrying=self._retrying,
            answers=frozenset({404, 410}),
            headers={"Accept": FHIR_JSON},
        )
        if response.status_code in (404, 410):
            return False
        task = json_object(response, what="CDex read Task")
        if task.get("resourceType") != "Task" or not isinstance(task.get("status"), str):
            raise Rejected("CDex read Task: the body is not a Task with a status")
        if task["status"] == "completed" or task["status"] in _ENDED:
            return False
        task["status"] = "cancelled"
        task["statusReason"] = {"text": reason}
        task["lastModified"] = self.clock.now().isoformat().replace("+00:00", "Z")
        headers = {"Content-Type": FHIR_JSON, "Accept": FHIR_JSON}
        meta = task.get("meta")
        version = meta.get("versionId") if isinstance(meta, dict) else None
        if isinstance(version, str) and version:
            headers["If-Match"] = f'W/"{version}"'
        updated = call(
            self._client,
            "PUT",
            url,
            what="CDex cancel Task",
            retrying=self._retrying,
            answers=frozenset({404, 410, 412}),
            json=task,
            headers=headers,
        )
        if updated.status_code in (404, 410):
            return False
        if updated.status_code == 412:
            raise TransientError("CDex cancel Task: the Task changed meanwhile (412); read again")
        return True

    # --- documents ---------------------------------------------------------------------------

    def _documents(
        self, task: dict[str, Any], *, base: str, task_url: str
    ) -> Iterator[InboundDocument]:
        contained = {
            f"#{r.get('id')}": r
            for r in listed(task.get("contained"))
            if isinstance(r, dict) and r.get("id")
        }
        sender = _owner(task)
        for i, output in enumerate(listed(task.get("output"))):
            if not isinstance(output, dict) or not _has_code(output.get("type"), "data-value"):
                continue
            attachments: list[dict[str, Any]] = []
            if isinstance(output.get("valueAttachment"), dict):
                attachments.append(output["valueAttachment"])
            ref = output.get("valueReference")
            if isinstance(ref, dict) and isinstance(ref.get("reference"), str):
                resource = self._resolve(ref["reference"], contained, base)
                attachments.extend(_attachments(resource))
            for j, attachment in enumerate(attachments):
                data = self._attachment_bytes(attachment, base)
                if data is None:
                    continue
                yield InboundDocument(
                    data=data,
                    content_type=str(attachment.get("contentType") or "application/octet-stream")
                    .split(";")[0]
                    .strip()
                    .lower(),
                    source=ChannelKind.FHIR,
                    external_id=f"{task_url}#output/{i}/{j}",
                    sender=sender,
                )

    def _resolve(self, reference: str, contained: dict[str, Any], base: str) -> Any:
        if reference.startswith("#"):
            return contained.get(reference)
        url = reference if "://" in reference else f"{base}/{reference.lstrip('/')}"
        response = call(
            self._client,
            "GET",
            url,
            what="CDex read Task output",
            retrying=self._retrying,
            headers={"Accept": FHIR_JSON},
        )
        return json_object(response, what="CDex read Task output")

    def _attachment_bytes(self, attachment: dict[str, Any], base: str) -> bytes | None:
        data = attachment.get("data")
        if isinstance(data, str) and data:
            try:
                return base64.b64decode(data, validate=True)
            except (binascii.Error, ValueError) as exc:
                raise Rejected("CDex Task output: attachment.data is not base64") from exc
        url = attachment.get("url")
        if isinstance(url, str) and url:
            full = url if "://" in url else urljoin(base + "/", url.lstrip("/"))
            response = call(
                self._client, "GET", full, what="CDex fetch attachment", retrying=self._retrying
            )
            return response.content
        return None


def _is_fhir_id(value: object) -> bool:
    return isinstance(value, str) and _FHIR_ID.fullmatch(value) is not None


def _task_id(response: httpx.Response) -> str:
    try:
        body = response.json()
    except Exception:
        body = None
    if isinstance(body, dict) and isinstance(body.get("id"), str) and body["id"]:
        return str(body["id"])
    location = response.headers.get("location") or response.headers.get("content-location")
    if location:
        match = re.search(r"Task/([A-Za-z0-9\-.]{1,64})", location)
        if match:
            return match.group(1)
    raise TransientError(
        f"CDex create Task: HTTP {response.status_code} without a Task id or Location; "
        "re-sending with the same key is safe"
    )
