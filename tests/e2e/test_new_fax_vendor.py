"""A second fax vendor needs only its adapter, its far side, one registry line and settings.

Everything vendor-specific lives in this module, as a real vendor's would live in
``connectors/fax/<name>.py``, ``simulator/<name>.py``, one line of ``connectors/registry.py``
and ``GOODFAITH_FAX__*``. The "toy" vendor speaks its own small wire format:

- ``POST {api_base}/toy/v1/faxes`` with ``Authorization: Token <api_token>`` and JSON
  ``{to, from, media_url, reference}`` (``reference`` = the attempt's idempotency key; the far
  side answers a repeated one with the same fax) → 201 ``{"id"}``.
- Webhooks ``{"event_id", "type": "delivered"|"failed"|"received", "at", "fax_id", ...}``,
  authenticated by ``X-Toy-Signature``: hex HMAC-SHA256 of the raw body with the shared
  secret. A missing or wrong signature is refused (fail closed).
- Inbound media at ``GET {api_base}/toy/v1/media/{id}``, with the same token.

Then the real pipeline runs a small scenario on the simulator against it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any, ClassVar, Literal

import httpx
import pytest
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import Field
from sqlalchemy import select

from config.settings import FaxVendorSettings
from connectors.base import (
    FaxChannel,
    FaxReceivedEvent,
    FaxStatusEvent,
    InboundDocument,
    InvalidDestination,
    RecordsRequest,
    SendReceipt,
    TransientError,
    WebhookError,
)
from connectors.http_errors import call, json_object
from connectors.registry import FAX_VENDORS, BuildContext, Vendor
from connectors.retry import RetryingFactory, no_wait_retrying
from simulator.app import FAR_SIDES
from simulator.base import Context, FarSide
from simulator.driver import run_simulation
from simulator.events import Fired, iso
from simulator.letters import page_count, read_reference
from simulator.scenario import parse_scenario
from simulator.telnyx import TelnyxFarSide
from storage.db import make_engine
from storage.models import Attempt
from tests.conftest import notification
from worker.domain.types import AttemptOutcome, ChannelKind

SIGNATURE_HEADER = "x-toy-signature"
SECRET = "toy-shared-secret"  # the account's webhook secret, known to the toy far side
TOKEN = "toy-api-token"  # the account's API token, known to the toy far side


def _sign(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


# --- 1. the adapter (connectors/fax/toy.py) --------------------------------------------------


class ToySettings(FaxVendorSettings):
    """``GOODFAITH_FAX__VENDOR=toy`` with ``__API_BASE``, ``__API_TOKEN``, ``__WEBHOOK_SECRET``."""

    vendor: Literal["toy"] = "toy"
    api_base: str = "https://api.toyfax.example"
    api_token: str = Field(default="", repr=False)
    webhook_secret: str = Field(default="", repr=False)


class ToyFax:
    """``FaxChannel`` over the toy vendor's API."""

    kind = ChannelKind.FAX
    vendor = "toy"

    def __init__(self, client: httpx.Client, s: ToySettings, retrying: RetryingFactory) -> None:
        if not s.webhook_secret:
            raise ValueError("toy fax: set GOODFAITH_FAX__WEBHOOK_SECRET (webhooks must verify)")
        self._client, self._base, self._from = client, s.api_base.rstrip("/"), s.from_number
        self._auth = {"Authorization": f"Token {s.api_token}"}
        self._secret, self._retrying = s.webhook_secret.encode(), retrying

    def send(self, request: RecordsRequest) -> SendReceipt:
        if request.channel.kind is not ChannelKind.FAX:
            raise InvalidDestination(f"ToyFax cannot send over {request.channel.kind}")
        response = call(
            self._client,
            "POST",
            f"{self._base}/toy/v1/faxes",
            what="toy send fax",
            retrying=self._retrying,
            destination=request.channel.destination,
            headers=self._auth,
            json={
                "to": request.channel.destination,
                "from": self._from,
                "media_url": request.document_url,
                "reference": request.idempotency_key,
            },
        )
        fax_id = json_object(response, what="toy send fax").get("id")
        if not isinstance(fax_id, str) or not fax_id:
            raise TransientError("toy send fax: no id in the answer (retried: same reference)")
        return SendReceipt(external_id=fax_id)

    def status(self, external_id: str) -> FaxStatusEvent | None:
        url, what = f"{self._base}/toy/v1/faxes/{external_id}", "toy fax status"
        r = call(self._client, "GET", url, what=what, retrying=self._retrying, headers=self._auth,
                 answers=(404,))  # fmt: skip
        if r.status_code == 404:
            return None
        st = json_object(r, what=what).get("status")
        outcome = {"delivered": AttemptOutcome.DELIVERED, "failed": AttemptOutcome.FAILED}
        at = datetime.now(UTC)
        return FaxStatusEvent(
            f"poll-{external_id}", f"fax.{st}", external_id, at, outcome.get(str(st))
        )

    def find_sent(self, request: RecordsRequest, since: datetime) -> SendReceipt | None:
        url, what = f"{self._base}/toy/v1/faxes", "toy find fax"
        r = call(self._client, "GET", url, what=what, retrying=self._retrying, headers=self._auth,
                 params={"reference": request.idempotency_key}, answers=(404,))  # fmt: skip
        return None if r.status_code == 404 else SendReceipt(str(json_object(r, what=what)["id"]))

    def parse_webhook(
        self, body: bytes, headers: Mapping[str, str]
    ) -> FaxStatusEvent | FaxReceivedEvent | None:
        given = {k.lower(): v for k, v in headers.items()}.get(SIGNATURE_HEADER, "")
        expected = hmac.new(self._secret, body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(given.encode(), expected.encode()):
            raise WebhookError(f"toy webhook: {SIGNATURE_HEADER} missing or wrong")
        try:
            e = json.loads(body)
            kind, ids = e["type"], (str(e["event_id"]), str(e["fax_id"]))
            at = datetime.fromisoformat(e["at"].replace("Z", "+00:00")).astimezone(UTC)
            if kind == "received":
                return FaxReceivedEvent(*ids, at, e["from"], e["to"], e["media_url"], e["pages"])
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise WebhookError("toy webhook: malformed body") from exc
        if kind == "delivered":
            return FaxStatusEvent(ids[0], "fax.delivered", ids[1], at, AttemptOutcome.DELIVERED)
        if kind == "failed":
            reason = str(e.get("reason") or "unknown")
            return FaxStatusEvent(
                ids[0], "fax.failed", ids[1], at, AttemptOutcome.FAILED, reason,
                retryable=reason == "busy",
            )  # fmt: skip
        return None  # an event type we do not act on

    def fetch_media(self, url: str) -> InboundDocument:
        what, auth = "toy fetch media", self._auth
        response = call(self._client, "GET", url, what=what, retrying=self._retrying, headers=auth)
        data = response.content
        return InboundDocument(
            data=data,
            content_type=response.headers.get("content-type", "").split(";")[0].strip(),
            source=ChannelKind.FAX,
            external_id="sha256:" + hashlib.sha256(data).hexdigest(),
        )


# --- 2. the far side (simulator/toy.py) ------------------------------------------------------

_TO_DELIVERED = timedelta(minutes=2)


@dataclass
class _Later:
    """Far-side work on the event heap (a webhook POST, a transmission)."""

    run: Callable[[], Fired]

    def fire(self, due: datetime, now: datetime) -> Fired:
        return self.run()


class ToyFarSide(FarSide):
    """The toy vendor's API and webhooks; providers answer as the shared behaviour model says."""

    served: ClassVar[list[ToyFarSide]] = []  # the running instances, for the test to inspect

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self._lock = threading.Lock()
        self.faxes: dict[str, dict[str, str]] = {}  # by reference (the idempotency key)
        self._media: dict[str, bytes] = {}
        self.served.append(self)

    def router(self) -> APIRouter:
        router = APIRouter()

        @router.post("/toy/v1/faxes")
        async def create_fax(request: Request) -> Response:
            if request.headers.get("authorization") != f"Token {TOKEN}":
                return JSONResponse({"error": "unauthorized"}, status_code=401)
            try:
                body = json.loads(await request.body())
                fax = {k: str(body[k]) for k in ("to", "from", "media_url", "reference")}
            except (ValueError, KeyError, TypeError):
                return JSONResponse({"error": "to, from, media_url, reference"}, 422)
            with self._lock:
                known = self.faxes.get(fax["reference"])
                if known is None:
                    fax["id"] = uuid.uuid4().hex
                    self.faxes[fax["reference"]] = fax
            if known is not None:
                return JSONResponse({"id": known["id"]}, status_code=201)
            at = self.ctx.clock.now() + _TO_DELIVERED
            self.ctx.events.push(at, _Later(partial(self.transmit, fax, at)))
            return JSONResponse({"id": fax["id"]}, status_code=201)

        @router.get("/toy/v1/faxes")
        def find(reference: str, request: Request) -> Response:
            found = self.faxes.get(reference)
            if request.headers.get("authorization") != f"Token {TOKEN}" or found is None:
                return JSONResponse({"error": "not found"}, status_code=404)
            return JSONResponse({"id": found["id"]})

        @router.get("/toy/v1/faxes/{fax_id}")
        def read(fax_id: str, request: Request) -> Response:
            found = next((f for f in self.faxes.values() if f["id"] == fax_id), None)
            if request.headers.get("authorization") != f"Token {TOKEN}" or found is None:
                return JSONResponse({"error": "not found"}, status_code=404)
            return JSONResponse({"id": fax_id, "status": found.get("status", "queued")})

        @router.get("/toy/v1/media/{media_id}")
        def media(media_id: str, request: Request) -> Response:
            found = self._media.get(media_id)
            if request.headers.get("authorization") != f"Token {TOKEN}" or found is None:
                return JSONResponse({"error": "not found"}, status_code=404)
            return Response(found, media_type="application/pdf")

        return router

    def post_webhook(self, event: dict[str, Any]) -> Fired:
        body = json.dumps(event).encode()
        headers = {"content-type": "application/json", SIGNATURE_HEADER: _sign(SECRET, body)}
        try:
            response = self.ctx.http.post(self.ctx.webhook_url, content=body, headers=headers)
        except httpx.HTTPError:
            return Fired.RETRY
        if not response.is_success:
            return Fired.RETRY
        self.ctx.record_webhook(event)
        return Fired.DELIVERED

    def _event(self, at: datetime, kind: str, fax_id: str, **extra: Any) -> None:
        event = {"event_id": uuid.uuid4().hex, "type": kind, "at": iso(at), "fax_id": fax_id}
        self.ctx.events.push(at, _Later(partial(self.post_webhook, {**event, **extra})))

    def transmit(self, fax: dict[str, str], due: datetime) -> Fired:
        """The fax reaches the provider: the letter is fetched and read, as Telnyx's far side
        does; the provider's count decides whether (and when) the records come back."""
        try:
            response = self.ctx.http.get(fax["media_url"])
        except httpx.HTTPError:
            response = None
        if response is None or not response.is_success:
            fax["status"] = "failed"
            self._event(due, "failed", fax["id"], reason="download_failed")
            return Fired.DONE
        reference = read_reference(response.content)
        fax["status"] = "delivered"
        self._event(due, "delivered", fax["id"])
        provider_id, behaviour = self.ctx.providers.lookup(fax["to"])
        if not self.ctx.providers.count_delivery(provider_id, behaviour, reference or fax["to"]):
            return Fired.DONE
        document = self.ctx.providers.reply_document(
            provider_id, behaviour, reference or "UNREFERENCED", member_id=""
        )
        media_id = uuid.uuid4().hex
        with self._lock:
            self._media[media_id] = document
        self._event(
            due + timedelta(minutes=behaviour.reply_delay_minutes),
            "received",
            uuid.uuid4().hex,
            to=self.ctx.carrier_fax_number,
            media_url=f"{self.ctx.public_base_url}/toy/v1/media/{media_id}",
            pages=page_count(document),
            **{"from": fax["to"]},
        )
        return Fired.DONE


class _WatchedTelnyx(TelnyxFarSide):
    """Telnyx's far side, counting the faxes it is asked to send."""

    served: ClassVar[list[_WatchedTelnyx]] = []

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self.fax_requests = 0
        self.served.append(self)

    async def _create_fax(self, request: Request) -> Response:
        self.fax_requests += 1
        return await super()._create_fax(request)


# --- 3. the registry line, and 4. the settings ------------------------------------------------


@pytest.fixture
def toy_registered(monkeypatch: pytest.MonkeyPatch) -> None:
    """The one registry line (setitem, so the table is restored after the test)."""
    monkeypatch.setitem(FAX_VENDORS, "toy", Vendor(ToySettings, _build))


def _build(s: ToySettings, ctx: BuildContext) -> ToyFax:
    return ToyFax(ctx.http, s, ctx.retrying)


def _toy_settings(sim_url: str) -> FaxVendorSettings:
    """The run's GOODFAITH_FAX__*: the toy vendor, its API at the simulator (``sim_url``)."""
    return ToySettings(
        api_base=sim_url, api_token=TOKEN, webhook_secret=SECRET, from_number="+16175550000"
    )


# --- the adapter on its own -------------------------------------------------------------------


def test_toy_adapter_satisfies_the_fax_port_and_refuses_unsigned_webhooks() -> None:
    """ToyFax is a FaxChannel; a webhook without, or with a wrong, HMAC is a WebhookError, and a
    signed one decodes into the same event types Telnyx's adapter returns."""
    fax = ToyFax(httpx.Client(), ToySettings(webhook_secret=SECRET), no_wait_retrying)
    assert isinstance(fax, FaxChannel) and fax.vendor == "toy"
    body = json.dumps(
        {"event_id": "e1", "type": "delivered", "at": "2026-04-16T14:00:00Z", "fax_id": "f1"}
    ).encode()
    with pytest.raises(WebhookError):
        fax.parse_webhook(body, {})
    with pytest.raises(WebhookError):
        fax.parse_webhook(body, {SIGNATURE_HEADER: _sign("not-the-secret", body)})
    with pytest.raises(WebhookError):
        fax.parse_webhook(body + b" ", {SIGNATURE_HEADER: _sign(SECRET, body)})
    event = fax.parse_webhook(body, {"X-Toy-Signature": _sign(SECRET, body)})
    assert isinstance(event, FaxStatusEvent)
    assert (event.fax_id, event.outcome) == ("f1", AttemptOutcome.DELIVERED)
    with pytest.raises(ValueError, match="WEBHOOK_SECRET"):
        ToyFax(httpx.Client(), ToySettings(), no_wait_retrying)


# --- the whole pipeline on the toy vendor -------------------------------------------------------


def _scenario() -> dict[str, Any]:
    """prov-1 (notification()'s provider) answers the first request; prov-2 never answers."""
    prov_1 = notification()["providers"][0]
    prov_2 = {**prov_1, "provider_id": "prov-2", "name": "Silent Clinic"}
    prov_2["channels"] = [{"kind": "fax", "number": "+16175550102"}]
    return {
        "start": "2026-04-16T08:00:00-04:00",
        "notifications": [
            notification(notification_id="TOY-ANSWERS", received_at="2026-04-16T09:30:00-04:00"),
            notification(
                notification_id="TOY-SILENT",
                received_at="2026-04-16T10:00:00-04:00",
                review_type="expedited",
                providers=[prov_2],
            ),
        ],
        "providers": {
            "prov-1": {"respond_after_attempts": 1, "reply_delay_minutes": 90, "pages": 3},
            "prov-2": {"respond_after_attempts": None},
        },
        "until": "2026-04-24T18:00:00-04:00",
    }


def test_the_pipeline_runs_end_to_end_on_a_second_fax_vendor(
    toy_registered: None, redis_url: str, tmp_path: Path
) -> None:
    """With GOODFAITH_FAX__VENDOR=toy (its adapter, far side, registry line and settings only),
    both cases are delivered on time; every attempt went through the toy vendor; the silent
    provider got ≥3 attempts; the answering one's records came back through the toy vendor's
    inbound fax and were accepted; Telnyx's far side received no fax."""
    ToyFarSide.served.clear()
    _WatchedTelnyx.served.clear()
    far_sides: tuple[type[FarSide], ...] = (
        *(_WatchedTelnyx if s is TelnyxFarSide else s for s in FAR_SIDES),
        ToyFarSide,
    )
    result = run_simulation(
        parse_scenario(_scenario()),
        workdir=tmp_path,
        redis_url=redis_url,
        threads=4,
        fax=_toy_settings,
        far_sides=far_sides,
    )
    engine = make_engine(f"sqlite:///{tmp_path / 'goodfaith.db'}")  # the run's own database
    with engine.connect() as db:
        vendors = list(db.scalars(select(Attempt.vendor)))
    engine.dispose()
    cases = {c["notification_id"]: c for c in result.report["cases"]}
    assert set(cases) == {"TOY-ANSWERS", "TOY-SILENT"}
    for nid, case in cases.items():
        assert case["status"] == "delivered" and case["on_time"], nid
    assert vendors and set(vendors) == {"toy"}

    answered = cases["TOY-ANSWERS"]["requests"][0]
    assert answered["provider_id"] == "prov-1" and answered["status"] == "fulfilled"
    assert [(d["status"], d["pages"]) for d in answered["documents"]] == [("accepted", 3)]
    silent = cases["TOY-SILENT"]["requests"][0]
    assert silent["provider_id"] == "prov-2" and silent["status"] == "unresponsive"
    assert len(silent["attempts"]) >= 3

    (toy,) = ToyFarSide.served
    assert len(toy.faxes) == len(vendors)
    kinds = [e["type"] for e in toy.ctx.sent_webhooks]
    assert kinds.count("received") == 1 and kinds.count("delivered") == len(vendors)
    (telnyx,) = _WatchedTelnyx.served
    assert telnyx.fax_requests == 0
    assert result.submissions == 2
