"""Access control: each role's endpoints refuse the other roles (403) and anonymous callers
(401); keys are hashed at rest and managed from the CLI; errors are RFC 9457 problem details;
intake and webhooks are rate limited."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from fastapi import FastAPI
from sqlalchemy import select
from structlog.testing import capture_logs

from api.app import create_app
from api.problems import install
from config.settings import RateLimitSettings, get_settings
from simulator.serving import asgi_client
from storage.db import transaction
from storage.models import ApiKey, AuditEvent
from tests.conftest import at, notification
from tests.fakes import api_client, bearer, make_container
from worker.cli import main
from worker.services.keys import Role, create_key, hash_key
from worker.wiring import Container

START = at("2026-04-17T09:00:00-04:00")
ROLES = [r.value for r in Role]
CASE = "0" * 32

#: Every endpoint behind a key: (method, path, the role that opens it).
PROTECTED = [
    ("POST", "/v1/notifications", "intake"),
    ("POST", f"/v1/cases/{CASE}/cancel", "intake"),
    ("POST", "/v1/campaigns", "intake"),
    ("POST", "/v1/campaigns/nope/cancel", "intake"),
    ("GET", "/v1/campaigns", "ops"),
    ("GET", "/v1/campaigns/nope", "ops"),
    ("GET", "/v1/providers/profiles", "ops"),
    ("GET", "/v1/cases", "ops"),
    ("GET", f"/v1/cases/{CASE}", "ops"),
    ("GET", f"/v1/cases/{CASE}/timeline", "ops"),
    ("GET", "/v1/queues", "ops"),
    ("GET", "/v1/dead-letters", "ops"),
    ("GET", "/v1/inbox", "ops"),
    ("GET", "/v1/inbox/nope", "ops"),
    ("GET", "/v1/inbox/nope/content", "ops"),
    ("POST", "/v1/inbox/nope/assign", "ops"),
    ("GET", "/v1/review", "ops"),
    ("POST", "/v1/review/nope/release", "ops"),
    ("POST", "/v1/review/nope/reject", "ops"),
    ("POST", "/v1/dead-letters/nope/retry", "ops"),
    ("GET", "/v1/exports/attempts", "compliance"),
    ("GET", "/v1/audit/verify", "compliance"),
    ("GET", f"/v1/cases/{CASE}/packets/1", "compliance"),
    ("GET", f"/v1/cases/{CASE}/packets/1/manifest", "compliance"),
    ("GET", f"/v1/cases/{CASE}/attestation", "compliance"),
    ("GET", "/v1/keys", "admin"),
    ("POST", "/v1/keys", "admin"),
    ("POST", "/v1/keys/nope/revoke", "admin"),
]
#: Routes open without a key, and why: health, aggregate metrics (no PHI), vendor webhooks
#: (their own signature), CDex Task notifications, letter and packet-fax media (an HMAC token
#: each), the API's own documentation.
OPEN = {
    "/healthz",
    "/metrics",
    "/v1/webhooks/{vendor}",
    "/v1/webhooks/vendor",  # a retrieval vendor's HMAC signature
    "/v1/webhooks/cdex/{key}",  # the bearer token given to the Subscription (an HMAC of key)
    "/v1/media/{attempt_id}",
    "/v1/media/deliveries/{delivery_id}",
    "/openapi.json",
    "/docs",
    "/docs/oauth2-redirect",
    "/redoc",
    "/dashboard",
    "/dashboard.js",
    "/dashboard.css",
}


@pytest.fixture
def c(tmp_path: Path) -> Iterator[Container]:
    container, _clock, _fax, _d = make_container(tmp_path, START)
    yield container
    container.close()


@pytest.fixture
def http(c: Container) -> Iterator[httpx.Client]:
    client = asgi_client(create_app(lambda: c))
    yield client
    client.close()


def _templated(path: str) -> str:
    return (
        path.replace(CASE, "{case_id}")
        .replace("/nope/retry", "/{letter_id}/retry")
        .replace("/nope/revoke", "/{key_id}/revoke")
        .replace("/packets/1", "/packets/{sequence}")
        .replace("/inbox/nope", "/inbox/{document_id}")
        .replace("/review/nope", "/review/{document_id}")
        .replace("/campaigns/nope", "/campaigns/{campaign_id}")
    )


def test_every_route_is_either_protected_or_deliberately_open(c: Container) -> None:
    """No route is open by accident: each is in PROTECTED (with its role) or in OPEN."""
    app = create_app(lambda: c)
    routes = {
        (m, r.path)
        for r in app.routes
        for m in (getattr(r, "methods", None) or {"GET"})
        if m not in ("HEAD", "OPTIONS")
    }
    protected = {(m, _templated(p)) for m, p, _ in PROTECTED}
    assert {(m, p) for m, p in routes if p not in OPEN} == protected


@pytest.mark.parametrize(("method", "path", "role"), PROTECTED)
def test_each_endpoint_refuses_anonymous_and_other_roles(
    c: Container, http: httpx.Client, method: str, path: str, role: str
) -> None:
    """No key → 401 (WWW-Authenticate: Bearer), another role's key → 403, its own role gets
    past the check; every refusal is a problem document."""
    anonymous = http.request(method, path, json={})
    assert anonymous.status_code == 401
    assert anonymous.headers["www-authenticate"] == "Bearer"
    assert anonymous.headers["content-type"] == "application/problem+json"
    assert anonymous.json()["status"] == 401
    for other in ROLES:
        r = http.request(method, path, json={}, headers=bearer(c, other))
        if other == role:
            assert r.status_code not in (401, 403), (other, r.text)
        else:
            assert r.status_code == 403, (other, r.text)
            assert r.json()["title"] == "Forbidden" and role in r.json()["detail"]


def test_unknown_malformed_and_revoked_keys_are_401(c: Container, http: httpx.Client) -> None:
    """A key that is not ours, a non-Bearer header and a revoked key are all 401."""
    made = create_key(c.sessions, Role.OPS, "soon revoked", START)
    good = {"Authorization": f"Bearer {made.key}"}
    assert http.get("/v1/cases", headers=good).status_code == 200
    for headers in (
        {"Authorization": "Bearer gf_" + "x" * 43},
        {"Authorization": "Bearer "},
        {"Authorization": f"Basic {made.key}"},
        {"Authorization": made.key},
    ):
        assert http.get("/v1/cases", headers=headers).status_code == 401, headers
    from worker.services.keys import revoke_key

    assert revoke_key(c.sessions, made.id, START) is True
    assert http.get("/v1/cases", headers=good).status_code == 401


def test_refusals_are_logged_without_the_key(c: Container, http: httpx.Client) -> None:
    """401 and 403 are logged (auth.refused: reason, path, role needed, key id) and the key
    itself appears nowhere in the log."""
    made = create_key(c.sessions, Role.INTAKE, "", START)
    with capture_logs() as logs:
        http.get("/v1/cases")
        http.get("/v1/cases", headers={"Authorization": f"Bearer {made.key}"})
        http.get("/v1/cases", headers={"Authorization": f"Bearer {made.key}x"})
    refused = [e for e in logs if e["event"] == "auth.refused"]
    assert [e["reason"] for e in refused] == ["no_key", "wrong_role", "unknown_key"]
    assert refused[1]["key_id"] == made.id and refused[1]["needed"] == "ops"
    assert made.key not in repr(logs) and made.key[:20] not in repr(logs)


def test_keys_are_stored_only_as_hashes(c: Container) -> None:
    """The database holds the key's SHA-256 and a short prefix, never the key."""
    made = create_key(c.sessions, Role.COMPLIANCE, "auditor", START)
    with transaction(c.sessions) as s:
        row = s.get(ApiKey, made.id)
        assert row is not None
        stored = [str(getattr(row, col.key)) for col in ApiKey.__table__.columns]
        kinds = list(s.scalars(select(AuditEvent.kind)))
    assert row.key_hash == hash_key(made.key) and made.key not in stored
    assert made.key.startswith(row.prefix) and len(row.prefix) < 16
    assert kinds == ["key.created"]


