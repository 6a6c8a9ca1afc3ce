"""Campaigns: a CSV of record requests becomes one-request cases chased with the campaign's own
policy in the bulk lane; bad rows are named and nothing is stored; progress, results, export
and cancel through the services, the API and the CLI."""

from __future__ import annotations

import csv
import io
import json
from datetime import date, timedelta
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
from worker.commands import FirstAttempts, OpenCase, PlanOutreach
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


def test_a_campaign_s_cases_open_in_the_scheduler_s_tick_not_one_message_each(
    tmp_path: Path, database_url: str
) -> None:
    """With nothing to fetch (a campaign names no authorization, and production makes none
    up), the tick that claims a campaign's cases opens them in its own transaction: it sends
    their requests' first plannings to the bulk lane in one FirstAttempts batch, no OpenCase;
    the requests then go out as before. Where an authorization must be made (a simulation),
    OpenCase still opens them."""
    from tests.fakes import Recorded
    from worker.domain.lifecycle import LEASE
    from worker.scheduler import tick

    c, clock, fax, _ = make_container(tmp_path, START, database_url, authorization_fallback=None)
    try:
        loaded = services.load_campaign(c, {"name": "UR", "csv": _csv(3)}, "test", lambda *a: None)
        inline, c.dispatcher = c.dispatcher, Recorded()
        cmds = tick(c)
        with transaction(c.sessions) as s:
            cases = list(s.scalars(select(Case).where(Case.campaign_id == loaded.campaign_id)))
            request_ids = sorted(r.id for x in cases for r in x.requests)
            assert [x.open_at for x in cases] == [None] * 3
            nexts = {r.next_action_at for x in cases for r in x.requests}
        assert nexts == {clock.now() + LEASE}
        assert [type(cmd) for cmd in cmds] == [FirstAttempts]
        assert sorted(cmds[0].ids) == request_ids  # type: ignore[union-attr]
        assert c.dispatcher.commands == cmds  # type: ignore[attr-defined]
        assert lanes_of(cmds, sessions=c.sessions) == [Lane.BULK]
        assert tick(c) == []  # opened: nothing is claimed again
        c.dispatcher = inline
        inline.enqueue(cmds)
        assert len(fax.sent) == 3
    finally:
        c.close()
    made_up, clock, fax, _ = make_container(tmp_path / "sim", START, database_url)
    try:
        services.load_campaign(made_up, {"name": "UR", "csv": _csv(2)}, "test", lambda *a: None)
        made_up.dispatcher = Recorded()
        assert [type(cmd) for cmd in tick(made_up)] == [OpenCase, OpenCase]
    finally:
        made_up.close()


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


def test_loading_the_same_campaign_twice_makes_one(env) -> None:  # type: ignore[no-untyped-def]
    """Without a key the content names the load: the same campaign again (as CSV or as JSON
    rows) returns the first one's id and stores nothing; another name is another campaign;
    a cancelled campaign's content again names the cancelled one."""
    c = env[0]
    doc = {"name": "charts", "csv": _csv(3)}
    first = services.load_campaign(c, doc, "test")
    again = services.load_campaign(c, doc, "test")
    assert (first.created, again.created) == (True, False)
    assert (again.campaign_id, again.requests, again.status) == (first.campaign_id, 3, "open")
    as_json = {"name": "charts", "requests": list(csv.DictReader(io.StringIO(_csv(3))))}
    assert services.load_campaign(c, as_json, "test").campaign_id == first.campaign_id
    assert (_count(c, Campaign), _count(c, Case), _count(c, RecordRequest)) == (1, 3, 3)
    other = services.load_campaign(c, {"name": "charts 2", "csv": _csv(3)}, "test")
    assert other.created and other.campaign_id != first.campaign_id
    assert _count(c, Case) == 6
    services.cancel_campaign(c, first.campaign_id, "ended", "test")
    after = services.load_campaign(c, doc, "test")
    assert (after.campaign_id, after.created, after.status) == (
        first.campaign_id,
        False,
        "cancelled",
    )


def test_a_key_names_the_load_and_refuses_other_content(env) -> None:  # type: ignore[no-untyped-def]
    """With a key (Idempotency-Key, ``--key``) the key names the load: the same key and
    content again is the same campaign, the key with other content is refused naming it, and
    a new key loads the same content anew on purpose."""
    c = env[0]
    doc = {"name": "charts", "csv": _csv(2)}
    unkeyed = services.load_campaign(c, doc, "test")
    keyed = services.load_campaign(c, doc, "test", None, "batch-2026-11-27")
    assert keyed.created and keyed.campaign_id != unkeyed.campaign_id
    same = services.load_campaign(c, doc, "test", None, "batch-2026-11-27")
    assert (same.campaign_id, same.created) == (keyed.campaign_id, False)
    with pytest.raises(CampaignError) as refused:
        services.load_campaign(
            c, {"name": "charts", "csv": _csv(3)}, "test", None, "batch-2026-11-27"
        )
    (row, column, message), *_ = refused.value.errors
    assert (row, column) == (0, "idempotency_key") and keyed.campaign_id in message
    with pytest.raises(CampaignError):
        services.load_campaign(c, doc, "test", None, "x" * 65)
    assert _count(c, Campaign) == 2


def test_two_identical_loads_at_once_make_one_campaign(env) -> None:  # type: ignore[no-untyped-def]
    """The unique load key decides between two loads of the same content racing."""
    import threading

    c = env[0]
    doc = {"name": "race", "csv": _csv(400)}
    barrier = threading.Barrier(2)
    results: list[Any] = []
    errors: list[BaseException] = []

    def load() -> None:
        try:
            barrier.wait()
            results.append(services.load_campaign(c, doc, "test"))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=load) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len({r.campaign_id for r in results}) == 1
    assert sorted(r.created for r in results) == [False, True]
    assert (_count(c, Campaign), _count(c, Case)) == (1, 400)


