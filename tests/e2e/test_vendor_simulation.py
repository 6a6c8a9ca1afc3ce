"""Retrieval vendors in a simulation (``goodfaith simulate``): escalation moves across FHIR, fax
and the designee's vendor as the outreach policy says; a vendor's certificate of no records
closes a request; a vendor that is down leads to the next channel; callbacks lost, duplicated
and out of order change nothing. Report attempts carry ``channel`` = fax | fhir | vendor."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from simulator.driver import run_simulation
from simulator.scenario import parse_scenario
from tests.conftest import notification


def _provider(pid: str, npi: str, channels: list[dict[str, str]], **extra: Any) -> dict[str, Any]:
    return {
        "provider_id": pid,
        "name": f"Provider {pid}",
        "npi": npi,
        "role": "treating",
        "network": "in",
        "channels": channels,
        **extra,
    }


def test_escalation_reaches_the_designee_vendor_and_vendor_answers_count(
    redis_url: str, tmp_path: Path
) -> None:
    providers = [
        # FHIR server down, fax line busy: the designee's retrieval vendor gets the records
        _provider(
            "prov-esc",
            "1000000012",
            [{"kind": "fhir", "base_url": "sim"}, {"kind": "fax", "number": "+16175550111"}],
            designee={"vendor_id": "roi-1", "name": "Records Retrieval Co."},
        ),
        # reached only through a vendor, which certifies there are no records
        _provider("prov-none", "1000000020", [{"kind": "vendor", "vendor_id": "roi-2"}]),
        # its vendor is down: the fax channel after it answers
        _provider(
            "prov-vdown",
            "1000000038",
            [{"kind": "vendor", "vendor_id": "roi-3"}, {"kind": "fax", "number": "+16175550113"}],
        ),
    ]
    scenario = parse_scenario(
        {
            "start": "2026-04-16T08:00:00-04:00",
            "notifications": [
                notification(
                    notification_id="VENDOR-1",
                    received_at="2026-04-16T09:30:00-04:00",
                    providers=providers,
                )
            ],
            "providers": {
                "prov-esc": {"fhir": "down", "fax": "busy", "vendor": "ok", "pages": 6},
                "prov-none": {"vendor": "no_records", "reply_delay_minutes": 90},
                "prov-vdown": {"vendor": "down", "reply_delay_minutes": 30, "pages": 3},
            },
            "until": "2026-04-24T18:00:00-04:00",
            "duplicate_webhooks": 0.5,
            "drop_webhooks": 0.2,
        }
    )
    assert not scenario.warnings
    result = run_simulation(scenario, workdir=tmp_path, redis_url=redis_url, threads=4)
    assert not result.report.get("intake_errors")
    (case,) = result.report["cases"]
    assert case["status"] == "delivered" and case["on_time"]
    requests = {r["provider_id"]: r for r in case["requests"]}

    esc = requests["prov-esc"]
    channels = [a["channel"] for a in esc["attempts"]]
    assert channels[0] == "fhir" and "fax" in channels and channels[-1] == "vendor"
    assert esc["attempts"][-1]["reason"] == "escalation"
    assert esc["status"] == "fulfilled" and [d["pages"] for d in esc["documents"]] == [6]

    none = requests["prov-none"]
    assert [a["channel"] for a in none["attempts"]] == ["vendor"]
    assert none["status"] == "no_records"

    vdown = requests["prov-vdown"]
    first, second = vdown["attempts"][:2]
    assert (first["channel"], first["outcome"]) == ("vendor", "failed")
    assert (second["channel"], second["reason"]) == ("fax", "escalation")
    assert vdown["status"] == "fulfilled"
    assert {a["channel"] for r in case["requests"] for a in r["attempts"]} <= {
        "fax",
        "fhir",
        "vendor",
    }
