"""SinchFax (Sinch Fax API v3): the request it sends, errors, status and failure mapping, crash
adoption by label, callback authentication and decoding; then one contract suite run against
payloads recorded from Sinch's documentation and against the simulator's Sinch far side."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from api.app import create_app
from config.settings import Settings
from connectors.base import (
    AuthError,
    FaxChannel,
    FaxReceivedEvent,
    FaxStatusEvent,
    InvalidDestination,
    RecordsRequest,
    Rejected,
    TransientError,
    WebhookError,
)
from connectors.fax.sinch import KEY_LABEL, SinchFax, SinchSettings, with_credentials
from connectors.registry import BuildContext, build_fax
from connectors.retry import no_wait_retrying
from simulator.app import Simulator
from simulator.providers import ProviderBehaviour
from simulator.serving import asgi_client
from simulator.sinch import INCOMING_PASSWORD, INCOMING_USERNAME, SinchFarSide
from tests.fakes import make_container
from tests.unit import sinch_recorded as rec
from tests.unit.simulator.world import (
    BUSY_FAX,
    CARRIER,
    OK_FAX,
    START,
    WEBHOOK,
    Carrier,
    letter,
)
from worker.domain.clock import VirtualClock
from worker.domain.types import AttemptOutcome, Channel, ChannelKind

BASE = "https://fax.example"
PASSWORD = "s3cret-callback"
API = f"{BASE}/v3/projects/{rec.PROJECT}"

Handler = Callable[[httpx.Request], httpx.Response]


def make_fax(handler: Handler, *, base: str = BASE, password: str = PASSWORD) -> SinchFax:
    return SinchFax(
        httpx.Client(transport=httpx.MockTransport(handler)),
        project_id=rec.PROJECT,
        key_id="KEYID",
        key_secret="KEYSECRET",
        from_number="+16175550000",
        webhook_url="https://carrier.example/v1/webhooks/sinch",
        webhook_username="sinch",
        webhook_password=password,
        base_url=base,
        retrying=no_wait_retrying,
    )


def fax_request(to: str = OK_FAX, key: str = "att-9") -> RecordsRequest:
    return RecordsRequest(
        idempotency_key=key,
        reference="GF-OOOO0001",
        channel=Channel(ChannelKind.FAX, to),
        document_url=f"{CARRIER}/letters/GF-OOOO0001.pdf",
        member_id="M-1",
        requester="Acme Health",
        purpose="External review",
    )


def basic(user: str = "sinch", password: str = PASSWORD) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def json_callback(payload: dict[str, Any], auth: str | None = None) -> tuple[bytes, dict[str, str]]:
    headers = {"content-type": "application/json"}
    if auth is not None:
        headers["authorization"] = auth
    return json.dumps(payload).encode(), headers


def multipart_callback(
    fields: dict[str, Any], pdf: bytes, auth: str | None
) -> tuple[bytes, dict[str, str]]:
    files: dict[str, Any] = {
        "event": (None, fields["event"]),
        "eventTime": (None, fields["eventTime"]),
        "fax": (None, json.dumps(fields["fax"]), "application/json"),
        "file": ("fax.pdf", pdf, "application/pdf"),
    }
    request = httpx.Request("POST", "https://x", files=files)
    headers = {"content-type": request.headers["content-type"]}
    if auth is not None:
        headers["authorization"] = auth
    return request.read(), headers


# --- the adapter on its own ----------------------------------------------------------------


def test_sinch_fax_is_a_fax_channel_named_sinch() -> None:
    """SinchFax satisfies FaxChannel; its registry name is its webhook path segment."""
    fax = make_fax(lambda r: httpx.Response(500))
    assert isinstance(fax, FaxChannel)
    assert (fax.vendor, fax.kind) == ("sinch", ChannelKind.FAX)


def test_send_posts_the_documented_body_with_basic_auth_and_our_key_as_a_label() -> None:
    """POST /v3/projects/{projectId}/faxes, Basic key id:secret, JSON with to, from,
    contentUrl, labels[goodfaithKey] and a callbackUrl carrying our callback credentials."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=rec.fax("QUEUED", key="att-9", to=OK_FAX))

    receipt = make_fax(handler).send(fax_request())
    assert receipt.external_id == rec.FAX_ID
    (request,) = seen
    assert (request.method, str(request.url)) == ("POST", f"{API}/faxes")
    assert (
        request.headers["authorization"] == "Basic " + base64.b64encode(b"KEYID:KEYSECRET").decode()
    )
    body = json.loads(request.content)
    assert body["to"] == OK_FAX and body["from"] == "+16175550000"
    assert body["contentUrl"] == f"{CARRIER}/letters/GF-OOOO0001.pdf"
    assert body["labels"] == {KEY_LABEL: "att-9"}
    assert body["callbackUrlContentType"] == "application/json"
    callback = httpx.URL(body["callbackUrl"])
    assert (callback.username, callback.password) == ("sinch", PASSWORD)
    assert callback.path == "/v1/webhooks/sinch"


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        (
            httpx.Response(
                400, json=rec.error(400, "INVALID_ARGUMENT", f"Invalid phone number {OK_FAX}", "to")
            ),
            InvalidDestination,
        ),
        (httpx.Response(401, json=rec.error(401, "UNAUTHENTICATED", "Bad key")), AuthError),
        (httpx.Response(403, json=rec.error(403, "PERMISSION_DENIED", "No fax")), AuthError),
        (httpx.Response(400, json=rec.error(400, "INVALID_ARGUMENT", "bad labels")), Rejected),
        (httpx.Response(429, headers={"retry-after": "0"}), TransientError),
        (httpx.Response(503), TransientError),
        (httpx.Response(200, json={"status": "QUEUED"}), Rejected),
    ],
)
def test_send_errors_map_into_the_tree(response: httpx.Response, expected: type[Exception]) -> None:
    """Sinch's error answers become our errors: a 400 naming the number is
    InvalidDestination, 401/403 AuthError, 429/5xx transient, an answer without id Rejected."""
    with pytest.raises(expected):
        make_fax(lambda r: response).send(fax_request())


