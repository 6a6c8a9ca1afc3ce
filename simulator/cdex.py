"""The far side of Da Vinci CDex: the providers' FHIR server answering a Task-based records
request (``POST /fhir/Task``, ``GET /fhir/Task/{id}``, ``GET /fhir/Task?identifier=system|value``,
``PUT /fhir/Task/{id}`` to cancel it), errors as FHIR ``OperationOutcome``.

One server serves every provider; the Task's ``owner.identifier`` (an NPI) names the provider.
A Task posted at t is ``requested``, ``in-progress`` from t+1min (the request counts as
delivered then), and at +reply_delay either ``completed`` with a contained DocumentReference
(base64 PDF) or ``rejected`` with statusReason "no records". Task states are evaluated lazily
from the clock on every read and before events fire (:meth:`CDexFarSide.advance`).

A provider's ``fhir`` behaviour: ``rejects`` / ``fails`` turn its Tasks ``rejected`` / ``failed``
when it would accept them (not counted, never answered); ``down`` answers 503 to a new Task.

A Task the requester cancels (status ``cancelled``, while unfinished) is never answered: the
provider does not count it, and a reply it had scheduled does not come.

A Task is refused (422, OperationOutcome naming the element) unless it carries exactly one
``data-code`` input with exactly one coding (CDex ``cdex-9``: one document type per Task), and,
when it has ``basedOn``, unless each ``#id`` there names a contained resource. The records the
provider returns are of the document type asked for (the DocumentReference's ``type``). When the
Task's ``basedOn`` names a contained DocumentReference with an attachment ``url`` (the insured's
authorization), the provider fetches it when it takes the Task up (+1 min, an event on the
heap): :meth:`CDexFarSide.authorizations` says what it got.

Create is idempotent on ``If-None-Exist: identifier=system|value`` and on Idempotency-Key.
Logs carry ids only.

Subscriptions (R4 Subscriptions Backport, the HRex Task topic): ``POST /fhir/Subscription``
filtered to one Task (``backport-filter-criteria`` ``Task?_id=<id>``), rest-hook, ``id-only``, is
taken (201, ``active``) while :attr:`CDexFarSide.subscriptions` is True and the Task's
provider's ``fhir_subscriptions`` behaviour allows it (else 404, as a server without them).
The server then POSTs an ``event-notification`` Bundle (an R4 ``Parameters`` status naming the
Task as ``focus``) to the endpoint, with the channel's headers, each time the Task's status
changes (taken up, answered); a notification our side refuses is retried with the heap's
backoff. :attr:`CDexFarSide.notifications` counts those delivered. ``DELETE
/fhir/Subscription/<id>`` ends one (204; 404 when unknown): nothing more is notified, and
:meth:`CDexFarSide.live_subscriptions` no longer lists it.
"""

from __future__ import annotations

import base64
import json
import threading
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

import httpx
import structlog
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from simulator.base import Context, FarSide
from simulator.events import Fired, iso

__all__ = ["CDexFarSide"]

log = structlog.get_logger(__name__)

# Wire constants written out here, not imported from our connector: the far side must not
# share a mistake with the code it checks.
HREX_TEMP = "http://hl7.org/fhir/us/davinci-hrex/CodeSystem/hrex-temp"
REFERENCE_SYSTEM = "urn:goodfaith:request-reference"  # the request reference we put on Tasks
_SIM_SYSTEM = "urn:goodfaith:simulator"
_TASK_ACCEPT_AFTER = timedelta(minutes=1)
_FHIR_JSON = "application/fhir+json"
_TASK_TOPIC = "http://hl7.org/fhir/us/davinci-hrex/SubscriptionTopic/Task"


def _outcome(status: int, code: str, text: str, expression: str | None = None) -> JSONResponse:
    issue: dict[str, Any] = {"severity": "error", "code": code, "details": {"text": text}}
    if expression:
        issue["expression"] = [expression]
    return JSONResponse(
        {"resourceType": "OperationOutcome", "issue": [issue]},
        status_code=status,
        media_type=_FHIR_JSON,
    )


