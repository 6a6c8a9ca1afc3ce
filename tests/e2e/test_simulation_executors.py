"""The simulation's two executors decide the same: the in-process pool (the benchmark's
default) and dramatiq workers on Redis (the production path) give every case the same
delivery, on-time verdict and attempts on the benchmark's own scenario."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from simulator.demo import bench_scenario
from simulator.driver import run_simulation


def _decisions(report: dict[str, Any]) -> dict[str, Any]:
    """What the pipeline decided per case: status, on time, and per provider its request's
    status and attempts (number, channel, outcome)."""
    return {
        case["notification_id"]: (
            case["status"],
            case["on_time"],
            sorted(
                (
                    r["provider_id"],
                    r["status"],
                    [(a["number"], a["channel"], a["outcome"]) for a in r["attempts"]],
                )
                for r in case["requests"]
            ),
        )
        for case in report["cases"]
    }


def test_inprocess_and_dramatiq_executors_give_the_same_results(
    redis_url: str, tmp_path: Path
) -> None:
    """Eight cases of the benchmark's mix (a third of providers never answer) through each
    executor: the same on-time count, attempts and per-case decisions."""
    reports = {
        executor: run_simulation(
            bench_scenario(8),
            workdir=tmp_path / executor,
            redis_url=redis_url,
            threads=4,
            executor=executor,
        ).report
        for executor in ("inprocess", "dramatiq")
    }
    inprocess, dramatiq = reports["inprocess"], reports["dramatiq"]
    assert inprocess["summary"]["cases"] == 8
    assert inprocess["summary"]["on_time"] == dramatiq["summary"]["on_time"] == 8
    assert inprocess["summary"]["attempts"] == dramatiq["summary"]["attempts"]
    assert _decisions(inprocess) == _decisions(dramatiq)
