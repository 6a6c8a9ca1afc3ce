"""Time loading a campaign: N rows of CSV checked, then stored in one transaction.

    python bench/campaign_load.py --rows 100000 [--database-url postgresql://...]

Prints one line: ``campaign_load: rows=N check_s=<float> store_s=<float> rows_per_s=<float>``
(``rows_per_s`` over both phases). The database is ``--database-url``, else
``GOODFAITH_DATABASE_URL``, else a SQLite file in a temporary folder; the schema is migrated
first. Only the load is timed: the cases are opened afterwards by the scheduler, a batch a
tick (not measured here).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from config.settings import Settings
from worker import services
from worker.campaign import parse_campaign
from worker.domain.clock import VirtualClock
from worker.wiring import InlineDispatcher, build_container

HEADER = "member_id,member_name,birth_date,provider_id,provider_name,fax,request,due_date"


def rows_csv(n: int, due: str) -> str:
    """``n`` rows over 500 providers (numbers are fictional: 555 exchange)."""
    lines = [HEADER]
    for i in range(n):
        p = i % 500
        lines.append(
            f"M{i:07d},Member {i},1970-01-01,prov-{p},Clinic {p},+1617555{p:04d},Charts 2025,{due}"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--database-url", default=os.environ.get("GOODFAITH_DATABASE_URL"))
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="gf-campaign-"))
    url = args.database_url or f"sqlite:///{tmp / 'gf.db'}"
    start = datetime(2026, 4, 17, 13, 0, tzinfo=UTC)
    clock = VirtualClock(start)
    settings = Settings(database_url=url, object_store=f"file://{tmp / 'objects'}")
    c = build_container(settings, clock=clock, dispatcher=InlineDispatcher())
    try:
        doc = {
            "name": "bench",
            "csv": rows_csv(args.rows, (start + timedelta(days=60)).date().isoformat()),
        }
        t0 = time.perf_counter()
        parse_campaign(doc, today=lambda _code: start.date())
        t1 = time.perf_counter()
        result = services.load_campaign(c, doc, "bench")
        t2 = time.perf_counter()
    finally:
        c.close()
    check_s = t1 - t0
    store_s = (t2 - t1) - check_s  # load_campaign checks the rows again before storing
    total = check_s + store_s
    print(
        f"campaign_load: rows={result.requests} check_s={check_s:.2f} store_s={store_s:.2f} "
        f"rows_per_s={result.requests / total:.0f}"
    )


if __name__ == "__main__":
    main()
