"""Lost webhooks in a whole simulation: with 30% of the carrier's outbound status webhooks
lost, every case is still delivered on time and every attempt ends delivered or failed, none
left ``sent`` (the status checks read what the webhooks did not say)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, select

from simulator.driver import run_simulation
from simulator.scenario import parse_scenario
from storage.models import Attempt, AuditEvent
from tests.conftest import notification


def _provider(pid: str, fax: str) -> dict[str, Any]:
    return {
        "provider_id": pid,
        "name": f"Provider {pid}",
        "npi": "1234567893",
        "role": "treating",
        "network": "in",
        "channels": [{"kind": "fax", "number": fax}],
    }


def test_thirty_percent_of_webhooks_lost_every_case_on_time_no_attempt_stuck(
    tmp_path: Path, redis_url: str
) -> None:
    """Given a carrier losing 30% of outbound status webhooks, when the scenario runs, then
    every case is delivered on time, no attempt is left sent or pending, some deliveries were
    learnt by a status check, and no attempt sent more faxes than it counted."""
    providers = [_provider(f"prov-{n}", f"+1617555010{n}") for n in range(1, 5)]
    notifications = [
        notification(
            notification_id=f"LOSSY-{k}",
            received_at=f"2026-04-16T{9 + k:02d}:00:00-04:00",
            providers=providers,
        )
        for k in range(3)
    ]
    scenario = parse_scenario(
        {
            "start": "2026-04-16T08:00:00-04:00",
            "notifications": notifications,
            "providers": {
                "prov-1": {"respond_after_attempts": 1, "reply_delay_minutes": 90},
                "prov-2": {"respond_after_attempts": 2},
                "prov-3": {"respond_after_attempts": None},
                "prov-4": {"fax": "busy", "respond_after_attempts": None},
            },
            "until": "2026-04-24T18:00:00-04:00",
            "drop_webhooks": 0.3,
        }
    )
    result = run_simulation(scenario, workdir=tmp_path / "run", redis_url=redis_url, threads=4)
    cases = result.report["cases"]
    assert len(cases) == 3
    for case in cases:
        assert case["status"] == "delivered" and case["on_time"], case["notification_id"]
    engine = create_engine(f"sqlite:///{tmp_path / 'run' / 'goodfaith.db'}")
    try:
        with engine.connect() as conn:
            attempts = conn.execute(select(Attempt.outcome, Attempt.transmissions)).all()
            via = [
                detail.get("via")
                for (detail,) in conn.execute(
                    select(AuditEvent.detail).where(AuditEvent.kind == "attempt.delivered")
                )
            ]
    finally:
        engine.dispose()
    assert attempts and {outcome for outcome, _ in attempts} <= {"delivered", "failed"}
    assert "status check" in via  # lost fax.delivered webhooks were made good
    assert result.submissions == 3
