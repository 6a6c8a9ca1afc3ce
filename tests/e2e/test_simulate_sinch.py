"""`goodfaith simulate` with GOODFAITH_FAX__VENDOR=sinch: every fax goes through the Sinch Fax
API v3 far side (its wire format, Basic-authenticated callbacks), with its failure modes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from sqlalchemy import select

from storage.db import make_engine
from storage.models import Attempt
from tests.conftest import notification

GOODFAITH = str(Path(sys.executable).parent / "goodfaith")


def _provider(pid: str, fax: str, **extra: Any) -> dict[str, Any]:
    return {
        "provider_id": pid,
        "name": f"Provider {pid}",
        "npi": "1234567893",
        "role": "treating",
        "network": "in",
        "channels": [{"kind": "fax", "number": fax}],
        **extra,
    }


def _scenario() -> dict[str, Any]:
    designee = {
        "vendor_id": "vendor-9",
        "name": "Retrieval Co",
        "channels": [{"kind": "fax", "number": "+17815550103"}],
    }
    return {
        "start": "2026-04-16T08:00:00-04:00",
        "notifications": [
            notification(
                notification_id="SINCH-STD",
                received_at="2026-04-16T09:30:00-04:00",
                providers=[
                    _provider("prov-1", "+16175550101"),
                    _provider("prov-3", "+16175550103", designee=designee),
                ],
            ),
            notification(
                notification_id="SINCH-EXP",
                received_at="2026-04-16T10:00:00-04:00",
                review_type="expedited",
                providers=[_provider("prov-2", "+16175550102")],
            ),
        ],
        "providers": {
            "prov-1": {"respond_after_attempts": 1, "reply_delay_minutes": 90, "pages": 5},
            "prov-2": {"respond_after_attempts": None},
            "prov-3": {"fax": "busy"},
            "vendor-9": {"respond_after_attempts": 1, "pages": 6},
        },
        "drop_webhooks": 0.3,
        "duplicate_webhooks": 0.5,
        "throttle": 0.1,
        "until": "2026-04-24T18:00:00-04:00",
    }


def test_simulate_runs_end_to_end_on_sinch(tmp_path: Path, redis_url: str) -> None:
    """Both cases are delivered on time; every attempt went through Sinch; prov-1's records came
    back as an INCOMING_FAX and were accepted; prov-3's busy line was redialled and escalated to
    its designee, whose records came back; the silent provider got three attempts, though a
    share of Sinch's callbacks was lost, half were delivered twice and a tenth of its API
    requests were answered 429."""
    scenario = tmp_path / "scenario.json"
    scenario.write_text(json.dumps(_scenario()))
    env = {k: v for k, v in os.environ.items() if not k.startswith("GOODFAITH_")}
    env["GOODFAITH_REDIS_URL"] = redis_url
    env["GOODFAITH_FAX__VENDOR"] = "sinch"
    proc = subprocess.run(
        [
            GOODFAITH,
            "simulate",
            str(scenario),
            "--json",
            str(tmp_path / "report.json"),
            "--workdir",
            str(tmp_path / "run"),
            "--quiet",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((tmp_path / "report.json").read_text())
    cases = {c["notification_id"]: c for c in report["cases"]}
    for nid in ("SINCH-STD", "SINCH-EXP"):
        assert cases[nid]["status"] == "delivered" and cases[nid]["on_time"], nid

    engine = make_engine(f"sqlite:///{tmp_path / 'run' / 'goodfaith.db'}")
    with engine.connect() as db:
        vendors = list(db.scalars(select(Attempt.vendor)))
    engine.dispose()
    assert vendors and set(vendors) == {"sinch"}

    requests = {r["provider_id"]: r for c in cases.values() for r in c["requests"]}
    answered = requests["prov-1"]
    assert answered["status"] == "fulfilled"
    assert [(d["status"], d["pages"]) for d in answered["documents"]] == [("accepted", 5)]
    busy = requests["prov-3"]
    first, second = busy["attempts"][0], busy["attempts"][1]
    assert first["outcome"] == "failed" and first["transmissions"] >= 2
    assert first["failure_reason"] == "CALL_ERROR:17"
    assert second["designee"] is True and second["destination"] == "+17815550103"
    assert busy["status"] == "fulfilled"
    silent = requests["prov-2"]
    assert silent["status"] == "unresponsive" and len(silent["attempts"]) >= 3
    assert all(a["channel"] == "fax" for r in requests.values() for a in r["attempts"])
