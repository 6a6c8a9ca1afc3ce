"""Splitting a scenario into shards of independent cases (simulator/shards.py), and joining
the shards' reports."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from simulator.demo import bench_scenario, demo_scenario
from simulator.scenario import AgencyBehaviour, Scenario
from simulator.shards import join_reports, split_scenario

START = datetime(2026, 4, 14, 12, 0, tzinfo=UTC)


def _n(nid: str, member: str, *providers: dict[str, Any], agency: str = "agency-a") -> dict:
    return {
        "notification_id": nid,
        "received_at": (START + timedelta(minutes=int(nid[1:]))).isoformat(),
        "agency_id": agency,
        "insured": {"member_id": member},
        "providers": list(providers),
    }


def _p(pid: str, number: str, **extra: Any) -> dict[str, Any]:
    return {"provider_id": pid, "channels": [{"kind": "fax", "number": number}], **extra}


def _scenario(*notifications: dict[str, Any], **kw: Any) -> Scenario:
    return Scenario(START, list(notifications), {}, START + timedelta(days=14), **kw)


def _ids(parts: list[Scenario]) -> list[set[str]]:
    return [{n["notification_id"] for n in part.notifications} for part in parts]


def test_cases_that_share_a_member_provider_or_line_stay_in_one_shard() -> None:
    scenario = _scenario(
        _n("n1", "M1", _p("a", "+16175550101")),
        _n("n2", "M1", _p("b", "+16175550102")),  # same member as n1: coalescing
        _n("n3", "M3", _p("c", "+16175550103")),
        _n("n4", "M4", _p("d", "+16175550103")),  # same fax number as n3
        _n("n5", "M5", _p("e", "+16175550105", npi="1234567893")),
        _n("n6", "M6", _p("f", "+16175550106", npi="1234567893")),  # same NPI as n5
        _n("n7", "M7", _p("g", "+16175550107", designee={"vendor_id": "v1"})),
        _n(
            "n8",
            "M8",
            _p("h", "+16175550108"),
            _p("x", "+1617555019", designee={"vendor_id": "v1"}),
        ),
        _n("n9", "M9", _p("i", "+16175550109")),
    )
    parts = split_scenario(scenario, 8)
    groups = _ids(parts)
    for together in ({"n1", "n2"}, {"n3", "n4"}, {"n5", "n6"}, {"n7", "n8"}):
        assert any(together <= g for g in groups), (together, groups)
    assert sorted(n for g in groups for n in g) == [f"n{k}" for k in range(1, 10)]
    assert len(parts) == 5  # five independent groups: no empty shard
    for part in parts:  # each keeps the scenario's frame
        assert (part.start, part.until, part.providers) == (START, scenario.until, {})


def test_shards_are_balanced_and_keep_the_order_of_receipt() -> None:
    scenario = bench_scenario(40)
    parts = split_scenario(scenario, 3)
    assert [len(p.notifications) for p in parts] in ([14, 13, 13], [13, 14, 13], [13, 13, 14])
    for part in parts:
        got = [n["notification_id"] for n in part.notifications]
        order = [
            n["notification_id"] for n in scenario.notifications if n["notification_id"] in got
        ]
        assert got == order


def test_an_agency_fax_line_keeps_its_cases_together_an_upload_endpoint_does_not() -> None:
    notes = [
        _n(f"n{k}", f"M{k}", _p(f"p{k}", f"+161755501{k:02d}"), agency=f"ag-{k % 2}")
        for k in range(6)
    ]
    upload = split_scenario(_scenario(*notes), 6)
    assert len(upload) == 6
    fax = split_scenario(
        _scenario(
            *notes, agencies={"ag-0": AgencyBehaviour(transport="fax", fax_number="+16175559999")}
        ),
        6,
    )
    assert {"n0", "n2", "n4"} in _ids(fax)
    assert len(fax) == 4
    fallback = split_scenario(
        _scenario(*notes, agencies={"ag-1": AgencyBehaviour(fallback_fax_number="+16175559998")}),
        6,
    )
    assert {"n1", "n3", "n5"} in _ids(fallback)


@pytest.mark.parametrize("share", ["drop_webhooks", "duplicate_webhooks", "throttle"])
def test_run_wide_shares_keep_the_scenario_whole(share: str) -> None:
    scenario = replace(bench_scenario(6), **{share: 0.1})
    assert split_scenario(scenario, 4) == [scenario]


def test_the_demo_designees_share_their_vendor() -> None:
    scenario = demo_scenario(12)
    with_vendor = {
        n["notification_id"]
        for n in scenario.notifications
        if any((p.get("designee") or {}).get("vendor_id") for p in n["providers"])
    }
    assert len(with_vendor) > 1
    assert any(with_vendor <= g for g in _ids(split_scenario(scenario, 12)))


def test_one_shard_or_fewer_than_one() -> None:
    scenario = bench_scenario(4)
    assert split_scenario(scenario, 1) == [scenario]
    with pytest.raises(ValueError, match="at least 1"):
        split_scenario(scenario, 0)


def _report(cases: list[tuple[str, str, bool]], until: str, **extra: Any) -> dict[str, Any]:
    out = [
        {"notification_id": nid, "received_at": at, "on_time": on_time, "requests": []}
        for nid, at, on_time in cases
    ]
    return {
        "cases": out,
        "summary": {
            "cases": len(out),
            "on_time": sum(c[2] for c in cases),
            "late": sum(not c[2] for c in cases),
            "attempts": 3 * len(out),
            "cases_with_warnings": 1,
            "virtual_until": until,
        },
        **extra,
    }


def test_joined_report_orders_cases_by_receipt_and_adds_up() -> None:
    a = _report(
        [("n2", "2026-04-14T09:00:00-04:00", True), ("n4", "2026-04-14T15:00:00+00:00", False)],
        "2026-04-20T12:00:00+00:00",
        intake_errors=["n9: bad"],
    )
    b = _report([("n3", "2026-04-14T12:30:00+00:00", True)], "2026-04-20T09:00:00-04:00")
    joined = join_reports([a, b], _scenario(warnings=["provider key 'zz' names no provider"]))
    # 09:00-04:00 is 13:00 UTC: after n3's 12:30 UTC, though its text sorts first
    assert [c["notification_id"] for c in joined["cases"]] == ["n3", "n2", "n4"]
    assert joined["summary"] == {
        "cases": 3,
        "on_time": 2,
        "late": 1,
        "attempts": 9,
        "cases_with_warnings": 2,
        "virtual_until": "2026-04-20T09:00:00-04:00",  # 13:00 UTC, the later one
    }
    assert joined["intake_errors"] == ["n9: bad"]
    assert "agency_faxes" not in joined
    assert joined["scenario_warnings"] == ["provider key 'zz' names no provider"]


def test_default_processes_is_one_per_core_within_bounds(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    from simulator import shards

    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: set(range(2)))
    assert shards.default_processes() == 2
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: set(range(64)))
    assert shards.default_processes() == shards.MAX_DEFAULT_PROCESSES


def test_groups_are_dealt_by_instant_of_receipt_across_offsets() -> None:
    """09:00-04:00 (13:00 UTC) arrives after 12:30 UTC though its text sorts first: dealt
    by instant, the three cases go to shards 0, 1, 0 in the order 12:30Z, 13:00Z, 14:00Z."""
    notes = [_n(f"n{k}", f"M{k}", _p(f"p{k}", f"+161755503{k:02d}")) for k in range(3)]
    notes[0]["received_at"] = "2026-04-14T09:00:00-04:00"  # 13:00 UTC
    notes[1]["received_at"] = "2026-04-14T12:30:00+00:00"
    notes[2]["received_at"] = "2026-04-14T14:00:00+00:00"
    assert _ids(split_scenario(_scenario(*notes), 2)) == [{"n1", "n2"}, {"n0"}]
