"""The built-in demo scenario (``goodfaith demo``): a realistic mix of cases and providers,
generated deterministically from a seed. Nothing here is real PHI."""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from simulator.providers import ProviderBehaviour
from simulator.scenario import DEFAULT_HORIZON, Scenario
from worker.notification import npi_check_digit

__all__ = ["bench_scenario", "demo_scenario"]


def _demo_npi(k: int) -> str:
    """A distinct, valid NPI for each k: nine digits, then the Luhn check digit over '80840'+them.
    (An NPI names one provider: the simulator finds a FHIR Task's provider by it.)"""
    base = f"{100000000 + k:09d}"
    return base + str(npi_check_digit(base))


def _demo_number(area: int, k: int) -> str:
    """A distinct NANP fax number for each k (area codes step up every 9,000 numbers), never
    the carrier's own +16175550000."""
    return f"+1{area + k // 9000:03d}555{1000 + k % 9000:04d}"


def demo_scenario(
    cases: int = 12, start: datetime | None = None, seed: int = 7, run: str | None = None
) -> Scenario:
    """A realistic mix: standard and expedited cases, 2–3 providers each; most providers answer
    the first request, some only the second, a few never; one fax line is always busy (its
    records come through the provider's retrieval vendor, ordered through the vendor's API or
    by fax); one answers "no records"; some
    are reached over FHIR (Da Vinci CDex). ``run`` names the run in the notification ids
    (``DEMO-<run>-0001``), so runs sharing a database never collide; without it the ids are
    ``OPP-2026-000001``..."""
    rnd = random.Random(seed)
    tz = ZoneInfo("America/New_York")
    start = start or datetime(2026, 4, 16, 8, 0, tzinfo=tz)
    notifications: list[dict[str, Any]] = []
    providers: dict[str, ProviderBehaviour] = {}
    for i in range(cases):
        expedited = i % 3 == 2
        received = start + timedelta(minutes=rnd.randint(0, 8 * 60))
        nprov = 2 + (i % 2)
        plist = []
        for j in range(nprov):
            pid = f"prov-{i + 1:03d}-{j + 1}"
            kind = (i * 3 + j) % 7
            fax = _demo_number(617, i * 10 + j)
            prov: dict[str, Any] = {
                "provider_id": pid,
                "name": f"{['Example Orthopedics', 'Harbor Imaging', 'Back Bay Physical Therapy', 'North Shore Primary Care'][(i + j) % 4]}",
                "npi": _demo_npi(i * 10 + j),
                "role": "treating" if j == 0 else "consulting",
                "network": "in" if (i + j) % 3 else "out",
                "channels": [{"kind": "fax", "number": fax}],
            }
            if kind == 3:  # busy line: records through the designee (a retrieval vendor)
                providers[pid] = ProviderBehaviour(
                    fax="busy", respond_after_attempts=1, reply_delay_minutes=45, pages=4
                )
                prov["designee"] = {
                    "vendor_id": "vendor-1",
                    "name": "Records Retrieval Co.",
                    # reached by an order through the vendor's API, or (every other one) by fax
                    "channels": [{"kind": "vendor", "vendor_id": "vendor-1"}]
                    if i % 2 == 0
                    else [{"kind": "fax", "number": _demo_number(781, i * 10 + j)}],
                }
            elif kind == 5:
                providers[pid] = ProviderBehaviour(respond_after_attempts=None)
            elif kind == 6:
                providers[pid] = ProviderBehaviour(
                    respond_after_attempts=2,
                    reply_delay_minutes=rnd.randint(30, 240),
                    pages=rnd.randint(3, 15),
                )
            elif kind == 1 and i % 4 == 1:
                providers[pid] = ProviderBehaviour(reply="no_records", reply_delay_minutes=120)
            elif kind == 4:
                prov["channels"] = [{"kind": "fhir", "base_url": "https://fhir.example.org/r4"}]
                providers[pid] = ProviderBehaviour(
                    reply_delay_minutes=rnd.randint(20, 180), pages=rnd.randint(2, 10)
                )
            else:
                providers[pid] = ProviderBehaviour(
                    reply_delay_minutes=rnd.randint(20, 300), pages=rnd.randint(2, 20)
                )
            plist.append(prov)
        notifications.append(
            {
                "notification_id": f"DEMO-{run}-{i + 1:04d}" if run else f"OPP-2026-{i + 1:06d}",
                "received_at": received.isoformat(),
                "jurisdiction": "MA",
                "review_type": "expedited" if expedited else "standard",
                "agency_id": "agency-a" if i % 2 == 0 else "agency-b",
                "insured": {
                    "member_id": f"M{1000 + i}",
                    "name": f"Member {i + 1}",
                    "birth_date": f"19{60 + i % 40}-0{1 + i % 9}-1{i % 10}",
                },
                "coverage": {"plan_id": ["PPO-2026", "HMO-2026", "EPO-2026"][i % 3]},
                "dispute": {
                    "service": ["Lumbar spine MRI", "Physical therapy", "Knee arthroscopy"][i % 3],
                    "codes": [["72148"], ["97110"], ["29881"]][i % 3],
                    "dates_of_service": ["2026-03-02"],
                },
                "providers": plist,
            }
        )
    return Scenario(start, notifications, providers, start + DEFAULT_HORIZON)


def bench_scenario(cases: int, seed: int = 11) -> Scenario:
    """The demo's notification mix, re-drawn so that one provider in three never answers
    (``bench/bench_simulation.py``; receipts over two working days, no designees)."""
    base = demo_scenario(cases, seed=seed)
    rnd = random.Random(seed)
    providers = {}
    for n in base.notifications:
        for p in n["providers"]:
            p.pop("designee", None)
            if rnd.random() < 1 / 3:
                providers[p["provider_id"]] = ProviderBehaviour(respond_after_attempts=None)
            else:
                providers[p["provider_id"]] = ProviderBehaviour(
                    respond_after_attempts=rnd.choice([1, 1, 2]),
                    reply_delay_minutes=rnd.randint(20, 300),
                    pages=rnd.randint(2, 12),
                )
    # receipts spread over two working days, as a carrier's intake would see them
    start = datetime(2026, 4, 14, 8, 0, tzinfo=ZoneInfo("America/New_York"))
    for i, n in enumerate(base.notifications):
        n["received_at"] = (start + timedelta(minutes=(i * 997) % (2 * 24 * 60))).isoformat()
    return Scenario(start, base.notifications, providers, start + timedelta(days=14))
