"""Campaigns: a CSV of record requests becomes one-request cases chased with the campaign's own
policy in the bulk lane; bad rows are named and nothing is stored; progress, results, export
and cancel through the services, the API and the CLI."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from pypdf import PdfReader
from sqlalchemy import func, select

from simulator.documents import generate_records_pdf
from storage.db import transaction
from storage.models import Attempt, AuditEvent, Campaign, Case, Delivery, Packet, RecordRequest
from tests.conftest import at
from tests.fakes import api_client, fax_delivered, fax_received, make_container, run_until
from worker import services
from worker.campaign import CampaignError
from worker.commands import OpenCase, PlanOutreach
from worker.domain.lanes import Lane
from worker.readmodels.campaigns import campaign_detail, list_campaigns
from worker.readmodels.export import ExportFilter, count_attempts
from worker.services.lanes import lanes_of

START = at("2026-04-17T09:00:00-04:00")
HEADER = "member_id,member_name,birth_date,provider_id,provider_name,npi,fax,fhir,request,due_date"


def _csv(rows: int, due: str = "2026-05-29") -> str:
    lines = [HEADER]
    for i in range(rows):
        lines.append(
            f"M{i:04d},Member {i},1970-01-0{1 + i % 9},prov-{i % 2},Clinic {i % 2},,"
            f"+1617555{i:04d},,Office notes 2025,{due}"
        )
    return "\n".join(lines) + "\n"


@pytest.fixture
def env(tmp_path: Path, database_url: str):  # type: ignore[no-untyped-def]
    """On SQLite and PostgreSQL: loading uses multi-row inserts in one transaction."""
    c, clock, fax, deliverer = make_container(tmp_path, START, database_url)
    yield c, clock, fax, deliverer
    c.close()


def _count(c, model: Any) -> int:  # type: ignore[no-untyped-def]
    with transaction(c.sessions) as s:
        return int(s.scalar(select(func.count()).select_from(model)) or 0)


def test_a_csv_load_stores_every_row_and_the_scheduler_opens_them_in_the_bulk_lane(env) -> None:  # type: ignore[no-untyped-def]
    """Loading writes the campaign and a case per row at once (nothing sent yet); the
    scheduler's opening timer opens them, and their commands travel in the bulk lane."""
    c, clock, fax, _ = env
    steps: list[tuple[str, int, int]] = []
    loaded = services.load_campaign(
        c, {"name": "UR sample", "csv": _csv(3)}, "test", lambda *a: steps.append(a)
    )
    assert loaded.requests == 3 and steps[-1] == ("stored", 3, 3)
    assert fax.sent == []
    with transaction(c.sessions) as s:
        cases = list(s.scalars(select(Case).where(Case.campaign_id == loaded.campaign_id)))
        assert len(cases) == 3 and all(x.open_at is not None for x in cases)
        assert {x.agency_id for x in cases} == {""}
        request_ids = [r.id for x in cases for r in x.requests]
    lanes = lanes_of([OpenCase(cases[0].id), PlanOutreach(request_ids[0])], sessions=c.sessions)
    assert lanes == [Lane.BULK, Lane.BULK]
    run_until(c, clock, at("2026-04-17T09:05:00-04:00"))
    assert len(fax.sent) == 3
    assert all(r.purpose.startswith("Records review: ") for r in fax.sent)
    assert all("Office notes 2025" in r.purpose for r in fax.sent)
    with transaction(c.sessions) as s:
        letter_uri = s.scalars(select(Attempt.letter_uri)).first()
    assert letter_uri is not None
    page = PdfReader(io.BytesIO(c.store.get(letter_uri))).pages[0]
    text = " ".join(page.extract_text().split())
    assert "RECORDS REVIEW" in text and 'the records review "UR sample"' in text
    assert "external review agency" not in text
    detail = campaign_detail(c, loaded.campaign_id)
    assert detail is not None
    assert detail["by_status"] == {"open": 3} and detail["attempts"] == {"sent": 3}
    assert detail["waiting_to_open"] == 0
    assert count_attempts(c, ExportFilter(campaign_id=loaded.campaign_id)) == 3
    assert count_attempts(c, ExportFilter(campaign_id="nope")) == 0


