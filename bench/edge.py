"""Benchmark: what the API's edge checks (api/limits.py) cost. Prints figures; asserts nothing.

    .venv/bin/python bench/edge.py [--runs 5] [--requests 300]

1. ``connectors.jsonbody.nesting_depth`` over 1 MiB bodies: a typical JSON document (objects,
   strings, numbers), the worst case for the count (1 MiB of ``[``) and a notification:
   fastest of ``--runs``, in milliseconds.
2. ``--requests`` notifications (the README example, refused as a duplicate after the first:
   intake's validation and one lookup) through the app in-process, with the edge middleware
   and with it removed: requests per second of each, best of three interleaved runs (one
   client thread; SQLite in a temporary folder).

The last line is always::

    edge: depth_1mib_json_ms=<float> depth_1mib_brackets_ms=<float> with_edge_rps=<float>
    without_edge_rps=<float>
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from api.contract import NOTIFICATION_EXAMPLE
from connectors.jsonbody import nesting_depth


def fastest_ms(fn: Callable[[], object], runs: int) -> float:
    best = float("inf")
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best * 1000


def requests_per_s(with_edge: bool, requests: int) -> float:
    from api.app import create_app
    from api.limits import EdgeLimits
    from simulator.serving import asgi_client
    from tests.conftest import at
    from tests.fakes import bearer, make_container

    with tempfile.TemporaryDirectory() as tmp:
        c, _clock, _fax, _d = make_container(Path(tmp), at("2026-04-17T09:00:00-04:00"))
        c.settings.rate_limits.intake_per_s = 0
        app = create_app(lambda: c)
        if not with_edge:
            app.user_middleware = [m for m in app.user_middleware if m.cls is not EdgeLimits]
        body = json.dumps(NOTIFICATION_EXAMPLE).encode()
        headers = {**bearer(c, "intake"), "content-type": "application/json"}
        with asgi_client(app) as http:
            http.post("/v1/notifications", content=body, headers=headers)  # opens the case
            start = time.perf_counter()
            for _ in range(requests):
                answer = http.post("/v1/notifications", content=body, headers=headers)
                assert answer.status_code == 200, answer.text
            elapsed = time.perf_counter() - start
        c.close()
    return requests / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--requests", type=int, default=300)
    args = parser.parse_args()

    row = {"id": "x" * 32, "n": 12345, "s": 'text with [brackets] and "quotes"', "l": [1, 2]}
    typical = json.dumps([row] * (1_048_576 // len(json.dumps(row)))).encode()
    brackets = b"[" * 1_048_576
    notification = json.dumps(NOTIFICATION_EXAMPLE).encode()
    json_ms = fastest_ms(lambda: nesting_depth(typical), args.runs)
    bracket_ms = fastest_ms(lambda: nesting_depth(brackets), args.runs)
    small_ms = fastest_ms(lambda: nesting_depth(notification), args.runs)
    print(
        f"nesting_depth: 1 MiB JSON {json_ms:.1f} ms, 1 MiB of '[' {bracket_ms:.1f} ms, "
        f"one notification ({len(notification)} bytes) {small_ms * 1000:.0f} µs"
    )
    with_edge = without_edge = 0.0
    for _ in range(3):  # interleaved, best of three: the machine is shared
        with_edge = max(with_edge, requests_per_s(True, args.requests))
        without_edge = max(without_edge, requests_per_s(False, args.requests))
    print(
        f"duplicate notifications in-process: {with_edge:.0f}/s with the edge checks, "
        f"{without_edge:.0f}/s without"
    )
    print(
        f"edge: depth_1mib_json_ms={json_ms:.1f} depth_1mib_brackets_ms={bracket_ms:.1f} "
        f"with_edge_rps={with_edge:.0f} without_edge_rps={without_edge:.0f}"
    )


if __name__ == "__main__":
    main()
