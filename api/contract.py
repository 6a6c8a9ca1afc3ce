"""The API's published contract: request bodies, response bodies and errors, as the OpenAPI
document declares them (served at ``/openapi.json``, committed as ``docs/openapi.json``).

- Request bodies are pydantic models, and the same models validate what arrives: the
  notification is :class:`worker.notification.Notification` (intake's own validator); the
  small ``{...}`` bodies of cancel, assign, review and keys are declared here.
- Every error is an RFC 9457 problem (``application/problem+json``, :data:`PROBLEM_SCHEMA`),
  declared per route with the statuses the route answers (:func:`errors`).
- Who may call: each protected operation carries ``security: [{"apiKey": ["<role>"]}]``
  (OpenAPI 3.1 lets a non-OAuth scheme list role names), read from the route's own key check
  (api/security.py), so the document cannot say one role while the code asks another.

``goodfaith openapi`` writes the document (:func:`render`); tests/unit/test_openapi.py fails
when the served document and the committed file differ.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field, field_validator

from worker.notification import Notification
from worker.services.keys import Role

__all__ = [
    "NOTIFICATION_EXAMPLE",
    "PROBLEM_SCHEMA",
    "AssignBody",
    "CancelBody",
    "KeyBody",
    "ReviewBody",
    "binary",
    "body",
    "build",
    "errors",
    "install",
    "render",
]

COMPONENTS = "#/components/schemas/"
SECURITY_SCHEME = "apiKey"

#: RFC 9457 problem details, as api/problems.py writes them.
PROBLEM_SCHEMA: dict[str, Any] = {
    "title": "Problem",
    "description": (
        "RFC 9457 problem details. `type` is `about:blank` (the status says it all) or a "
        "`/problems/<name>` reference; `errors` names each invalid field (never its value)."
    ),
    "type": "object",
    "required": ["type", "title", "status"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer", "minimum": 400, "maximum": 599},
        "detail": {"type": "string"},
        "instance": {"type": "string", "description": "the request path"},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["field", "message"],
                "properties": {"field": {"type": "string"}, "message": {"type": "string"}},
            },
        },
    },
    "additionalProperties": True,
}

#: What each error status means on this API (the route's own detail says more).
_ERROR_MEANING = {
    401: "no key, or an unknown or revoked one (`WWW-Authenticate: Bearer`); a webhook whose "
    "signature or credentials do not verify",
    403: "a key whose role does not open this endpoint",
    404: "no such resource",
    409: "the resource is not in a state that allows this",
    413: "the body is larger than GOODFAITH_BODY_LIMITS__MAX_BYTES (webhooks: __WEBHOOK_MAX_BYTES)",
    422: "the request is invalid: `errors` names each field; or the body is not JSON, or nests "
    "deeper than GOODFAITH_BODY_LIMITS__MAX_JSON_DEPTH",
    429: "over a rate limit: retry after `Retry-After` seconds",
}


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` entries for ``statuses``, each a problem document."""
    out: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        entry: dict[str, Any] = {
            "description": _ERROR_MEANING[status],
            "content": {"application/problem+json": {"schema": {"$ref": COMPONENTS + "Problem"}}},
        }
        if status == 429:
            entry["headers"] = {
                "Retry-After": {"description": "seconds", "schema": {"type": "string"}}
            }
        if status == 401:
            entry["headers"] = {"WWW-Authenticate": {"schema": {"type": "string"}}}
        out[status] = entry
    return out


