"""A simulation split over processes (simulator/shards.py) decides what one process decides:
the same cases, each with the same delivery, on-time verdict and attempts, at the same
virtual instants."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from simulator.demo import bench_scenario
from simulator.driver import run_simulation
from simulator.shards import ShardError, run_sharded
from tests.conftest import notification

GOODFAITH = str(Path(sys.executable).parent / "goodfaith")


def _decisions(report: dict[str, Any]) -> dict[str, Any]:
    """Per case: status, on time, when delivered, and per provider its request's status and
    attempts (number, channel, outcome, when sent)."""
    return {
        case["notification_id"]: (
            case["status"],
            case["on_time"],
            case["delivered_at"],
            sorted(
                (
                    r["provider_id"],
                    r["status"],
                    [
                        (a["number"], a["channel"], a["outcome"], a["sent_at"])
                        for a in r["attempts"]
                    ],
                )
                for r in case["requests"]
            ),
        )
        for case in report["cases"]
    }


def test_two_processes_decide_what_one_decides(tmp_path: Path) -> None:
    scenario = bench_scenario(10)
    whole = run_simulation(scenario, workdir=tmp_path / "whole", threads=4, executor="inprocess")
    split = run_sharded(scenario, processes=2, workdir=tmp_path / "split", threads=4)
    assert split.shards is not None and len(split.shards) == 2
    assert sum(f.cases for f in split.shards) == 10
    assert all(f.cpu_s > 0 and f.peak_rss_mb > 0 and f.steps > 0 for f in split.shards)
    assert split.peak_rss_mb == pytest.approx(sum(f.peak_rss_mb for f in split.shards))
    assert split.report["summary"] == {
        **whole.report["summary"],
        "wall_seconds": split.report["summary"]["wall_seconds"],
    }
    assert split.report["summary"]["on_time"] == 10
    assert [c["notification_id"] for c in split.report["cases"]] == [
        c["notification_id"] for c in whole.report["cases"]
    ]
    assert _decisions(split.report) == _decisions(whole.report)
    # each shard kept its own database and objects under the run's folder
    assert sorted(p.name for p in (tmp_path / "split").iterdir()) == ["shard-0", "shard-1"]
    assert split.submissions == whole.submissions == 10


def test_a_failing_shard_fails_the_run_with_its_traceback(tmp_path: Path) -> None:
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the shards' folders would go")
    with pytest.raises(ShardError, match=r"(?s)shard \d failed:\n.*NotADirectoryError"):
        run_sharded(bench_scenario(4), processes=2, workdir=blocked, threads=2)


def test_an_unknown_fax_vendor_is_refused_before_any_process_starts(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="fax_vendor must be one of"):
        run_sharded(bench_scenario(2), processes=2, workdir=tmp_path, fax_vendor="nope")
    assert list(tmp_path.iterdir()) == []


def _cli_scenario() -> dict[str, Any]:
    """Four cases of four members, each with its own provider: four independent groups. Two
    answer their first request, one only its second, one never."""
    behaviours = [
        {"respond_after_attempts": 1, "reply_delay_minutes": 60, "pages": 3},
        {"respond_after_attempts": 2, "reply_delay_minutes": 30, "pages": 2},
        {"respond_after_attempts": None},
        {"respond_after_attempts": 1, "reply_delay_minutes": 120, "pages": 5},
    ]
    notes = [
        notification(
            notification_id=f"SHARD-{k}",
            received_at=f"2026-04-16T{9 + k:02d}:00:00-04:00",
            review_type="expedited" if k == 3 else "standard",
            insured={
                "member_id": f"M20{k}",
                "name": f"Member {k}",
                "birth_date": f"1970-01-0{k + 1}",
            },
            providers=[
                {
                    "provider_id": f"prov-{k}",
                    "name": f"Provider {k}",
                    "role": "treating",
                    "network": "in",
                    "channels": [{"kind": "fax", "number": f"+1617555020{k}"}],
                }
            ],
        )
        for k in range(4)
    ]
    return {
        "start": "2026-04-16T08:00:00-04:00",
        "notifications": notes,
        "providers": {f"prov-{k}": b for k, b in enumerate(behaviours)},
    }


def test_goodfaith_simulate_splits_over_processes_and_shows_progress(tmp_path: Path) -> None:
    scenario = tmp_path / "scenario.json"
    scenario.write_text(json.dumps(_cli_scenario()))
    env = {k: v for k, v in os.environ.items() if not k.startswith("GOODFAITH_")}
    proc = subprocess.run(
        [
            GOODFAITH,
            "simulate",
            str(scenario),
            "--processes",
            "2",
            "--json",
            str(tmp_path / "r.json"),
            "--workdir",
            str(tmp_path / "run"),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((tmp_path / "r.json").read_text())
    assert "intake_errors" not in report
    assert report["summary"]["cases"] == report["summary"]["on_time"] == 4
    assert [c["notification_id"] for c in report["cases"]] == [f"SHARD-{k}" for k in range(4)]
    attempts = {c["notification_id"]: len(c["requests"][0]["attempts"]) for c in report["cases"]}
    assert attempts["SHARD-0"] == 1 and attempts["SHARD-1"] == 2 and attempts["SHARD-2"] >= 3
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["shard-0", "shard-1"]
    # the progress lines add the shards up; the last one has every case delivered
    lines = [line for line in proc.stderr.splitlines() if "cases=" in line]
    assert lines and "cases=4 delivered=4" in lines[-1], proc.stderr[-2000:]
    assert "4 cases, 4 on time, 0 late" in proc.stdout


def test_goodfaith_simulate_refuses_processes_with_rabbitmq(tmp_path: Path) -> None:
    scenario = tmp_path / "scenario.json"
    scenario.write_text(json.dumps(_cli_scenario()))
    proc = subprocess.run(
        [GOODFAITH, "simulate", str(scenario), "--processes", "2", "--broker", "rabbitmq"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "drop --broker rabbitmq" in proc.stderr
    assert not (tmp_path / "var").exists()
