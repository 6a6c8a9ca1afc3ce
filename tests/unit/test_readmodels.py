"""Read models: bounded, aggregate queries for the dashboard, the report and the export."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

from simulator.documents import generate_records_pdf
from tests.conftest import at, notification
from tests.fakes import fax_received, make_container
from worker import services
from worker.readmodels.dashboard import MAX_PAGE, dashboard, status_counts
from worker.readmodels.export import EXPORT_FIELDS, iter_attempts, render_chunks, render_export
from worker.readmodels.report import build_report

START = at("2026-04-17T09:00:00-04:00")


@pytest.fixture
def env(tmp_path: Path):  # type: ignore[no-untyped-def]
    c, clock, fax, deliverer = make_container(tmp_path, START)
    yield c, clock, fax, deliverer
    c.close()


def _open(c, n: int) -> list[str]:  # type: ignore[no-untyped-def]
    """``n`` cases, each at a provider of its own (one chase each: no coalescing)."""
    return [
        services.intake(c, notification(notification_id=f"n-{i}", providers=_provider(i))).case_id
        for i in range(n)
    ]


def _provider(i: int) -> list[dict[str, Any]]:
    (provider,) = notification()["providers"]
    return [{**provider, "provider_id": f"prov-{i}"}]


def test_dashboard_pages_the_watched_cases_and_counts_all(env) -> None:  # type: ignore[no-untyped-def]
    """A page holds ``limit`` cases from ``offset``; counts and total cover every case."""
    c = env[0]
    ids = _open(c, 5)
    first = dashboard(c, limit=2)
    second = dashboard(c, limit=2, offset=2)
    rest = dashboard(c, limit=10, offset=4)
    listed = [r["case_id"] for page in (first, second, rest) for r in page["active"]]
    assert sorted(listed) == sorted(ids)
    assert first["total"] == 5 and first["counts"] == {"open": 5}
    assert len(first["active"]) == 2 and len(rest["active"]) == 1
    assert all(r["requests_open"] == 1 for r in first["active"])
    assert dashboard(c, limit=10 * MAX_PAGE)["limit"] == MAX_PAGE


def test_dashboard_leaves_out_cancelled_cases_unless_flagged(env) -> None:  # type: ignore[no-untyped-def]
    """Closed cases leave the watch list; the counts still show them."""
    c = env[0]
    keep, gone = _open(c, 2)
    assert services.cancel_case(c, gone, "withdrawn")
    d = dashboard(c)
    assert [r["case_id"] for r in d["active"]] == [keep]
    assert d["counts"] == {"open": 1, "cancelled": 1} == status_counts(c)


def test_dashboard_is_a_fixed_number_of_queries(env) -> None:  # type: ignore[no-untyped-def]
    """The dashboard costs the same few queries for 2 cases as for 12 (no per-case loads)."""
    c = env[0]

    def queries() -> int:
        seen: list[str] = []
        listener = lambda *a: seen.append(a[2])  # noqa: E731
        event.listen(c.engine, "before_cursor_execute", listener)
        try:
            dashboard(c)
        finally:
            event.remove(c.engine, "before_cursor_execute", listener)
        return sum(q.lstrip().upper().startswith("SELECT") for q in seen)

    _open(c, 2)
    few = queries()
    _open(c, 10)
    assert queries() == few <= 3


def test_report_of_one_case_reads_only_its_documents(env) -> None:  # type: ignore[no-untyped-def]
    """GET /v1/cases/{id} loads that case's documents, not every document in the database."""
    c, clock, fax, _ = env
    a, b = _open(c, 2)
    for i, case_id in enumerate((a, b)):
        report = build_report(c, case_id)
        ref = report["cases"][0]["requests"][0]["reference"]
        fax.media[f"m{i}"] = generate_records_pdf(ref, "Example Orthopedics", "M1001", 2)
        c.dispatcher.enqueue(
            services.record_inbound_fax(c, fax_received(f"in-{i}", f"m{i}", clock.now(), "+1"))
        )
    statements: list[str] = []
    listener = lambda *args: statements.append(args[2])  # noqa: E731
    event.listen(c.engine, "before_cursor_execute", listener)
    try:
        one = build_report(c, a)
    finally:
        event.remove(c.engine, "before_cursor_execute", listener)
    (doc,) = one["cases"][0]["requests"][0]["documents"]
    assert doc["status"] == "accepted"
    doc_queries = [q for q in statements if "FROM documents" in q]
    assert doc_queries and all("documents.case_id" in q for q in doc_queries)
    assert one["summary"]["cases"] == 1


