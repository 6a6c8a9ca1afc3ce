"""A simulation split over processes (simulator/shards.py) decides what one process decides:
the same cases, each with the same delivery, on-time verdict and attempts, at the same
virtual instants."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from simulator.demo import bench_scenario
from simulator.driver import run_simulation
from simulator.shards import ShardError, run_sharded


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