def test_admin_creates_a_key_over_the_api_that_then_works(c: Container) -> None:
    """POST /v1/keys (admin) answers the key once; it opens its role's endpoints."""
    admin = api_client(c, "admin")
    made = admin.post("/v1/keys", json={"role": "compliance", "name": "auditor"})
    assert made.status_code == 201
    key = made.json()["key"]
    listed = admin.get("/v1/keys").json()["keys"]
    assert key not in repr(listed) and {k["role"] for k in listed} == {"admin", "compliance"}
    r = admin.get("/v1/exports/attempts", headers={"Authorization": f"Bearer {key}"})
    assert r.status_code == 200
    assert admin.post("/v1/keys", json={"role": "root"}).status_code == 422
    admin.close()


# --- problem details ---------------------------------------------------------------------------


def test_errors_are_problem_details(c: Container) -> None:
    """404, 409 and 422 answer application/problem+json with type, title, status, instance."""
    ops, intake = api_client(c, "ops"), api_client(c, "intake")
    for r, status in (
        (ops.get(f"/v1/cases/{CASE}"), 404),
        (intake.post(f"/v1/cases/{CASE}/cancel"), 409),
        (ops.get("/v1/cases", params={"limit": "many"}), 422),
        (intake.post("/v1/notifications", json=notification(review_type="urgent")), 422),
    ):
        assert r.status_code == status
        assert r.headers["content-type"] == "application/problem+json"
        body = r.json()
        assert body["status"] == status and body["type"] and body["title"]
    assert r.json()["errors"] == [
        {"field": "review_type", "message": r.json()["errors"][0]["message"]}
    ]
    ops.close()
    intake.close()