def _resource(raw: bytes, resource_type: str) -> dict[str, Any] | JSONResponse:
    """The JSON body as a ``resource_type`` resource, or the 400 OperationOutcome saying why
    it is not one."""
    try:
        body = json.loads(raw)
    except ValueError:
        return _outcome(400, "structure", "body is not JSON")
    if not isinstance(body, dict) or body.get("resourceType") != resource_type:
        return _outcome(400, "structure", f"resourceType must be {resource_type}")
    return body


def _identifier_value(element: Any) -> Any:
    """``element.identifier.value`` of a Reference-like JSON object, or None."""
    identifier = element.get("identifier", {}) if isinstance(element, dict) else {}
    return identifier.get("value") if isinstance(identifier, dict) else None


@dataclass
class _Task:
    id: str
    resource: dict[str, Any]
    provider_id: str
    reference: str
    member_id: str
    created_at: datetime
    accepted: bool = False
    complete_at: datetime | None = None
    reply: Literal["records", "no_records"] | None = None
    document: bytes | None = None
    version: int = 1
    cancelled: str | None = None  # the requester's statusReason text, once it cancelled
    refused: Literal["rejected", "failed"] | None = None  # the provider's "fhir" behaviour
    data_code: dict[str, Any] | None = None  # the one coding of the data-code input
    authorization_url: str | None = None  # basedOn → contained DocumentReference attachment
    authorization: bytes | None = None  # what the provider fetched from authorization_url
    authorization_status: int | None = None  # HTTP status of that fetch (0: no answer)


@dataclass
class _Subscription:
    id: str
    task_id: str
    endpoint: str
    headers: dict[str, str]
    end: datetime | None
    status: str | None = None  # the Task's status last notified
    events: int = 0  # events-since-subscription-start


@dataclass
class _Notify:
    """The server tells the subscriber that the Task changed (if it did since the last time)."""

    side: CDexFarSide
    subscription: _Subscription
    attempts: int = 0

    def fire(self, due: datetime, now: datetime) -> Fired:
        return self.side.notify(self, now)


@dataclass
class _FetchAuthorization:
    """The provider takes the Task up and fetches the insured's authorization it points at."""

    side: CDexFarSide
    task: _Task

    def fire(self, due: datetime, now: datetime) -> Fired:
        url = self.task.authorization_url
        assert url is not None
        try:
            response = self.side.ctx.http.get(url)
        except httpx.HTTPError as exc:
            log.info(
                "sim.authorization_unreachable", task_id=self.task.id, error=type(exc).__name__
            )
            self.task.authorization_status = 0
            return Fired.DONE
        self.task.authorization_status = response.status_code
        if response.is_success:
            self.task.authorization = response.content
        log.info("sim.authorization_fetched", task_id=self.task.id, status=response.status_code)
        return Fired.DONE


