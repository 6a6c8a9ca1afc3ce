"""Time matching an unreferenced inbound fax by its sender with N open campaign requests.

    python bench/sender_match.py --open 100000 [--database-url postgresql://...] [--matches 50]

Loads a campaign of N rows (each at its own fictional number), then matches ``--matches``
senders (spelled without the country code) to their requests as the inbound service does
(``services/inbound.py::_by_sender``: one look-up in ``request_numbers``). Prints one line:
``sender_match: open=N matches=M wall_ms=<float> cpu_ms=<float>`` (per match, this process;
the database's own CPU is not counted). The database is ``--database-url``, else
``GOODFAITH_DATABASE_URL``, else a SQLite file in a temporary folder; on PostgreSQL the
schema must be empty or goodfaith's own (it is migrated first).
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from config.settings import Settings
from worker import services
from worker.domain.clock import VirtualClock
from worker.services.inbound import _by_sender
from worker.wiring import InlineDispatcher, build_container

HEADER = "member_id,member_name,birth_date,provider_id,provider_name,fax,request,due_date"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--open", type=int, default=100_000, help="open campaign requests")
    parser.add_argument("--matches", type=int, default=50)
    parser.add_argument("--database-url", default=os.environ.get("GOODFAITH_DATABASE_URL"))
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="gf-sender-match-"))
    settings = Settings(
        database_url=args.database_url or f"sqlite:///{tmp / 'gf.db'}",
        object_store=f"file://{tmp / 'objects'}",
        eoc_library=f"file://{tmp / 'eoc'}",
    )
    clock = VirtualClock(datetime(2026, 4, 17, 13, 0, tzinfo=UTC))
    c = build_container(settings, clock=clock, dispatcher=InlineDispatcher())
    try:
        rows = [HEADER] + [
            f"B{i:07d},Member {i},1970-01-01,clinic-{i},Clinic {i},+1508{i:07d},Charts,2026-05-29"
            for i in range(args.open)
        ]
        services.load_campaign(c, {"name": f"bench {time.time()}", "csv": "\n".join(rows)}, "b")
        senders = [f"508{random.randrange(args.open):07d}" for _ in range(args.matches)]
        wall, cpu = time.perf_counter(), time.process_time()
        for sender in senders:
            with c.sessions() as s:
                if _by_sender(s, sender) is None:
                    raise SystemExit(f"sender_match: {sender} matched nothing")
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    finally:
        c.close()
    n = args.matches
    print(
        f"sender_match: open={args.open} matches={n} "
        f"wall_ms={wall / n * 1000:.2f} cpu_ms={cpu / n * 1000:.2f}"
    )


if __name__ == "__main__":
    main()