@pytest.mark.parametrize(
    ("fields", "outcome", "reason", "retryable"),
    [
        ({}, AttemptOutcome.DELIVERED, None, False),
        (
            {"errorType": "CALL_ERROR", "errorCode": 17},
            AttemptOutcome.FAILED,
            "CALL_ERROR:17",
            True,
        ),
        (
            {"errorType": "CALL_ERROR", "errorCode": 30},
            AttemptOutcome.FAILED,
            "CALL_ERROR:30",
            True,
        ),
        (
            {"errorType": "CALL_ERROR", "errorCode": 34},
            AttemptOutcome.FAILED,
            "CALL_ERROR:34",
            False,
        ),
        ({"errorType": "LINE_ERROR", "errorCode": 2}, AttemptOutcome.FAILED, "LINE_ERROR:2", True),
        (
            {"errorType": "DOCUMENT_CONVERSION_ERROR", "errorCode": 1},
            AttemptOutcome.FAILED,
            "DOCUMENT_CONVERSION_ERROR:1",
            False,
        ),
    ],
)
def test_fax_completed_maps_status_and_failure(
    fields: dict[str, Any], outcome: AttemptOutcome, reason: str | None, retryable: bool
) -> None:
    """FAX_COMPLETED: COMPLETED is delivered; FAILURE is failed, busy/no-answer/line errors
    worth a redial, a dead number or a bad document not."""
    status = "FAILURE" if fields else "COMPLETED"
    body, headers = json_callback(
        rec.fax_completed(status, key="att-9", to=OK_FAX, **fields), basic()
    )
    event = make_fax(lambda r: httpx.Response(500)).parse_webhook(body, headers)
    assert isinstance(event, FaxStatusEvent)
    assert (event.fax_id, event.outcome, event.failure_reason, event.retryable) == (
        rec.FAX_ID,
        outcome,
        reason,
        retryable,
    )
    assert event.client_state == "att-9"
    assert event.event_id == f"{rec.FAX_ID}:FAX_COMPLETED:{status}"  # a redelivery dedupes


@pytest.mark.parametrize(
    "auth",
    [None, basic(password="wrong"), basic(user="other"), "Bearer " + PASSWORD, basic() + "x"],
)
def test_callbacks_without_our_credentials_are_refused(auth: str | None) -> None:
    """A callback with no Authorization, or other credentials, is a WebhookError."""
    body, headers = json_callback(rec.fax_completed("COMPLETED", key="k", to=OK_FAX), auth)
    with pytest.raises(WebhookError):
        make_fax(lambda r: httpx.Response(500)).parse_webhook(body, headers)