class CDexFarSide(FarSide):
    """The providers' FHIR server (Da Vinci CDex Task)."""

    prefixes = ("/fhir/",)

    def error(self, status: int, title: str) -> Response | None:
        code = {404: "not-found", 405: "not-supported", 422: "invalid"}.get(status, "exception")
        return _outcome(status, code, title)

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        # Re-entrant: rendering a completed Task under the lock generates its document.
        self._lock = threading.RLock()
        self._tasks: dict[str, _Task] = {}
        self._task_keys: dict[str, str] = {}
        self._subscriptions: dict[str, _Subscription] = {}
        #: False: ``POST /fhir/Subscription`` answers 404, as a server without Subscriptions
        self.subscriptions = True
        self.notifications = 0  # notifications our side accepted (2xx)

    def authorizations(self) -> dict[str, tuple[int | None, bytes | None]]:
        """For every Task whose ``basedOn`` pointed at an authorization: its id → (HTTP status
        of the provider's fetch, None before it; the bytes fetched, or None)."""
        with self._lock:
            return {
                t.id: (t.authorization_status, t.authorization)
                for t in self._tasks.values()
                if t.authorization_url is not None
            }

    def tasks(self) -> list[dict[str, Any]]:
        """Every Task as posted (plus its id), in creation order."""
        with self._lock:
            return [dict(t.resource) for t in self._tasks.values()]

    def task_identifiers(self) -> list[tuple[str, ...]]:
        """The identifiers (``system|value``) of every Task created so far, one entry per Task
        (goodfaith's attempt key is one of them: a repeat means a request sent twice)."""
        return [
            tuple(
                f"{i.get('system')}|{i.get('value')}"
                for i in task.resource.get("identifier", [])
                if isinstance(i, dict)
            )
            for task in list(self._tasks.values())
        ]

    def router(self) -> APIRouter:
        router = APIRouter()

        @router.post("/fhir/Task")
        async def create_task(request: Request) -> Response:
            return await self._create_task(request)

        @router.get("/fhir/Task")
        async def search_tasks(request: Request) -> Response:
            return self._search_tasks(request)

        @router.get("/fhir/Task/{task_id}")
        async def read_task(task_id: str) -> Response:
            return self._read_task(task_id)

        @router.post("/fhir/Subscription")
        async def create_subscription(request: Request) -> Response:
            return self._create_subscription(await request.body())

        @router.delete("/fhir/Subscription/{subscription_id}")
        async def delete_subscription(subscription_id: str) -> Response:
            return self._delete_subscription(subscription_id)

        @router.put("/fhir/Task/{task_id}")
        async def update_task(task_id: str, request: Request) -> Response:
            return self._update_task(task_id, request, await request.body())

        return router

    def advance(self, now: datetime) -> None:
        """Accept every Task due by ``now`` (in acceptance order), counting deliveries."""
        providers = self.ctx.providers
        with self._lock:
            due = sorted(
                (t for t in self._tasks.values() if not t.accepted),
                key=lambda t: t.created_at,
            )
            for task in due:
                if task.cancelled is not None:
                    continue  # withdrawn before the provider saw it: never reaches them
                accept_at = task.created_at + _TASK_ACCEPT_AFTER
                if accept_at > now:
                    break
                task.accepted = True
                task.version += 1
                behaviour = providers.behaviour(task.provider_id)
                if behaviour.fhir in ("rejects", "fails"):
                    task.refused = "rejected" if behaviour.fhir == "rejects" else "failed"
                    log.info("sim.task_refused", task_id=task.id, status=task.refused)
                    continue  # never reached the records office: not counted, not answered
                ref = next(
                    (
                        str(i.get("value"))
                        for i in task.resource.get("identifier", [])
                        if "request-reference" in str(i.get("system", ""))
                    ),
                    task.id,
                )
                if providers.count_delivery(task.provider_id, behaviour, ref):
                    task.complete_at = accept_at + timedelta(minutes=behaviour.reply_delay_minutes)
                    task.reply = behaviour.reply
                    log.info("sim.reply_scheduled", channel="fhir", task_id=task.id)

    async def _create_task(self, request: Request) -> Response:
        body = _resource(await request.body(), "Task")
        if isinstance(body, JSONResponse):
            return body
        if body.get("status") != "requested" or body.get("intent") != "order":
            return _outcome(422, "invariant", "status must be requested, intent order", "Task")
        npi = _identifier_value(body.get("owner"))
        if not isinstance(npi, str) or not npi:
            return _outcome(422, "required", "owner.identifier (NPI) is required", "Task.owner")
        member_id = _identifier_value(body.get("for"))
        if not isinstance(member_id, str) or not member_id:
            return _outcome(422, "required", "for.identifier is required", "Task.for")
        data_code, problem = _one_data_code(body)
        if data_code is None:
            return _outcome(422, "invariant", problem, "Task.input")
        authorization_url, problem = _authorization_url(body)
        if problem:
            return _outcome(422, "invalid", problem, "Task.basedOn")
        identifiers = [i for i in body.get("identifier") or [] if isinstance(i, dict)]
        reference = next(
            (str(i.get("value")) for i in identifiers if i.get("system") == REFERENCE_SYSTEM),
            str(identifiers[0].get("value")) if identifiers else "UNREFERENCED",
        )
        lookups = [f"{i.get('system')}|{i.get('value')}" for i in identifiers]
        key = request.headers.get("idempotency-key")
        if_none_exist = request.headers.get("if-none-exist", "")
        now = self.ctx.clock.now()
        with self._lock:
            existing = None
            if if_none_exist.startswith("identifier="):
                existing = self._task_keys.get(if_none_exist[len("identifier=") :])
            if existing is None and key:
                existing = self._task_keys.get(f"idempotency|{key}")
            if existing is not None:
                task = self._tasks[existing]
                return self._task_response(task, now, status=200)
            provider_id, behaviour = self.ctx.providers.lookup(npi)
            if behaviour.fhir == "down":
                return _outcome(503, "transient", "the FHIR server is unavailable")
            task_id = uuid.uuid4().hex
            resource = dict(body)
            resource["id"] = task_id
            task = _Task(
                id=task_id,
                resource=resource,
                provider_id=provider_id,
                reference=reference,
                member_id=member_id,
                created_at=now,
                data_code=data_code,
                authorization_url=authorization_url,
            )
            self._tasks[task_id] = task
            if authorization_url is not None:
                self.ctx.events.push(now + _TASK_ACCEPT_AFTER, _FetchAuthorization(self, task))
            for lookup in lookups:
                self._task_keys[lookup] = task_id
            if key:
                self._task_keys[f"idempotency|{key}"] = task_id
        log.info("sim.task_created", task_id=task_id)
        return self._task_response(task, now, status=201)

    def _create_subscription(self, raw: bytes) -> Response:
        """``POST /fhir/Subscription``: one Task's changes, rest-hook, id-only (see module)."""
        if not self.subscriptions:
            return _outcome(404, "not-supported", "this server does not take Subscriptions")
        body = _resource(raw, "Subscription")
        if isinstance(body, JSONResponse):
            return body
        if body.get("criteria") != _TASK_TOPIC:
            return _outcome(422, "not-supported", "criteria must be the HRex Task topic")
        task_id = _filtered_task(body)
        given = body.get("channel")
        channel: dict[str, Any] = given if isinstance(given, dict) else {}
        endpoint = channel.get("endpoint")
        if channel.get("type") != "rest-hook" or not isinstance(endpoint, str):
            return _outcome(422, "not-supported", "only rest-hook channels", "Subscription.channel")
        if not endpoint.startswith(("http://", "https://")):
            return _outcome(422, "invalid", "endpoint must be http(s)", "Subscription.channel")
        if _payload_content(channel) != "id-only":
            return _outcome(422, "not-supported", "only id-only payloads", "Subscription.channel")
        headers: dict[str, str] = {}
        for line in channel.get("header") or []:
            name, sep, value = str(line).partition(":")
            if sep:
                headers[name.strip()] = value.strip()
        end = _instant(body.get("end"))
        with self._lock:
            task = self._tasks.get(task_id or "")
            if task is None:
                return _outcome(422, "invalid", "the filter must name one existing Task (_id)")
            if not self.ctx.providers.behaviour(task.provider_id).fhir_subscriptions:
                return _outcome(404, "not-supported", "this server does not take Subscriptions")
            subscription = _Subscription(uuid.uuid4().hex, task.id, endpoint, headers, end)
            self._subscriptions[subscription.id] = subscription
            first = task.created_at + _TASK_ACCEPT_AFTER
        self.ctx.events.push(first, _Notify(self, subscription))
        made = dict(body, id=subscription.id, status="active")
        log.info("sim.subscription_created", task_id=task.id, subscription_id=subscription.id)
        return JSONResponse(made, status_code=201, media_type=_FHIR_JSON)

    def _delete_subscription(self, subscription_id: str) -> Response:
        """``DELETE /fhir/Subscription/<id>``: 204, nothing more is notified; 404 when unknown
        (or deleted before)."""
        with self._lock:
            sub = self._subscriptions.pop(subscription_id, None)
        if sub is None:
            return _outcome(404, "not-found", "no such Subscription")
        log.info("sim.subscription_deleted", task_id=sub.task_id, subscription_id=sub.id)
        return Response(status_code=204)

    def live_subscriptions(self) -> dict[str, str]:
        """Every Subscription not deleted (nor past its end): its id → its Task's status."""
        now = self.ctx.clock.now()
        with self._lock:
            return {
                sub.id: str(self._render_task(self._tasks[sub.task_id], now)["status"])
                for sub in self._subscriptions.values()
                if sub.end is None or now < sub.end
            }

    def notify(self, item: _Notify, now: datetime) -> Fired:
        """Tell the subscriber the Task changed, if its status did since the last notification;
        then wait for its next change (a scheduled answer). Nothing once it is deleted."""
        sub = item.subscription
        if sub.end is not None and now >= sub.end:
            return Fired.DONE
        with self._lock:
            if self._subscriptions.get(sub.id) is not sub:
                return Fired.DONE
        self.advance(now)
        with self._lock:
            task = self._tasks[sub.task_id]
            status = self._render_task(task, now)["status"]
            next_change = task.complete_at if task.complete_at and task.complete_at > now else None
            changed = status != sub.status
        if changed:
            number = sub.events + 1  # counted once the subscriber has it
            bundle = self._notification(sub, task, number, now)
            headers = {**sub.headers, "content-type": _FHIR_JSON}
            try:
                response = self.ctx.http.post(sub.endpoint, content=bundle, headers=headers)
            except httpx.HTTPError as exc:
                log.info("sim.notification_failed", task_id=task.id, error=type(exc).__name__)
                response = None
            if response is None or not response.is_success:
                item.attempts += 1
                return Fired.RETRY
            with self._lock:
                sub.status, sub.events = status, number
                self.notifications += 1
        if next_change is not None:
            self.ctx.events.push(next_change, _Notify(self, sub))
        return Fired.DELIVERED if changed else Fired.DONE

    def _notification(self, sub: _Subscription, task: _Task, number: int, now: datetime) -> bytes:
        """The id-only ``event-notification`` Bundle of event ``number`` (R4 backport: a
        Parameters status)."""
        base = self.ctx.public_base_url
        status = {
            "resourceType": "Parameters",
            "parameter": [
                {
                    "name": "subscription",
                    "valueReference": {"reference": f"{base}/fhir/Subscription/{sub.id}"},
                },
                {"name": "topic", "valueCanonical": _TASK_TOPIC},
                {"name": "status", "valueCode": "active"},
                {"name": "type", "valueCode": "event-notification"},
                {"name": "events-since-subscription-start", "valueString": str(number)},
                {
                    "name": "notification-event",
                    "part": [
                        {"name": "event-number", "valueString": str(number)},
                        {"name": "timestamp", "valueInstant": iso(now)},
                        {
                            "name": "focus",
                            "valueReference": {"reference": f"{base}/fhir/Task/{task.id}"},
                        },
                    ],
                },
            ],
        }
        bundle = {
            "resourceType": "Bundle",
            "type": "history",
            "timestamp": iso(now),
            "entry": [
                {
                    "fullUrl": f"urn:uuid:{uuid.uuid4()}",
                    "resource": status,
                    "request": {
                        "method": "GET",
                        "url": f"{base}/fhir/Subscription/{sub.id}/$status",
                    },
                    "response": {"status": "200"},
                }
            ],
        }
        return json.dumps(bundle, separators=(",", ":")).encode()

    def _task_response(self, task: _Task, now: datetime, *, status: int) -> Response:
        location = f"{self.ctx.public_base_url}/fhir/Task/{task.id}/_history/{task.version}"
        return JSONResponse(
            self._render_task(task, now),
            status_code=status,
            headers={"Location": location},
            media_type=_FHIR_JSON,
        )

    def _render_task(self, task: _Task, now: datetime) -> dict[str, Any]:
        resource = dict(task.resource)
        resource["meta"] = {**resource.get("meta", {}), "versionId": str(task.version)}
        resource["lastModified"] = iso(now)
        if task.cancelled is not None:
            resource["status"] = "cancelled"
            resource["statusReason"] = {"text": task.cancelled}
        elif not task.accepted:
            resource["status"] = "requested"
        elif task.refused is not None:
            resource["status"] = task.refused
            resource["statusReason"] = {
                "text": "request not accepted"
                if task.refused == "rejected"
                else "processing error at the provider"
            }
        elif task.complete_at is None or now < task.complete_at:
            resource["status"] = "in-progress"
        elif task.reply == "no_records":
            resource["status"] = "rejected"
            resource["statusReason"] = {
                "coding": [{"system": _SIM_SYSTEM, "code": "no-data"}],
                "text": "no records",
            }
        else:
            if task.document is None:
                behaviour = self.ctx.providers.behaviour(task.provider_id)
                task.document = self.ctx.providers.reply_document(
                    task.provider_id, behaviour, task.reference, task.member_id
                )
            resource["status"] = "completed"
            resource["contained"] = [
                *(r for r in resource.get("contained") or [] if isinstance(r, dict)),
                _document_reference(task.document, task.data_code),
            ]
            resource["output"] = [
                {
                    "type": {"coding": [{"system": HREX_TEMP, "code": "data-value"}]},
                    "valueReference": {"reference": "#records"},
                }
            ]
        return resource

    def _search_tasks(self, request: Request) -> Response:
        """``GET /fhir/Task?identifier=system|value``: a searchset Bundle (only that parameter)."""
        token = request.query_params.get("identifier")
        if not token or "|" not in token:
            return _outcome(400, "not-supported", "search needs identifier=system|value")
        now = self.ctx.clock.now()
        self.advance(now)
        with self._lock:
            task_id = self._task_keys.get(token)
            tasks = [self._tasks[task_id]] if task_id else []
            entries = [
                {
                    "fullUrl": f"{self.ctx.public_base_url}/fhir/Task/{t.id}",
                    "resource": self._render_task(t, now),
                    "search": {"mode": "match"},
                }
                for t in tasks
            ]
        bundle = {"resourceType": "Bundle", "type": "searchset", "total": len(entries)}
        bundle["entry"] = entries
        return JSONResponse(bundle, media_type=_FHIR_JSON)

    def _update_task(self, task_id: str, request: Request, raw: bytes) -> Response:
        """``PUT /fhir/Task/{id}``: the requester may only cancel its Task (status
        ``cancelled``), and only while it is unfinished; ``If-Match`` must name the current
        version when given (412 otherwise)."""
        body = _resource(raw, "Task")
        if isinstance(body, JSONResponse):
            return body
        if body.get("id") != task_id:
            return _outcome(400, "invalid", "Task.id must match the URL", "Task.id")
        if body.get("status") != "cancelled":
            return _outcome(422, "business-rule", "the requester may only cancel", "Task.status")
        now = self.ctx.clock.now()
        self.advance(now)
        with self._lock:
            task = self._tasks.get(task_id)
            if task is None:
                return _outcome(404, "not-found", "no such Task")
            if_match = request.headers.get("if-match")
            if if_match and if_match.strip() not in (f'W/"{task.version}"', f'"{task.version}"'):
                return _outcome(412, "conflict", "the Task has changed: read it again")
            current = self._render_task(task, now)["status"]
            if current in ("completed", "rejected", "failed", "cancelled"):
                return _outcome(409, "business-rule", f"the Task is already {current}")
            reason = body.get("statusReason")
            text = reason.get("text") if isinstance(reason, dict) else None
            task.cancelled = str(text or "cancelled by the requester")[:200]
            task.version += 1
            rendered = self._render_task(task, now)
        log.info("sim.task_cancelled", task_id=task_id)
        return JSONResponse(rendered, media_type=_FHIR_JSON)

    def _read_task(self, task_id: str) -> Response:
        now = self.ctx.clock.now()
        self.advance(now)
        with self._lock:
            task = self._tasks.get(task_id)
            if task is None:
                return _outcome(404, "not-found", "no such Task")
            rendered = self._render_task(task, now)
        return JSONResponse(rendered, media_type=_FHIR_JSON)


