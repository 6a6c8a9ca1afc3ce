"""Time-compressed simulation benchmark: N cases through the real pipeline on a virtual clock.

Mixed review types (a third expedited), 2–3 providers per case, a third of providers
unresponsive. Prints cases per second of wall time, the on-time rate and where time went, and
ends with exactly one line::

    simulation: cases=N wall_s=<float> on_time=<k> attempts=<k> peak_rss_mb=<float>

(``wall_s``: wall seconds of the whole run; ``peak_rss_mb``: peak resident memory in MB, of
this process when it runs the cases itself, else the sum of its shard processes' peaks).
Run: ``python bench/bench_simulation.py --cases 1000``. By default the cases are split over
one process per core (simulator/shards.py), each with its own SQLite database in a temporary
folder; ``--processes 1`` runs them all in this process, and ``--executor dramatiq`` runs them
in this process on workers fed through Redis (GOODFAITH_REDIS_URL or a private Redis).
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
from pathlib import Path

from config.logging import configure_logging
from simulator.demo import bench_scenario
from simulator.driver import SimulationResult, run_simulation
from simulator.shards import (
    ShardedResult,
    cpu_seconds,
    default_processes,
    reap_document_checks,
    run_sharded,
)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cases", type=int, default=200)
    ap.add_argument("--threads", type=int, default=8)
    ap.add_argument(
        "--executor",
        choices=["inprocess", "dramatiq"],
        default="inprocess",
        help="inprocess: the handlers on threads of this process, no broker (nothing polls); "
        "dramatiq: workers on Redis, as goodfaith demo runs",
    )
    ap.add_argument(
        "--processes",
        type=int,
        default=default_processes(),
        help="split the cases over this many processes (default: one per core); "
        "inprocess executor only",
    )
    args = ap.parse_args()
    if args.processes < 1:
        ap.error("--processes must be at least 1")
    configure_logging("WARNING", "console")  # as goodfaith demo: per-step INFO lines cost CPU
    scenario = bench_scenario(args.cases)
    result: SimulationResult
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        if args.processes > 1 and args.executor == "inprocess":
            result = run_sharded(
                scenario, processes=args.processes, workdir=Path(tmp), threads=args.threads
            )
        else:
            result = run_simulation(
                scenario,
                workdir=Path(tmp),
                threads=args.threads,
                redis_url=os.environ.get("GOODFAITH_REDIS_URL"),
                executor=args.executor,
            )
        wall = time.perf_counter() - t0
    s = result.report["summary"]
    reqs = [r for c in result.report["cases"] for r in c["requests"]]
    unresponsive = [r for r in reqs if r["status"] == "unresponsive"]
    print(f"cases                 {s['cases']}")
    print(f"requests              {len(reqs)} ({len(unresponsive)} unresponsive)")
    print(f"attempts documented   {s['attempts']}")
    print(
        f"unresponsive with >=3 {sum(len(r['attempts']) >= 3 for r in unresponsive)}/{len(unresponsive)}"
    )
    print(
        f"on time               {s['on_time']}/{s['cases']} ({100 * s['on_time'] / max(1, s['cases']):.1f}%)"
    )
    print(f"virtual span          {scenario.start.isoformat()} → {s['virtual_until']}")
    print(f"driver steps          {result.steps}")
    print(f"wall                  {wall:.1f} s")
    print(f"cases per second      {s['cases'] / wall:.2f}")
    # CPU, not wall, is what a loaded shared machine leaves comparable from run to run
    if isinstance(result, ShardedResult) and result.shards:
        for k, f in enumerate(result.shards):
            print(
                f"shard {k}               {f.cases} cases, {f.wall_s:.1f} s wall, {f.steps} steps, "
                f"CPU {f.cpu_s:.1f} s + {f.checks_cpu_s:.1f} s (document checks), "
                f"peak RSS {f.peak_rss_mb:.0f} MB"
            )
        own_cpu = sum(f.cpu_s for f in result.shards)
        checks_cpu = sum(f.checks_cpu_s for f in result.shards)
        peak = result.peak_rss_mb
        where = f"{len(result.shards)} processes"
    else:
        reap_document_checks()
        own_cpu = cpu_seconds(resource.RUSAGE_SELF)
        checks_cpu = cpu_seconds(resource.RUSAGE_CHILDREN)  # the isolated document checks
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        where = "this process"
    print(f"peak RSS              {peak:.0f} MB")
    print(
        f"CPU                   {own_cpu:.1f} s ({where}), {checks_cpu:.1f} s (document checks), "
        f"{own_cpu + checks_cpu:.1f} s in all"
    )
    # the one line checks read (keep its form): cases, wall seconds, cases on time, attempts
    print(
        f"simulation: cases={s['cases']} wall_s={wall:.1f} on_time={s['on_time']} "
        f"attempts={s['attempts']} peak_rss_mb={peak:.1f}",
        flush=True,
    )


if __name__ == "__main__":
    main()