def test_export_streams_rows_in_csv_and_json(env) -> None:  # type: ignore[no-untyped-def]
    """The export yields text chunks; CSV and JSON carry the same rows."""
    c = env[0]
    _open(c, 3)
    rows = list(iter_attempts(c))
    assert len(rows) == 3
    parsed = list(csv.DictReader(io.StringIO(render_export(rows, "csv"))))
    assert [r["case_id"] for r in parsed] == [r["case_id"] for r in rows]
    assert list(parsed[0]) == EXPORT_FIELDS
    assert json.loads("".join(render_chunks(iter(rows), "json")))["attempts"] == rows
    assert json.loads(render_export([], "json")) == {"attempts": []}
    with pytest.raises(ValueError, match="csv or json"):
        render_export(rows, "xml")


def test_metrics_are_a_fixed_number_of_queries(env) -> None:  # type: ignore[no-untyped-def]
    """/metrics costs the same queries for 2 cases as for 12 (aggregates, no row loads)."""
    from worker.readmodels.metrics import render_metrics

    c = env[0]

    def queries() -> int:
        seen: list[str] = []
        listener = lambda *a: seen.append(a[2])  # noqa: E731
        event.listen(c.engine, "before_cursor_execute", listener)
        try:
            render_metrics(c)
        finally:
            event.remove(c.engine, "before_cursor_execute", listener)
        return sum(q.lstrip().upper().startswith("SELECT") for q in seen)

    _open(c, 2)
    few = queries()
    _open(c, 10)
    assert queries() == few <= 20


@pytest.mark.parametrize(
    ("status", "by_cutoff", "before_cutoff", "expected"),
    [
        ("fulfilled", 1, True, "yes"),
        ("no_records", 2, False, "yes"),
        ("unresponsive", 3, False, "yes"),
        ("unresponsive", 2, False, "no"),
        ("open", 1, True, "pending"),
        ("open", 2, False, "no"),
        ("open", 3, True, "yes"),
        ("cancelled", 0, False, "n/a"),
    ],
)
def test_standard_met(status: str, by_cutoff: int, before_cutoff: bool, expected: str) -> None:
    """Met: the provider answered, or three attempts went out by the cutoff; pending while
    open before the cutoff; otherwise not met."""
    from datetime import timedelta

    from worker.readmodels.export import standard_met

    cutoff = START + timedelta(days=3)
    now = cutoff - timedelta(hours=1) if before_cutoff else cutoff + timedelta(hours=1)
    assert standard_met(status, by_cutoff, cutoff, now) == expected


def test_mask_keeps_the_last_four_digits_and_the_host() -> None:
    """Fax numbers keep their last 4 digits; FHIR URLs their scheme and host."""
    from worker.readmodels.export import mask

    assert mask("+16175550101") == "********0101"
    assert mask("https://fhir.example.org/r4/Task") == "https://fhir.example.org/…"


def test_export_filters_and_progress(env, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Provider, agency and jurisdiction filters narrow the rows; `export attempts -o`
    reports its progress on stderr and writes the whole file."""
    from click.testing import CliRunner

    from config.settings import get_settings
    from worker.cli import main
    from worker.readmodels.export import ExportFilter, count_attempts

    c = env[0]
    _open(c, 3)
    other = {"member_id": "M2002", "name": "John Doe", "birth_date": "1980-05-06"}
    services.intake(c, notification(notification_id="other", insured=other))
    assert count_attempts(c) == 4
    assert count_attempts(c, ExportFilter(provider_id="prov-1")) == 2
    assert count_attempts(c, ExportFilter(provider_id="prov-9")) == 0
    assert count_attempts(c, ExportFilter(jurisdiction="ma")) == 4
    assert count_attempts(c, ExportFilter(agency_id="agency-zz")) == 0
    assert [
        r["notification_id"] for r in iter_attempts(c, flt=ExportFilter(received_to=START))
    ] == []
    monkeypatch.setenv("GOODFAITH_DATABASE_URL", str(c.engine.url))
    get_settings.cache_clear()
    try:
        out = tmp_path / "x.csv"
        result = CliRunner().invoke(main, ["export", "attempts", "-o", str(out)])
        bad = CliRunner().invoke(main, ["export", "attempts", "--from", "yesterday"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    assert "exported 4/4 attempts" in result.stderr and "audit chain head" in result.stderr
    assert len(out.read_text().splitlines()) == 5
    assert bad.exit_code == 2 and "--from" in bad.stderr