def _extension(element: Any, name: str) -> dict[str, Any]:
    """The backport extension ``name`` of ``element`` (``{}`` when it has none)."""
    extensions = element.get("extension") if isinstance(element, dict) else None
    for ext in extensions if isinstance(extensions, list) else []:
        if isinstance(ext, dict) and str(ext.get("url", "")).endswith(f"/{name}"):
            return ext
    return {}


def _filtered_task(subscription: dict[str, Any]) -> str | None:
    """The Task id of a ``backport-filter-criteria`` ``Task?_id=<id>``, or None."""
    value = str(
        _extension(subscription.get("_criteria"), "backport-filter-criteria").get("valueString")
    )
    return value.removeprefix("Task?_id=") if value.startswith("Task?_id=") else None


def _payload_content(channel: dict[str, Any]) -> str | None:
    code = _extension(channel.get("_payload"), "backport-payload-content").get("valueCode")
    return str(code) if code is not None else None


def _instant(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def _document_reference(document: bytes, data_code: dict[str, Any] | None) -> dict[str, Any]:
    """The contained DocumentReference carrying the records PDF, of the document type asked for
    (LOINC 11506-3, progress note, when the Task named none)."""
    coding = data_code or {"system": "http://loinc.org", "code": "11506-3"}
    return {
        "resourceType": "DocumentReference",
        "id": "records",
        "status": "current",
        "type": {"coding": [coding]},
        "content": [
            {
                "attachment": {
                    "contentType": "application/pdf",
                    "data": base64.b64encode(document).decode("ascii"),
                    "title": "records.pdf",
                }
            }
        ],
    }


def _codes(concept: Any) -> list[Any]:
    coding = concept.get("coding") if isinstance(concept, dict) else None
    return [c.get("code") for c in coding or [] if isinstance(c, dict)]


def _one_data_code(task: dict[str, Any]) -> tuple[dict[str, Any] | None, str]:
    """The one coding of the Task's one ``data-code`` input, or (None, why not)."""
    inputs = [
        i
        for i in task.get("input") or []
        if isinstance(i, dict) and "data-code" in _codes(i.get("type"))
    ]
    if len(inputs) != 1:
        return None, "exactly one data-code input is required (cdex-9: one document type)"
    concept = inputs[0].get("valueCodeableConcept")
    codings = concept.get("coding") if isinstance(concept, dict) else None
    if not isinstance(codings, list) or len(codings) != 1 or not isinstance(codings[0], dict):
        return None, "the data-code input names one document type: exactly one coding"
    return {k: v for k, v in codings[0].items() if k in ("system", "code", "display")}, ""


def _authorization_url(task: dict[str, Any]) -> tuple[str | None, str]:
    """The attachment URL of the contained DocumentReference ``basedOn`` points at (None when
    there is none), or an error when a ``#id`` in basedOn names nothing contained."""
    contained = {
        r.get("id"): r for r in task.get("contained") or [] if isinstance(r, dict) and r.get("id")
    }
    url: str | None = None
    for ref in task.get("basedOn") or []:
        target = ref.get("reference") if isinstance(ref, dict) else None
        if not isinstance(target, str) or not target.startswith("#"):
            continue  # a reference to a server we do not fetch from
        resource = contained.get(target[1:])
        if resource is None:
            return None, f"basedOn {target[:40]!r} names no contained resource"
        for content in resource.get("content") or []:
            attachment = content.get("attachment") if isinstance(content, dict) else None
            found = attachment.get("url") if isinstance(attachment, dict) else None
            if isinstance(found, str) and found.startswith(("http://", "https://")):
                url = url or found
    return url, ""