def test_bad_rows_are_named_by_row_and_column_and_nothing_is_stored(env) -> None:  # type: ignore[no-untyped-def]
    """Every bad value is reported with its row (1 = first after the header) and column, and
    not one row of a file with a bad one is stored."""
    c = env[0]
    text = _csv(4)
    lines = text.splitlines()
    lines[2] = lines[2].replace("+1617555", "617-555-")  # row 2: fax
    lines[4] = lines[4].replace("2026-05-29", "2026-13-01").replace(",1970-01-04,", ",,")
    with pytest.raises(CampaignError) as err:
        services.load_campaign(c, {"name": "x", "csv": "\n".join(lines)}, "test")
    found = {(row, col) for row, col, _ in err.value.errors}
    assert found == {(2, "fax"), (4, "due_date"), (4, "birth_date")}
    assert "row 2, column fax" in str(err.value)
    assert _count(c, Campaign) == 0 and _count(c, Case) == 0
    with pytest.raises(CampaignError) as err:
        services.load_campaign(c, {"name": "x", "csv": "member,fax\nM1,+16175550101\n"}, "t")
    assert {(row, col) for row, col, _ in err.value.errors} >= {(0, "member"), (0, "member_id")}
    with pytest.raises(CampaignError) as err:
        services.load_campaign(c, {"name": "x", "policy": {"attempts": 0}, "csv": _csv(1)}, "test")
    assert [(row, col) for row, col, _ in err.value.errors] == [(0, "policy.attempts")]


def test_the_campaign_policy_sets_the_attempts_and_the_case_completes_without_a_packet(
    env,
) -> None:  # type: ignore[no-untyped-def]
    """A two-attempt campaign makes two attempts per request spread over its window; at the
    due date the request is unresponsive and the case completed: no packet, no delivery."""
    c, clock, fax, _ = env
    loaded = services.load_campaign(
        c, {"name": "two", "policy": {"attempts": 2}, "csv": _csv(1, due="2026-04-23")}, "test"
    )
    run_until(c, clock, at("2026-04-17T09:05:00-04:00"))
    for fax_id in fax.ids.values():  # the fax went through: the next is a follow-up, weeks on
        fax.statuses[fax_id] = fax_delivered(fax_id, clock.now())
    run_until(c, clock, at("2026-04-24T00:00:00-04:00"))
    assert len(fax.sent) == 2
    sent = sorted(r.idempotency_key for r in fax.sent)
    assert len(set(sent)) == 2
    with transaction(c.sessions) as s:
        (case,) = s.scalars(select(Case).where(Case.campaign_id == loaded.campaign_id))
        assert case.status == "completed" and case.requests[0].status == "unresponsive"
        gap = case.requests[0].attempts[1].sent_at - case.requests[0].attempts[0].sent_at  # type: ignore[operator]
        assert gap.days >= 1  # a business day or more apart, not back to back
    assert _count(c, Packet) == 0 and _count(c, Delivery) == 0


def test_records_fulfil_a_campaign_request_and_complete_its_case(env) -> None:  # type: ignore[no-untyped-def]
    """A reply quoting the reference fulfils the request; the case completes with the records
    counted in the campaign's results."""
    c, clock, fax, _ = env
    loaded = services.load_campaign(c, {"name": "r", "csv": _csv(2)}, "test")
    run_until(c, clock, at("2026-04-17T09:05:00-04:00"))
    with transaction(c.sessions) as s:
        ref = s.scalars(select(RecordRequest.reference).order_by(RecordRequest.reference)).first()
    assert ref is not None
    fax.media["m"] = generate_records_pdf(ref, "Clinic 0", "M0000", 2)
    c.dispatcher.enqueue(
        services.record_inbound_fax(c, fax_received("in", "m", clock.now(), "+15550000"))
    )
    detail = campaign_detail(c, loaded.campaign_id)
    assert detail is not None
    assert detail["by_status"] == {"open": 1, "fulfilled": 1}
    assert detail["cases"] == {"open": 1, "completed": 1}
    assert detail["records_received"] == {"documents": 1, "requests": 1}


def test_cancelling_a_campaign_stops_its_outreach_and_is_audited(env) -> None:  # type: ignore[no-untyped-def]
    """Cancel closes every open request as cancelled; nothing more is sent; audited once for
    the campaign and per case; a second cancel finds nothing open."""
    c, clock, fax, _ = env
    loaded = services.load_campaign(c, {"name": "stop", "csv": _csv(3)}, "test")
    run_until(c, clock, at("2026-04-17T09:05:00-04:00"))
    assert services.cancel_campaign(c, loaded.campaign_id, "contract ended", "test") == 3
    run_until(c, clock, at("2026-06-01T00:00:00-04:00"))
    assert len(fax.sent) == 3
    detail = campaign_detail(c, loaded.campaign_id)
    assert detail is not None and detail["status"] == "cancelled"
    assert detail["by_status"] == {"cancelled": 3}
    with transaction(c.sessions) as s:
        kinds = list(s.scalars(select(AuditEvent.kind).where(AuditEvent.kind.like("c%.cancelled"))))
    assert kinds.count("campaign.cancelled") == 1 and kinds.count("case.cancelled") == 3
    assert services.cancel_campaign(c, loaded.campaign_id, "again", "test") == 0
    assert services.cancel_campaign(c, "nope", "x", "test") is None


