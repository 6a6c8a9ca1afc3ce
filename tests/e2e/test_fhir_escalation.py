"""Escalation across channels in a simulation: providers' FHIR servers that reject, fail or are
down (scenario ``"fhir"`` behaviours) lead to the next channel, as the outreach policy says;
one that works answers over FHIR. Report attempts carry their ``channel``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from simulator.driver import run_simulation
from simulator.scenario import parse_scenario
from tests.conftest import notification


def _provider(pid: str, npi: str, fax: str | None) -> dict[str, Any]:
    channels: list[dict[str, str]] = [{"kind": "fhir", "base_url": "sim"}]
    if fax:
        channels.append({"kind": "fax", "number": fax})
    return {
        "provider_id": pid,
        "name": f"Provider {pid}",
        "npi": npi,
        "role": "treating",
        "network": "in",
        "channels": channels,
    }


def test_fhir_refusals_escalate_to_fax_and_a_working_server_answers(
    redis_url: str, tmp_path: Path
) -> None:
    """prov-rej rejects Tasks, prov-fail fails them, prov-down's server is down: each first
    attempt goes over FHIR and fails, the next goes by fax and their records come back by fax.
    prov-ok answers its Task over FHIR. Half of the fax webhooks come twice: no document is
    taken twice. The case is delivered on time."""
    providers = [
        _provider("prov-rej", "1000000012", "+16175550111"),
        _provider("prov-fail", "1000000020", "+16175550112"),
        _provider("prov-down", "1000000038", "+16175550113"),
        _provider("prov-ok", "1000000004", None),
    ]
    scenario = parse_scenario(
        {
            "start": "2026-04-16T08:00:00-04:00",
            "notifications": [
                notification(
                    notification_id="FHIR-1",
                    received_at="2026-04-16T09:30:00-04:00",
                    providers=providers,
                )
            ],
            "providers": {
                "prov-rej": {"fhir": "rejects", "reply_delay_minutes": 30},
                "prov-fail": {"fhir": "fails", "reply_delay_minutes": 30},
                "prov-down": {"fhir": "down", "reply_delay_minutes": 30},
                "prov-ok": {"fhir": "ok", "reply_delay_minutes": 30, "pages": 4},
            },
            "until": "2026-04-24T18:00:00-04:00",
            "duplicate_webhooks": 0.5,  # Telnyx delivers some webhooks twice
        }
    )
    result = run_simulation(scenario, workdir=tmp_path, redis_url=redis_url, threads=4)
    assert not result.report.get("intake_errors")
    (case,) = result.report["cases"]
    assert case["status"] == "delivered" and case["on_time"]
    requests = {r["provider_id"]: r for r in case["requests"]}
    for pid in ("prov-rej", "prov-fail", "prov-down"):
        r = requests[pid]
        first, second = r["attempts"][0], r["attempts"][1]
        assert (first["channel"], first["outcome"]) == ("fhir", "failed"), pid
        assert (second["channel"], second["reason"]) == ("fax", "escalation"), pid
        assert r["status"] == "fulfilled", pid
        assert len(r["documents"]) == 1, pid
    ok = requests["prov-ok"]
    assert [a["channel"] for a in ok["attempts"]] == ["fhir"]
    assert ok["status"] == "fulfilled"
    assert [d["pages"] for d in ok["documents"]] == [4]
