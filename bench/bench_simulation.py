"""Time-compressed simulation benchmark: N cases through the real pipeline on a virtual clock.

Mixed review types (a third expedited), 2–3 providers per case, a third of providers
unresponsive. Prints cases per second of wall time, the on-time rate and where time went, and
ends with exactly one line::

    simulation: cases=N wall_s=<float> on_time=<k> attempts=<k> peak_rss_mb=<float>

(``wall_s``: wall seconds of the whole run; ``peak_rss_mb``: this process's peak resident
memory, the workers being its threads). Run: ``python bench/bench_simulation.py --cases 1000``
(uses GOODFAITH_REDIS_URL or a private Redis, and a SQLite database in a temporary folder).
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
from simulator.driver import run_simulation


def _reap_document_checks(timeout_s: float = 5.0) -> None:
    """Stop the forkserver the document checks fork from, once its children are gone, and
    wait for it, so that RUSAGE_CHILDREN counts their CPU: the checking processes are the
    forkserver's children, not ours, and its CPU reaches us only when we wait for it."""
    import multiprocessing.forkserver as fs

    server = fs._forkserver  # private, but the only handle on it
    pid = getattr(server, "_forkserver_pid", None)
    if pid is None:
        return
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and _children_of(pid):
        time.sleep(0.05)
    server._stop()


def _children_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


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
    args = ap.parse_args()
    configure_logging("WARNING", "console")  # as goodfaith demo: per-step INFO lines cost CPU
    scenario = bench_scenario(args.cases)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
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
    _reap_document_checks()
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)  # the isolated document checks
    peak = own.ru_maxrss / 1024
    print(f"peak RSS              {peak:.0f} MB")
    # CPU, not wall, is what a loaded shared machine leaves comparable from run to run
    print(
        f"CPU                   {own.ru_utime + own.ru_stime:.1f} s (this process), "
        f"{kids.ru_utime + kids.ru_stime:.1f} s (document checks), "
        f"{own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime:.1f} s in all"
    )
    # the one line checks read (keep its form): cases, wall seconds, cases on time, attempts
    print(
        f"simulation: cases={s['cases']} wall_s={wall:.1f} on_time={s['on_time']} "
        f"attempts={s['attempts']} peak_rss_mb={peak:.1f}",
        flush=True,
    )


if __name__ == "__main__":
    main()