def body(
    model: type[BaseModel],
    *,
    required: bool = True,
    description: str = "",
    example: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """``openapi_extra=`` declaring a JSON request body of ``model`` (routes that read the raw
    body themselves, so FastAPI cannot see it), with an ``example`` when given."""
    media: dict[str, Any] = {"schema": {"$ref": COMPONENTS + model.__name__}}
    if example is not None:
        media["example"] = example
    declared: dict[str, Any] = {"required": required, "content": {"application/json": media}}
    if description:
        declared["description"] = description
    return {"requestBody": declared}


def binary(*media_types: str, description: str) -> dict[int | str, dict[str, Any]]:
    """A 200 response of ``media_types`` (bytes: PDFs)."""
    return {
        200: {
            "description": description,
            "content": {m: {"schema": {"type": "string", "format": "binary"}} for m in media_types},
        }
    }


# --- request bodies ---------------------------------------------------------------------------


def callback_body(description: str, *media_types: str) -> dict[str, Any]:
    """``openapi_extra=`` for a callback route whose body the handler reads itself (its
    signature covers the raw bytes): required, any object of ``media_types``."""
    return {
        "requestBody": {
            "required": True,
            "description": description,
            "content": {m: {"schema": {"type": "object"}} for m in media_types},
        }
    }


#: The notification the README shows (examples/notification.json; a test keeps them equal).
NOTIFICATION_EXAMPLE: dict[str, Any] = {
    "notification_id": "OPP-2026-000123",
    "received_at": "2026-04-17T09:00:00-04:00",
    "jurisdiction": "MA",
    "review_type": "standard",
    "agency_id": "agency-a",
    "insured": {"member_id": "M1001", "name": "Jane Roe", "birth_date": "1971-02-03"},
    "coverage": {"plan_id": "PPO-2026"},
    "authorization_uri": "file://./var/authorizations/M1001.pdf",
    "dispute": {
        "service": "Lumbar spine MRI",
        "codes": ["72148"],
        "dates_of_service": ["2026-03-02"],
    },
    "providers": [
        {
            "provider_id": "prov-1",
            "name": "Example Orthopedics",
            "npi": "1234567893",
            "role": "treating",
            "network": "in",
            "channels": [{"kind": "fax", "number": "+16175550101"}],
            "designee": {
                "vendor_id": "vendor-9",
                "name": "Records Retrieval Co.",
                "channels": [{"kind": "fax", "number": "+16175550199"}],
            },
        },
        {
            "provider_id": "prov-2",
            "name": "Harbor Imaging",
            "npi": "9876543213",
            "role": "consulting",
            "network": "out",
            "channels": [{"kind": "fhir", "base_url": "https://fhir.harbor-imaging.example/r4"}],
        },
    ],
}


class _Body(BaseModel):
    """Small request bodies: unknown members are ignored (clients may send more)."""

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    @field_validator("*", mode="after")
    @classmethod
    def _no_nul(cls, value: Any) -> Any:
        """PostgreSQL text cannot hold NUL: refused here, naming the field."""
        if isinstance(value, str) and "\x00" in value:
            raise ValueError("must not contain NUL (\\u0000) characters")
        return value


class CancelBody(_Body):
    """``POST /v1/cases/{id}/cancel`` (optional body): why the review ended."""

    reason: str = Field(
        default="withdrawn",
        min_length=1,
        description="why (withdrawn, insurer reversed, ...); kept to its first 200 characters",
    )


class CampaignLoad(BaseModel):
    """``POST /v1/campaigns``: a campaign's head (``name``, ``jurisdiction``, ``policy``) and
    its rows, either as ``requests`` (a list of row objects with the CSV's columns, README:
    Campaigns) or as ``csv`` (the CSV file's text). Validated whole by ``worker/campaign.py``:
    a 422 names every bad value by row and column, and nothing is stored."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=128)
    jurisdiction: str = Field(default="MA", min_length=1, max_length=16)
    policy: dict[str, Any] | None = Field(
        default=None,
        description="attempts (1-10, default 3), spacing_fraction (0.05-0.9, default 0.25), "
        "first_channel (listed | profile)",
    )
    requests: list[dict[str, Any]] | None = None
    csv: str | None = None


class CampaignLoaded(BaseModel):
    campaign_id: str
    requests: int
    #: false: the same load was made before; this is the campaign it made
    created: bool
    status: str  # open | cancelled


class CampaignCancelled(BaseModel):
    campaign_id: str
    status: str
    cases_cancelled: int


class AssignBody(_Body):
    """``POST /v1/inbox/{id}/assign``: the request the document belongs to, and who says so."""

    request: str = Field(min_length=1, description="a request id or its GF- reference")
    by: str = Field(min_length=1, description="who assigns it (a name or id; audited)")


class ReviewBody(_Body):
    """``POST /v1/review/{id}/release|reject``: who decides, and why."""

    reviewer: str = Field(min_length=1, description="who decides (a name or id; audited)")
    note: str = ""


class KeyBody(_Body):
    """``POST /v1/keys``: the new key's role and a name to know it by."""

    role: Role
    name: str = Field(default="", description="kept to its first 128 characters")


# --- response bodies --------------------------------------------------------------------------


class _Open(BaseModel):
    """A response whose members below the top level are described in the README."""

    model_config = ConfigDict(extra="allow")


class Health(BaseModel):
    status: str


class IntakeAccepted(BaseModel):
    case_id: str
    created: bool = Field(description="false: the notification id was already taken in")
    warnings: list[str] | None = Field(
        default=None, description="the case is taken in, and flagged for ops"
    )


class WebhookAccepted(BaseModel):
    status: str


class CaseCancelled(BaseModel):
    case_id: str
    status: str


class Outcome(BaseModel):
    """An action on one resource and where it stands now."""

    id: str
    status: str


class DocumentOutcome(BaseModel):
    document_id: str
    status: str


class KeyCreated(BaseModel):
    id: str
    role: Role
    name: str
    key: str = Field(description="the key itself: shown once, only its hash is kept")


class KeyInfo(BaseModel):
    id: str
    prefix: str
    role: str
    name: str
    created_at: str
    revoked_at: str | None


class KeyList(BaseModel):
    keys: list[KeyInfo]


class Page(_Open):
    """One page of a list: ``total`` items, from ``offset``, at most ``limit``."""

    total: int
    limit: int
    offset: int


class CasesPage(Page):
    now: str
    counts: dict[str, int]
    active: list[dict[str, Any]]


class DeadLettersPage(Page):
    dead_letters: list[dict[str, Any]]


class InboxPage(Page):
    documents: list[dict[str, Any]]


class ReviewQueue(_Open):
    documents: list[dict[str, Any]]
    count: int


class CaseView(_Open):
    """A case with its requests, attempts, documents and packets."""

    case_id: str
    notification_id: str
    status: str
    due_at: str


class Timeline(_Open):
    case_id: str
    events: list[dict[str, Any]]
    packets: list[dict[str, Any]]


class QueuesView(_Open):
    broker_up: bool
    queues: list[dict[str, Any]]
    workers_alive: int | None


class AuditCheck(_Open):
    ok: bool
    events: int
    message: str


class InboxDocument(_Open):
    id: str


# --- the document -----------------------------------------------------------------------------


def _schemas_of(model: type[BaseModel]) -> dict[str, Any]:
    """``model``'s JSON schema and those it refers to, named for ``components/schemas``."""
    schema = model.model_json_schema(ref_template=COMPONENTS + "{model}")
    found = dict(schema.pop("$defs", {}))
    found[model.__name__] = schema
    return found


#: Request bodies the routes read themselves; declared with :func:`body`.
BODY_MODELS: tuple[type[BaseModel], ...] = (
    Notification,
    CancelBody,
    AssignBody,
    CampaignLoad,
    ReviewBody,
    KeyBody,
)


def _roles_of(route: APIRoute) -> list[str]:
    """The roles the route's key check opens it to (api/security.py marks its dependency)."""
    roles: list[str] = []
    stack = list(route.dependant.dependencies)
    while stack:
        dep = stack.pop()
        roles.extend(getattr(dep.call, "goodfaith_roles", ()))
        stack.extend(dep.dependencies)
    return sorted(set(roles))


def build(app: FastAPI) -> dict[str, Any]:
    """The OpenAPI document of ``app`` with the contract's additions."""
    doc = get_openapi(
        title=app.title,
        version=app.version,
        description=app.description,
        routes=app.routes,
        servers=app.servers,
    )
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    schemas["Problem"] = PROBLEM_SCHEMA
    for model in BODY_MODELS:
        schemas.update(_schemas_of(model))
    # FastAPI's own 422 shape is never served (api/problems.py answers problems)
    schemas.pop("HTTPValidationError", None)
    schemas.pop("ValidationError", None)
    doc["components"]["securitySchemes"] = {
        SECURITY_SCHEME: {
            "type": "http",
            "scheme": "bearer",
            "description": "an API key (`goodfaith keys create --role ROLE`); each protected "
            "operation names the role it needs",
        }
    }
    for route in app.routes:
        if not isinstance(route, APIRoute) or not route.include_in_schema:
            continue
        roles = _roles_of(route)
        for method in route.methods or ():
            operation = doc["paths"].get(route.path_format, {}).get(method.lower())
            if operation is None:
                continue
            if "HTTPValidationError" in json.dumps(operation["responses"].get("422", {})):
                operation["responses"]["422"] = errors(422)[422]  # FastAPI's own, as served
            if roles:
                operation["security"] = [{SECURITY_SCHEME: roles}]
    doc["paths"] = dict(sorted(doc["paths"].items()))
    doc["components"]["schemas"] = dict(sorted(schemas.items()))
    return doc


def install(app: FastAPI) -> None:
    """Serve :func:`build`'s document at ``/openapi.json`` (built once, on first use)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = build(app)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def render(doc: dict[str, Any]) -> str:
    """The document as committed: 2-space JSON, keys in order, a newline at the end."""
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"