def test_campaign_api_loads_lists_shows_and_cancels(env) -> None:  # type: ignore[no-untyped-def]
    """POST /v1/campaigns (intake key) takes rows as JSON; a bad row is a 422 naming row and
    column; ops read progress; intake cancels."""
    c = env[0]
    rows = list(csv.DictReader(io.StringIO(_csv(2))))
    intake = api_client(c, "intake")
    made = intake.post("/v1/campaigns", json={"name": "api", "requests": rows})
    assert made.status_code == 201, made.text
    campaign_id = made.json()["campaign_id"]
    bad = intake.post(
        "/v1/campaigns", json={"name": "bad", "requests": [{**rows[0], "due_date": "soon"}]}
    )
    assert bad.status_code == 422
    assert bad.json()["errors"][0]["row"] == 1 and bad.json()["errors"][0]["column"] == "due_date"
    ops = api_client(c, "ops")
    listed = ops.get("/v1/campaigns").json()
    assert listed["total"] == 1 and listed["campaigns"][0]["by_status"] == {"open": 2}
    assert ops.get(f"/v1/campaigns/{campaign_id}").json()["requests"] == 2
    assert ops.get("/v1/campaigns/nope").status_code == 404
    done = intake.post(f"/v1/campaigns/{campaign_id}/cancel", json={"reason": "ended"})
    assert done.json() == {"campaign_id": campaign_id, "status": "cancelled", "cases_cancelled": 2}
    assert list_campaigns(c)["campaigns"][0]["status"] == "cancelled"


def test_the_case_list_shows_reviews_unless_asked_for_campaign_cases(env) -> None:  # type: ignore[no-untyped-def]
    """A campaign's cases stay out of GET /v1/cases (and its counts) by default, where ops
    watch external reviews against legal deadlines; ``kind`` lists them or every case."""
    from tests.conftest import notification

    c = env[0]
    review = services.intake(c, notification(notification_id="REVIEW-1"))
    loaded = services.load_campaign(c, {"name": "charts", "csv": _csv(3)}, "test")
    ops = api_client(c, "ops")

    default = ops.get("/v1/cases").json()
    assert [x["case_id"] for x in default["active"]] == [review.case_id]
    assert default["total"] == 1 and default["kind"] == "review"
    assert sum(default["counts"].values()) == 1
    assert default["active"][0]["kind"] == "review"
    assert ops.get("/v1/cases", params={"kind": "review"}).json() == default

    campaign = ops.get("/v1/cases", params={"kind": "campaign"}).json()
    assert campaign["total"] == 3 and sum(campaign["counts"].values()) == 3
    assert {x["campaign_id"] for x in campaign["active"]} == {loaded.campaign_id}
    assert {x["kind"] for x in campaign["active"]} == {"campaign"}

    every = ops.get("/v1/cases", params={"kind": "all"}).json()
    assert every["total"] == 4 and sum(every["counts"].values()) == 4
    assert {x["case_id"] for x in every["active"]} == {review.case_id} | {
        x["case_id"] for x in campaign["active"]
    }
    bad = ops.get("/v1/cases", params={"kind": "campaigns"})
    assert bad.status_code == 422


def test_cli_campaign_load_reports_progress_and_refuses_a_bad_file(
    env, tmp_path: Path, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    """`goodfaith campaign load` prints progress on stderr and the campaign id; a bad file
    exits 2 naming row and column, storing nothing; `campaign show` prints the results."""
    from config.settings import get_settings
    from worker.cli import main

    c = env[0]
    good, bad = tmp_path / "good.csv", tmp_path / "bad.csv"
    good.write_text(_csv(12_000, due="2026-12-01"))
    bad.write_text(_csv(2).replace("Member 1,", ","))
    monkeypatch.setenv("GOODFAITH_DATABASE_URL", str(c.engine.url))
    get_settings.cache_clear()
    try:
        refused = CliRunner().invoke(main, ["campaign", "load", str(bad), "--name", "b"])
        result = CliRunner().invoke(main, ["campaign", "load", str(good), "--name", "g"])
        shown = CliRunner().invoke(
            main, ["campaign", "show", json.loads(result.stdout)["campaign_id"]]
        )
    finally:
        get_settings.cache_clear()
    assert refused.exit_code == 2
    assert "row 2, column member_name: required" in refused.stderr
    assert "nothing stored" in refused.stderr
    assert result.exit_code == 0, result.output
    assert "checked 10000 rows" in result.stderr
    assert "stored 10000/12000 requests" in result.stderr
    assert "stored 12000/12000 requests" in result.stderr
    assert json.loads(shown.stdout)["waiting_to_open"] == 12_000
