"""`goodfaith simulate` with a fax-only agency: the packet goes by fax through the run's fax
vendor (Telnyx or Sinch far side), the agency's line is busy for its first calls, a share of
status webhooks is lost, and still each case is delivered on time, confirmed by the vendor, and
the agency's machine printed the whole packet under a cover sheet that states it. A third agency
refuses our uploads (403) and names a fallback fax: its packet goes there."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from storage.db import make_engine
from storage.models import AuditEvent, Case, Delivery, Packet
from tests.conftest import notification

GOODFAITH = str(Path(sys.executable).parent / "goodfaith")
AGENCY_FAX = "+16175550199"
FALLBACK_FAX = "+16175550198"


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
    return {
        "start": "2026-04-16T08:00:00-04:00",
        "notifications": [
            notification(
                notification_id="FAXAG-STD",
                received_at="2026-04-16T09:30:00-04:00",
                agency_id="agency-fax",
                providers=[_provider("prov-1", "+16175550101")],
            ),
            notification(
                notification_id="FAXAG-EXP",
                received_at="2026-04-16T10:00:00-04:00",
                review_type="expedited",
                agency_id="agency-fax",
                providers=[_provider("prov-2", "+16175550102")],
            ),
            notification(
                notification_id="FAXAG-FALLBACK",
                received_at="2026-04-16T11:00:00-04:00",
                agency_id="agency-fallback",
                providers=[_provider("prov-3", "+16175550103")],
            ),
        ],
        "providers": {
            "prov-1": {"respond_after_attempts": 1, "reply_delay_minutes": 90, "pages": 5},
            "prov-2": {"respond_after_attempts": 1, "reply_delay_minutes": 30, "pages": 3},
            "prov-3": {"respond_after_attempts": 1, "reply_delay_minutes": 60, "pages": 2},
        },
        "agencies": {
            "agency-fax": {
                "transport": "fax",
                "fax_number": AGENCY_FAX,
                "busy_first": 2,
                "name": "Fax-only Review Co",
            },
            "agency-fallback": {"uploads": "refused", "fallback_fax_number": FALLBACK_FAX},
        },
        "drop_webhooks": 0.3,
        "until": "2026-04-24T18:00:00-04:00",
    }


@pytest.mark.parametrize("vendor", ["telnyx", "sinch"])
def test_a_fax_only_agency_gets_the_whole_packet_on_time(
    vendor: str, tmp_path: Path, redis_url: str
) -> None:
    """Both cases are delivered on time, each packet confirmed by the vendor (its webhook, or a
    status check when the webhook was lost), after the busy line was retried; the agency
    printed one fax per packet, whose cover states its page count (cover included) and the
    packet's SHA-256, and whose pages are all there."""
    scenario = tmp_path / "scenario.json"
    scenario.write_text(json.dumps(_scenario()))
    env = {k: v for k, v in os.environ.items() if not k.startswith("GOODFAITH_")}
    env["GOODFAITH_REDIS_URL"] = redis_url
    env["GOODFAITH_FAX__VENDOR"] = vendor
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
    for nid in ("FAXAG-STD", "FAXAG-EXP", "FAXAG-FALLBACK"):
        assert cases[nid]["status"] == "delivered" and cases[nid]["on_time"], nid

    engine = make_engine(f"sqlite:///{tmp_path / 'run' / 'goodfaith.db'}")
    with engine.connect() as db:
        packets = {
            nid: (sha, pages)
            for nid, sha, pages in db.execute(
                select(Case.notification_id, Packet.sha256, Packet.pages).join(
                    Packet, Packet.case_id == Case.id
                )
            )
        }
        deliveries = list(
            db.execute(select(Delivery.status, Delivery.transmissions, Delivery.vendor))
        )
        attention = dict(db.execute(select(Case.notification_id, Case.attention)).all())
        delivered_via = [
            detail["via"]
            for (detail,) in db.execute(
                select(AuditEvent.detail).where(AuditEvent.kind == "packet.delivered")
            )
        ]
    engine.dispose()
    assert set(packets) == {"FAXAG-STD", "FAXAG-EXP", "FAXAG-FALLBACK"}
    assert {status for status, _, _ in deliveries} == {"delivered"}
    assert {v for _, _, v in deliveries} == {vendor}
    # the line was busy for its first two calls: those transmissions were retried
    assert sum(n for _, n, _ in deliveries) == len(deliveries) + 2
    assert set(delivered_via) <= {"webhook", "status check"} and len(delivered_via) == 3
    # the refused upload fell back to the fax, and the case says so for ops
    assert "packet sent by fallback fax" in (attention["FAXAG-FALLBACK"] or "")

    faxes = report["agency_faxes"]
    assert sorted((f["cover_reference"], f["agency_id"]) for f in faxes) == [
        ("FAXAG-EXP", "agency-fax"),
        ("FAXAG-FALLBACK", "agency-fallback"),
        ("FAXAG-STD", "agency-fax"),
    ]
    for fax in faxes:
        sha, pages = packets[fax["cover_reference"]]
        assert fax["cover_sha256"] == sha
        assert fax["cover_packet_pages"] == pages
        assert fax["pages"] == fax["cover_pages"] == pages + 1