def test_a_password_is_required() -> None:
    """Without GOODFAITH_FAX__WEBHOOK_PASSWORD the adapter refuses to start (fail closed)."""
    with pytest.raises(ValueError, match="WEBHOOK_PASSWORD"):
        make_fax(lambda r: httpx.Response(500), password="")


@pytest.mark.parametrize(
    "body",
    [b"not json", b"[]", b'{"event": "FAX_COMPLETED"}', b'{"event": "INCOMING_FAX", "fax": {}}'],
)
def test_malformed_callbacks_are_webhook_errors(body: bytes) -> None:
    """A body that is not a Sinch callback is a WebhookError, not a crash."""
    fax = make_fax(lambda r: httpx.Response(500))
    with pytest.raises(WebhookError):
        fax.parse_webhook(body, {"authorization": basic(), "content-type": "application/json"})


def test_incoming_fax_multipart_points_at_the_api_download() -> None:
    """INCOMING_FAX (multipart: JSON fax part + PDF file part) becomes a FaxReceivedEvent whose
    media URL is the API's /file.pdf of that fax, fetched with our key."""
    body, headers = multipart_callback(rec.incoming_fax(OK_FAX), letter("GF-X"), basic())
    event = make_fax(lambda r: httpx.Response(500)).parse_webhook(body, headers)
    assert isinstance(event, FaxReceivedEvent)
    assert (event.fax_id, event.from_number, event.page_count) == (rec.INBOUND_ID, OK_FAX, 3)
    assert event.media_url == f"{API}/faxes/{rec.INBOUND_ID}/file.pdf"


def test_fetch_media_refuses_urls_outside_the_project() -> None:
    """A media URL that is not this project's API (a forged callback) is never fetched with
    our key."""
    calls: list[httpx.Request] = []
    fax = make_fax(lambda r: calls.append(r) or httpx.Response(200))  # type: ignore[func-returns-value]
    with pytest.raises(Rejected):
        fax.fetch_media("https://evil.example/v3/projects/x/faxes/1/file.pdf")
    assert calls == []


def test_registry_builds_sinch_from_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """GOODFAITH_FAX__VENDOR=sinch with its settings builds SinchFax; the password stays out of
    the settings' repr."""
    monkeypatch.setenv("GOODFAITH_FAX__VENDOR", "sinch")
    monkeypatch.setenv("GOODFAITH_FAX__PROJECT_ID", rec.PROJECT)
    monkeypatch.setenv("GOODFAITH_FAX__WEBHOOK_PASSWORD", PASSWORD)
    monkeypatch.setenv("GOODFAITH_FAX__KEY_SECRET", "KEYSECRET")
    settings = Settings()
    assert isinstance(settings.fax, SinchSettings)
    assert PASSWORD not in repr(settings.fax) and "KEYSECRET" not in repr(settings.fax)
    ctx = BuildContext(
        http=httpx.Client(), retrying=no_wait_retrying, public_base_url="https://gf.example"
    )
    assert isinstance(build_fax(settings.fax, ctx), SinchFax)


def test_with_credentials_replaces_existing_userinfo_and_quotes() -> None:
    """The callback URL carries exactly our credentials, URL-quoted."""
    url = with_credentials("https://old:pw@gf.example/v1/webhooks/sinch", "si nch", "p@ss")
    assert url == "https://si%20nch:p%40ss@gf.example/v1/webhooks/sinch"


# --- the webhook route -----------------------------------------------------------------------


def test_the_sinch_webhook_route_refuses_forged_callbacks(tmp_path: Path) -> None:
    """POST /v1/webhooks/sinch without, or with wrong, credentials is 401; with ours it is
    accepted."""
    c, _clock, _fax, _d = make_container(tmp_path, START)
    c.fax = make_fax(lambda r: httpx.Response(404))
    http = asgi_client(create_app(lambda: c))
    try:
        body, headers = json_callback(rec.fax_completed("COMPLETED", key="k", to=OK_FAX))
        assert http.post("/v1/webhooks/sinch", content=body, headers=headers).status_code == 401
        headers["authorization"] = basic(password="guess")
        assert http.post("/v1/webhooks/sinch", content=body, headers=headers).status_code == 401
        headers["authorization"] = basic()
        assert http.post("/v1/webhooks/sinch", content=body, headers=headers).status_code == 200
        assert http.post("/v1/webhooks/telnyx", content=body, headers=headers).status_code == 404
    finally:
        http.close()
        c.close()