def test_an_unexpected_error_is_a_500_problem_without_trace_or_values() -> None:
    """An exception nobody caught answers a bare 500 problem: no trace, no message (which
    might hold PHI); the log names the exception type only."""
    app = FastAPI()
    install(app)

    @app.get("/boom")
    def boom() -> None:
        raise ValueError("Jane Roe 1971-02-03")

    with capture_logs() as logs, asgi_client(app) as client:
        r = client.get("/boom")
    assert r.status_code == 500
    assert r.headers["content-type"] == "application/problem+json"
    assert "Jane" not in r.text and "Traceback" not in r.text and "ValueError" not in r.text
    assert [e["error"] for e in logs if e["event"] == "api.unexpected_error"] == ["ValueError"]
    assert "Jane" not in repr(logs)


# --- rate limits -------------------------------------------------------------------------------


def test_intake_is_rate_limited_per_key(c: Container) -> None:
    """Past its burst a key gets 429 with Retry-After; another key is not affected."""
    c.settings = c.settings.model_copy(
        update={"rate_limits": RateLimitSettings(intake_per_s=0.01, intake_burst=2)}
    )
    one, two = api_client(c, "intake"), api_client(c, "intake")
    codes = [one.post("/v1/notifications", json={}).status_code for _ in range(3)]
    assert codes == [422, 422, 429]
    last = one.post("/v1/notifications", json={})
    assert last.status_code == 429 and int(last.headers["retry-after"]) >= 1
    assert last.headers["content-type"] == "application/problem+json"
    assert two.post("/v1/notifications", json={}).status_code == 422
    one.close()
    two.close()


def test_webhooks_are_rate_limited_per_client(c: Container, http: httpx.Client) -> None:
    """Past the webhook burst one client gets 429 before its body is even read."""
    c.settings = c.settings.model_copy(
        update={"rate_limits": RateLimitSettings(webhooks_per_s=0.01, webhooks_burst=3)}
    )
    codes = [http.post("/v1/webhooks/sinch", content=b"{}").status_code for _ in range(4)]
    assert codes == [404, 404, 404, 429]


# --- the keys CLI ------------------------------------------------------------------------------


@pytest.fixture
def cli_db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    url = f"sqlite:///{tmp_path / 'keys.db'}"
    monkeypatch.setenv("GOODFAITH_DATABASE_URL", url)
    get_settings.cache_clear()
    yield url
    get_settings.cache_clear()


def test_keys_create_prints_the_key_alone_on_its_last_line(cli_db: str, tmp_path: Path) -> None:
    """`keys create --role ops` prints the key last; list shows it without the key; revoke
    ends it (an unknown id is an error, exit 1)."""
    runner = CliRunner()
    created = runner.invoke(main, ["keys", "create", "--role", "ops", "--name", "night shift"])
    assert created.exit_code == 0, created.output
    key = created.output.strip().splitlines()[-1]
    assert key.startswith("gf_") and " " not in key and len(key) == 46
    assert created.stdout.strip() == key
    listed = runner.invoke(main, ["keys", "list"])
    assert "night shift" in listed.stdout and key not in listed.stdout
    key_id = created.stderr.split()[2]
    assert runner.invoke(main, ["keys", "revoke", key_id]).exit_code == 0
    assert "[]" in runner.invoke(main, ["keys", "list"]).stdout
    assert key_id in runner.invoke(main, ["keys", "list", "--all"]).stdout
    missing = runner.invoke(main, ["keys", "revoke", "nope"])
    assert missing.exit_code == 1 and "goodfaith keys list" in missing.stderr
    bad = runner.invoke(main, ["keys", "create", "--role", "root"])
    assert bad.exit_code == 2