def test_the_api_answers_a_repeated_load_with_200_and_the_same_campaign(env) -> None:  # type: ignore[no-untyped-def]
    """POST /v1/campaigns: 201 for a new campaign, 200 with its id for the same load again
    (as POST /v1/notifications does for a notification id taken in), with or without an
    Idempotency-Key; the key with another body is a 422 naming it."""
    c = env[0]
    rows = list(csv.DictReader(io.StringIO(_csv(2))))
    intake = api_client(c, "intake")
    body = {"name": "api", "requests": rows}
    made = intake.post("/v1/campaigns", json=body)
    again = intake.post("/v1/campaigns", json=body)
    assert (made.status_code, again.status_code) == (201, 200), again.text
    assert made.json() == {**again.json(), "created": True}
    assert again.json()["created"] is False and again.json()["status"] == "open"
    key = {"Idempotency-Key": "req-7f3c"}
    keyed = intake.post("/v1/campaigns", json=body, headers=key)
    retried = intake.post("/v1/campaigns", json=body, headers=key)
    assert (keyed.status_code, retried.status_code) == (201, 200)
    assert (
        keyed.json()["campaign_id"] == retried.json()["campaign_id"] != made.json()["campaign_id"]
    )
    other = intake.post("/v1/campaigns", json={"name": "api", "requests": rows[:1]}, headers=key)
    assert other.status_code == 422
    assert other.json()["errors"][0]["column"] == "idempotency_key"
    too_long = intake.post("/v1/campaigns", json=body, headers={"Idempotency-Key": "k" * 65})
    assert too_long.status_code == 422
    assert _count(c, Campaign) == 2


def test_cli_campaign_load_twice_stores_once(env, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """`goodfaith campaign load` of the same file twice: the second prints the first's
    campaign ("created": false) and says so on stderr; ``--key`` names a load."""
    from config.settings import get_settings
    from worker.cli import main

    c = env[0]
    good = tmp_path / "good.csv"
    good.write_text(_csv(3, due=(date.today() + timedelta(days=30)).isoformat()))  # real clock
    monkeypatch.setenv("GOODFAITH_DATABASE_URL", c.engine.url.render_as_string(False))
    get_settings.cache_clear()
    try:
        runs = [
            CliRunner().invoke(main, ["campaign", "load", str(good), "--name", "g", *extra])
            for extra in ([], [], ["--key", "k1"], ["--key", "k1"])
        ]
    finally:
        get_settings.cache_clear()
    assert [r.exit_code for r in runs] == [0, 0, 0, 0], [r.output for r in runs]
    out = [json.loads(r.stdout) for r in runs]
    assert [o["created"] for o in out] == [True, False, True, False]
    assert out[0]["campaign_id"] == out[1]["campaign_id"] != out[2]["campaign_id"]
    assert out[2]["campaign_id"] == out[3]["campaign_id"]
    assert "already loaded: campaign" in runs[1].stderr
    assert _count(c, Campaign) == 2


def _believed_rows(c, table: str) -> float:  # type: ignore[no-untyped-def]
    from sqlalchemy import text

    with c.engine.connect() as conn:
        return float(
            conn.execute(
                text("SELECT reltuples FROM pg_class WHERE oid = CAST(:t AS regclass)"),
                {"t": table},
            ).scalar_one()
        )


def test_a_large_load_refreshes_the_planner_s_statistics_and_a_small_one_leaves_them(
    tmp_path: Path, pg_url: str
) -> None:
    """After a load as large as what makes autovacuum analyze (50 + 10 % of the rows), the
    planner knows the loaded tables' sizes at once (PostgreSQL's "Run ANALYZE Afterwards");
    a load below that leaves them to autovacuum. Never analyzed, a table's reltuples is -1."""
    c, *_ = make_container(tmp_path, START, pg_url)
    try:
        assert _believed_rows(c, "record_requests") == -1
        services.load_campaign(c, {"name": "big", "csv": _csv(120)}, "test")
        assert _believed_rows(c, "cases") >= 120
        assert _believed_rows(c, "record_requests") == 120
        services.load_campaign(c, {"name": "small", "csv": _csv(30, due="2026-06-01")}, "test")
        assert _believed_rows(c, "record_requests") == 120  # 30 <= 50 + 12: not analyzed
        assert _count(c, RecordRequest) == 150
    finally:
        c.close()


def test_statistics_that_cannot_be_refreshed_are_left_to_autovacuum(
    tmp_path: Path, pg_url: str, sqlite_url: str
) -> None:
    """A refresh that fails (here: a table that is not there; in production, a role that does
    not own the tables) is logged and skipped, never raised: the load is committed by then.
    SQLite has no planner statistics to refresh."""
    from structlog.testing import capture_logs

    from storage.db import analyze_after_load, make_engine

    c, *_ = make_container(tmp_path, START, pg_url)
    try:
        with capture_logs() as logs:
            assert analyze_after_load(c.engine, 1_000, ("no_such_table",)) is False
        assert [e["event"] for e in logs] == ["storage.analyze_skipped"]
        assert analyze_after_load(c.engine, 1_000, ("cases",)) is True
    finally:
        c.close()
    lite = make_engine(sqlite_url)
    assert analyze_after_load(lite, 1_000, ("cases",)) is False
    lite.dispose()