# --- one contract suite, two far sides --------------------------------------------------------


@dataclass
class FarSide:
    """A Sinch far side for the contract suite: ``fax`` talks to it; ``finish()`` lets the
    fax sent to ``to`` complete and returns the callbacks our side received."""

    fax: SinchFax
    finish: Callable[[], list[tuple[bytes, dict[str, str]]]]
    reads_reference: bool  # whether the inbound PDF quotes our reference (the simulator's does)
    extra: dict[str, Any] = field(default_factory=dict)


def _recorded() -> Iterator[FarSide]:
    """The documented payloads, replayed."""

    def handler(request: httpx.Request) -> httpx.Response:
        path = request.url.path.removeprefix(f"/v3/projects/{rec.PROJECT}")
        if request.method == "POST" and path == "/faxes":
            return httpx.Response(200, json=rec.fax("QUEUED", key="att-9", to=OK_FAX))
        if path == f"/faxes/{rec.FAX_ID}":
            return httpx.Response(200, json=rec.fax("COMPLETED", key="att-9", to=OK_FAX))
        if path == "/faxes":
            return httpx.Response(
                200, json=rec.fax_list(rec.fax("COMPLETED", key="att-9", to=OK_FAX))
            )
        if path == f"/faxes/{rec.INBOUND_ID}/file.pdf":
            return httpx.Response(
                200, content=letter("GF-OOOO0001"), headers={"content-type": "application/pdf"}
            )
        return httpx.Response(404, json=rec.error(404, "NOT_FOUND", "Fax not found"))

    def finish() -> list[tuple[bytes, dict[str, str]]]:
        # Sinch sends the Basic credentials of the URL it was given.
        return [
            json_callback(rec.fax_completed("COMPLETED", key="att-9", to=OK_FAX), basic()),
            multipart_callback(rec.incoming_fax(OK_FAX), letter("GF-OOOO0001"), basic()),
        ]

    yield FarSide(make_fax(handler), finish, reads_reference=True)


def _simulated(**failures: float) -> Iterator[FarSide]:
    """The simulator's Sinch far side, on a virtual clock, posting callbacks to our side;
    ``failures``: the simulator's ``duplicate_webhooks`` / ``throttle`` / ``drop_webhooks``."""
    clock = VirtualClock(START)
    carrier = Carrier()
    carrier.letters["GF-OOOO0001.pdf"] = letter("GF-OOOO0001")
    http = httpx.Client(transport=httpx.MockTransport(carrier.handler))
    sim = Simulator(
        clock=clock,
        webhook_url=WEBHOOK,
        behaviours={
            "ok-clinic": ProviderBehaviour(reply_delay_minutes=60, pages=3),
            "busy-clinic": ProviderBehaviour(fax="busy"),
        },
        directory={OK_FAX: "ok-clinic", BUSY_FAX: "busy-clinic"},
        http=http,
        public_base_url="http://testserver",
        **failures,  # type: ignore[arg-type]
    )
    with asgi_client(sim.app) as client:
        fax = SinchFax(
            client,
            project_id=rec.PROJECT,
            key_id="KEYID",
            key_secret="KEYSECRET",
            from_number="+16175550000",
            webhook_url=WEBHOOK,
            webhook_username=INCOMING_USERNAME,
            webhook_password=INCOMING_PASSWORD,
            base_url="http://testserver",
            retrying=no_wait_retrying,
            clock=clock,
        )

        def finish() -> list[tuple[bytes, dict[str, str]]]:
            while (at := sim.next_event_at()) is not None:
                clock.advance_to(at)
                sim.fire_due()
            return list(carrier.webhooks)

        yield FarSide(fax, finish, reads_reference=True, extra={"sim": sim})
    http.close()


@pytest.fixture(params=["recorded", "simulator"])
def far(request: pytest.FixtureRequest) -> Iterator[FarSide]:
    yield from (_recorded() if request.param == "recorded" else _simulated())


