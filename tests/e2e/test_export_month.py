"""The compliance export of a simulated month matches the attempts in the database row for
row, through every filter, in CSV and JSON, on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

from sqlalchemy import select

from simulator.demo import demo_scenario
from simulator.driver import run_simulation
from storage.db import transaction
from storage.models import Attempt, Case, RecordRequest
from tests.fakes import api_client, make_container


def test_a_simulated_month_exports_row_for_row(database_url: str, tmp_path: Path) -> None:
    """Ten cases received over four weeks: the whole export, a date window, an agency, a
    provider and one case (by notification id) each list exactly the database's attempts;
    every request met the three-attempt standard; masking hides the numbers."""
    base = demo_scenario(10)
    spread = []
    for i, n in enumerate(base.notifications):
        received = base.start + timedelta(days=3 * i, hours=2)
        spread.append({**n, "received_at": received.isoformat()})
    scenario = replace(base, notifications=spread, until=base.start + timedelta(days=40))
    result = run_simulation(  # in-process executor: the export, not the broker, is checked
        scenario, workdir=tmp_path / "run", database_url=database_url, executor="inprocess"
    )
    assert result.report["summary"]["on_time"] == 10
    c, _clock, _fax, _d = make_container(tmp_path, scenario.until, database_url)
    http = api_client(c, "compliance")
    try:
        with transaction(c.sessions) as s:
            db = [
                (
                    case.notification_id,
                    case.agency_id,
                    r.provider_id,
                    a.number,
                    a.external_id,
                    case.received_at,
                )
                for a, r, case in s.execute(
                    select(Attempt, RecordRequest, Case)
                    .join(RecordRequest, Attempt.request_id == RecordRequest.id)
                    .join(Case, Attempt.case_id == Case.id)
                )
            ]

        def exported(**params: str) -> list[dict[str, str]]:
            r = http.get("/v1/exports/attempts", params={"format": "csv", **params})
            assert r.status_code == 200, r.text
            as_json = http.get("/v1/exports/attempts", params={"format": "json", **params})
            rows = list(csv.DictReader(io.StringIO(r.text)))
            assert len(rows) == len(json.loads(as_json.text)["attempts"])
            return rows

        def key(row: dict[str, str]) -> tuple[str, str, int, str]:
            return (
                row["notification_id"],
                row["provider_id"],
                int(row["attempt_number"]),
                row["external_id"],
            )

        def expect(pred) -> list[tuple[str, str, int, str]]:  # type: ignore[no-untyped-def]
            return sorted((n, p, k, x or "") for n, ag, p, k, x, rec in db if pred(n, ag, p, rec))

        everything = exported()
        assert sorted(map(key, everything)) == expect(lambda *_: True)
        assert len(everything) == result.report["summary"]["attempts"] > 20
        assert {row["standard_met"] for row in everything} == {"yes"}
        unresponsive = [r for r in everything if r["request_status"] == "unresponsive"]
        assert unresponsive and all(int(r["attempts_by_cutoff"]) >= 3 for r in unresponsive)

        week2_from = (base.start + timedelta(days=7)).date()
        week2_to = (base.start + timedelta(days=14)).date()
        window = exported(received_from=str(week2_from), received_to=str(week2_to))
        assert window and sorted(map(key, window)) == expect(
            lambda n, ag, p, rec: week2_from <= rec.date() < week2_to
        )
        agency = exported(agency_id="agency-b")
        assert sorted(map(key, agency)) == expect(lambda n, ag, p, rec: ag == "agency-b")
        provider = exported(provider_id="prov-002-1")
        assert provider and sorted(map(key, provider)) == expect(
            lambda n, ag, p, rec: p == "prov-002-1"
        )
        nid = spread[4]["notification_id"]
        one = exported(case_id=nid)
        assert one and sorted(map(key, one)) == expect(lambda n, ag, p, rec: n == nid)
        assert exported(jurisdiction="TX") == []
        masked = exported(mask_destination="true")
        faxes = [r["destination"] for r in masked if r["channel"] == "fax"]
        assert faxes and all(d.startswith("*") and d[-4:].isdigit() for d in faxes)
        assert not {r["destination"] for r in masked} & {
            r["destination"] for r in everything if r["channel"] == "fax"
        }
    finally:
        http.close()
        c.close()
