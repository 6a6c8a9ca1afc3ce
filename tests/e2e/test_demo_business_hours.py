"""Reasonable timing, end to end: in a `goodfaith demo` run, no standard-review attempt goes
out outside the provider's business hours when its window allowed three business windows, and
the report says, per request, how many windows it had and whether the standard was met."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from config.jurisdictions import get_jurisdiction
from simulator.demo import demo_scenario
from simulator.driver import run_simulation


def test_demo_standard_attempts_fall_in_business_hours(tmp_path: Path) -> None:
    """24 demo cases (standard and expedited, busy lines, designees, silent providers): every
    standard-review attempt whose window had >= 3 business windows was sent within business
    hours; every request reports business_windows and standard_met; all delivered on time."""
    # the handlers on threads of this process (the executor is not what is checked here;
    # tests/e2e/test_simulation_executors.py keeps both executors giving the same results)
    result = run_simulation(demo_scenario(24), workdir=tmp_path, executor="inprocess")
    report = result.report
    assert report["summary"]["on_time"] == report["summary"]["cases"] == 24
    ma = get_jurisdiction("MA")
    checked = 0
    outside = []
    for case in report["cases"]:
        for r in case["requests"]:
            assert isinstance(r["business_windows"], int)
            assert isinstance(r["standard_met"], bool)
            if r["status"] == "unresponsive":
                assert r["standard_met"] is True and r["attempts_before_cutoff"] >= 3
            if case["review_type"] != "standard" or r["business_windows"] < 3:
                continue
            for a in r["attempts"]:
                sent = datetime.fromisoformat(a["sent_at"])
                assert sent.utcoffset() is not None and a["channel"] in ("fax", "fhir", "vendor")
                checked += 1
                if not ma.calendar.within_business_hours(sent):
                    outside.append((case["notification_id"], r["provider_id"], a["number"], sent))
    assert checked > 24  # the demo's standard cases made attempts to check
    assert outside == []