def _auth_of(callbacks: list[tuple[bytes, dict[str, str]]]) -> set[str | None]:
    return {{k.lower(): v for k, v in h.items()}.get("authorization") for _, h in callbacks}


def test_contract_send_complete_adopt_and_receive(far: FarSide) -> None:
    """Send → FAX_COMPLETED (delivered, our key) → status reads COMPLETED → find_sent adopts
    the fax by its label → INCOMING_FAX from the provider → its PDF downloads from the API."""
    from worker.documents import extract_reference

    request = fax_request()
    receipt = far.fax.send(request)
    callbacks = far.finish()
    assert None not in _auth_of(callbacks)  # Sinch sends the credentials of the URL
    events = [far.fax.parse_webhook(body, headers) for body, headers in callbacks]
    statuses = [e for e in events if isinstance(e, FaxStatusEvent)]
    assert [(e.fax_id, e.outcome, e.client_state) for e in statuses] == [
        (receipt.external_id, AttemptOutcome.DELIVERED, "att-9")
    ]
    polled = far.fax.status(receipt.external_id)
    assert polled is not None and polled.outcome is AttemptOutcome.DELIVERED
    assert far.fax.status("no-such-fax") is None
    found = far.fax.find_sent(request, START - timedelta(minutes=1))
    assert found is not None and found.external_id == receipt.external_id
    assert far.fax.find_sent(fax_request(key="another"), START - timedelta(minutes=1)) is None
    (received,) = [e for e in events if isinstance(e, FaxReceivedEvent)]
    assert received.from_number == OK_FAX
    document = far.fax.fetch_media(received.media_url)
    assert document.content_type == "application/pdf"
    assert extract_reference(document.data) == "GF-OOOO0001"
    for body, headers in callbacks:  # the same callbacks without credentials are refused
        bare = {k: v for k, v in headers.items() if k.lower() != "authorization"}
        with pytest.raises(WebhookError):
            far.fax.parse_webhook(body, bare)


@pytest.fixture
def simulated() -> Iterator[FarSide]:
    yield from _simulated()


def test_simulated_busy_line_fails_retryably(simulated: FarSide) -> None:
    """The simulator's busy provider: FAX_COMPLETED with FAILURE CALL_ERROR 17, worth a
    redial; no records come back."""
    far = simulated
    receipt = far.fax.send(fax_request(to=BUSY_FAX))
    events = [far.fax.parse_webhook(b, h) for b, h in far.finish()]
    (event,) = events
    assert isinstance(event, FaxStatusEvent)
    assert (event.fax_id, event.outcome, event.failure_reason, event.retryable) == (
        receipt.external_id,
        AttemptOutcome.FAILED,
        "CALL_ERROR:17",
        True,
    )
    sim = far.extra["sim"]
    assert sim.far_side(SinchFarSide).labels() == [{KEY_LABEL: "att-9"}]


@pytest.fixture
def unruly() -> Iterator[FarSide]:
    yield from _simulated(duplicate_webhooks=1.0, throttle=0.4)


def test_throttling_and_duplicate_callbacks_change_nothing(unruly: FarSide) -> None:
    """Sinch's far side answering 429 (Retry-After) to some requests and delivering every
    callback twice a minute apart: the send is retried without a second fax,
    and each duplicate decodes to the same event id (deduped downstream)."""
    far = unruly
    receipt = far.fax.send(fax_request())
    callbacks = far.finish()
    events = [far.fax.parse_webhook(body, headers) for body, headers in callbacks]
    assert len(events) == 4  # FAX_COMPLETED and INCOMING_FAX, each twice
    assert [type(e).__name__ for e in events] == [
        "FaxStatusEvent",
        "FaxStatusEvent",
        "FaxReceivedEvent",
        "FaxReceivedEvent",
    ]
    assert len({e.event_id for e in events if e is not None}) == 2
    side = far.extra["sim"].far_side(SinchFarSide)
    assert side.duplicated == 2
    assert side.labels() == [{KEY_LABEL: "att-9"}]  # one fax, whatever was retried
    for _ in range(6):  # reads are throttled too, and retried
        polled = far.fax.status(receipt.external_id)
        assert polled is not None and polled.outcome is AttemptOutcome.DELIVERED
    assert side.throttled > 0
