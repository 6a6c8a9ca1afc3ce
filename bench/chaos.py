"""Chaos benchmark: do the production processes keep every case whole through crashes and
outages?

Runs ``--cases`` cases of the demo mix (standard and expedited reviews, fax and FHIR
providers, busy lines, designees, silent providers) through ``goodfaith api``, ``worker`` and
``scheduler`` as separate processes on PostgreSQL and a Redis server of the run's own, with an
S3 object store (moto) and the simulator as the far side, on a shared virtual clock. Meanwhile
it kills worker pools, worker processes, the scheduler and the API with ``kill -9``, flushes
Redis once and kills and restarts it once, terminates every database connection three times,
makes uploads fail for a while and loses a fifth of the fax status webhooks (simulator/chaos.py
says how). It ends with exactly one line on stdout (progress and every problem on stderr)::

    chaos: cases=N delivered_on_time=<k> lost=<k> duplicate_sends=<k> documented_attempts=<k>

- delivered_on_time: cases whose first packet reached the agency by the legal due time.
- lost: cases never delivered (nor cancelled) when the run ended.
- duplicate_sends: transmissions the far side received more than once (its fax API does not
  honour idempotency keys in this run, so a repeated send shows as a second fax).
- documented_attempts: attempts with a recorded transmission in the attempt log.
The exit status is 1 when anything was lost, late, sent twice or sent without a record.

It DROPS AND RECREATES the schema of ``--database-url``: give it a database of its own.

Example (this machine: 2 cores)::

    python bench/chaos.py --cases 200 --database-url postgresql://postgres@127.0.0.1:5432/gf_chaos
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from simulator.chaos import NO_FAULTS, Faults, run_chaos


def _log(msg: str) -> None:
    print(f"[chaos {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--cases", type=int, default=200)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--database-url", default=os.environ.get("GOODFAITH_CHAOS_DATABASE_URL"))
    ap.add_argument(
        "--workers", action="append", help="a worker pool, PROCESSESxTHREADS (default: 2x4)"
    )
    ap.add_argument("--no-faults", action="store_true", help="the same run without faults")
    ap.add_argument("--max-seconds", type=float, default=3600.0, help="bound on the run (wall)")
    ap.add_argument("--workdir", type=Path, help="keep the processes' logs here")
    args = ap.parse_args()
    if not args.database_url:
        ap.error("give --database-url (its schema is dropped and recreated)")
    if urlsplit(args.database_url).hostname not in ("127.0.0.1", "localhost", "::1"):
        ap.error("--database-url must be on this machine (loopback)")
    import logging

    from config.logging import configure_logging

    configure_logging("WARNING", "console")  # the far side's own logs: warnings only
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto's S3 request lines
    faults = NO_FAULTS if args.no_faults else Faults()
    result = run_chaos(
        args.cases,
        database_url=args.database_url,
        faults=faults,
        seed=args.seed,
        workers=tuple(args.workers or ["2x4"]),
        max_wall_s=args.max_seconds,
        workdir=args.workdir,
        log=_log,
    )
    for problem in result.problems:
        _log(f"problem: {problem}")
    _log(
        f"faults {dict(result.faults)}, restarts {dict(result.restarts)}, "
        f"webhooks dropped {result.dropped_webhooks}, answers never taken in {result.lost_replies}, late {result.delivered_late}, "
        f"undocumented sends {result.undocumented_sends}, steps {result.steps}, "
        f"wall {result.wall_s:.0f} s"
    )
    print(result.line(), flush=True)
    sys.exit(0 if result.ok else 1)


if __name__ == "__main__":
    main()
