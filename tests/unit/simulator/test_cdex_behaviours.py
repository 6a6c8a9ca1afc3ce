"""A provider's ``fhir`` behaviour on the CDex far side (``"ok" | "rejects" | "fails" | "down"``),
as our CDex connector sees it, and in the scenario file."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx
import pytest

from connectors.base import RecordsRequest, TransientError
from connectors.fhir.cdex import CDexTaskRequester
from connectors.retry import no_wait_retrying
from simulator.app import Simulator
from simulator.providers import ProviderBehaviour
from simulator.scenario import ScenarioError, parse_scenario
from simulator.serving import asgi_client
from tests.conftest import notification
from worker.domain.clock import VirtualClock
from worker.domain.types import AttemptOutcome, Channel, ChannelKind

START = datetime(2026, 3, 2, 14, 0, tzinfo=UTC)
NPIS = {"ok": "1000000001", "rejects": "1000000002", "fails": "1000000003", "down": "1000000004"}


def _request(behaviour: str) -> RecordsRequest:
    """A records request to the provider whose behaviour is ``behaviour`` (its NPI owns the
    Task)."""
    return RecordsRequest(
        idempotency_key=f"att-{behaviour}",
        reference="GF-QQQQ0001",
        channel=Channel(ChannelKind.FHIR, "http://testserver/fhir", False, NPIS[behaviour]),
        document_url="http://carrier.invalid/letter.pdf",
        member_id="M-1",
        requester="Acme Health",
        purpose="External review",
    )


@dataclass
class Far:
    sim: Simulator
    clock: VirtualClock
    cdex: CDexTaskRequester

    def send(self, behaviour: str) -> str:
        return self.cdex.send(_request(behaviour)).external_id


@pytest.fixture
def far() -> Iterator[Far]:
    clock = VirtualClock(START)
    sim = Simulator(
        clock=clock,
        webhook_url="http://carrier.invalid/webhooks",
        behaviours={
            name: ProviderBehaviour(fhir=name, reply_delay_minutes=30)  # type: ignore[arg-type]
            for name in NPIS
        },
        directory={npi: name for name, npi in NPIS.items()},
        http=httpx.Client(transport=httpx.MockTransport(lambda r: httpx.Response(404))),
        public_base_url="http://testserver",
    )
    with asgi_client(sim.app) as client:
        cdex = CDexTaskRequester(
            client, requester_name="Acme", requester_identifier="c-1", retrying=no_wait_retrying
        )
        yield Far(sim, clock, cdex)


@pytest.mark.parametrize(("behaviour", "status"), [("rejects", "rejected"), ("fails", "failed")])
def test_a_refusing_fhir_server_fails_the_attempt_and_counts_nothing(
    far: Far, behaviour: str, status: str
) -> None:
    """``rejects`` / ``fails``: requested at first, then rejected / failed when the provider
    would have accepted it; our poll reads a failed attempt (not a "no records" answer), the
    provider's count stays 0 and no records ever come."""
    url = far.send(behaviour)
    assert far.cdex.poll(url).status == "requested"
    far.clock.advance(61)
    result = far.cdex.poll(url)
    assert (result.status, result.outcome, result.no_records) == (
        status,
        AttemptOutcome.FAILED,
        False,
    )
    far.clock.advance(3600)
    assert far.cdex.poll(url).documents == ()
    assert far.sim.delivered_count(behaviour) == 0


def test_ok_is_answered_and_counted(far: Far) -> None:
    """``ok`` (the default): accepted after a minute, counted, completed with records."""
    url = far.send("ok")
    far.clock.advance(61)
    assert far.cdex.poll(url).outcome is AttemptOutcome.DELIVERED
    far.clock.advance(31 * 60)
    assert len(far.cdex.poll(url).documents) == 1
    assert far.sim.delivered_count("ok") == 1


def test_a_down_server_is_a_transient_error(far: Far) -> None:
    """``down``: every new Task is answered 503; our connector sees a TransientError (after its
    transport retries) and nothing reaches the provider."""
    with pytest.raises(TransientError):
        far.send("down")
    assert far.sim.delivered_count("down") == 0


def test_the_scenario_takes_fhir_behaviours_and_refuses_others() -> None:
    """``"fhir": "rejects"`` is a provider key of the scenario; an unknown value is refused by
    name."""
    base = {"start": "2026-04-16T08:00:00-04:00", "notifications": [notification()]}
    scenario = parse_scenario({**base, "providers": {"prov-1": {"fhir": "rejects"}}})
    assert scenario.providers["prov-1"].fhir == "rejects"
    with pytest.raises(ScenarioError, match=r"providers\.prov-1\.fhir"):
        parse_scenario({**base, "providers": {"prov-1": {"fhir": "sometimes"}}})


def test_the_scenario_says_whose_fhir_server_takes_subscriptions() -> None:
    """``"fhir_subscriptions": false``: that provider's server takes none; by default it does."""
    base = {"start": "2026-04-16T08:00:00-04:00", "notifications": [notification()]}
    providers = {"prov-1": {"fhir_subscriptions": False}, "prov-2": {}}
    scenario = parse_scenario({**base, "providers": providers})
    assert scenario.providers["prov-1"].fhir_subscriptions is False
    assert scenario.providers["prov-2"].fhir_subscriptions is True
    with pytest.raises(ScenarioError, match=r"providers\.prov-1\.fhir_subscriptions"):
        parse_scenario({**base, "providers": {"prov-1": {"fhir_subscriptions": "sometimes"}}})
