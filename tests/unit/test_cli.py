"""The ``goodfaith`` command line, run in-process with click's CliRunner (no Redis, no network)."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog
from click.testing import CliRunner, Result
from sqlalchemy import func, inspect, select

from config.settings import get_settings
from storage.db import make_engine, make_sessionmaker, transaction
from storage.models import Case
from tests.conftest import notification
from worker.cli import main
from worker.readmodels.export import EXPORT_FIELDS


@pytest.fixture
def db_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Settings point at a private SQLite file and object folders; logging is restored after."""
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    monkeypatch.setenv("GOODFAITH_DATABASE_URL", url)
    monkeypatch.setenv("GOODFAITH_OBJECT_STORE", f"file://{tmp_path / 'objects'}")
    monkeypatch.setenv("GOODFAITH_EOC_LIBRARY", f"file://{tmp_path / 'eoc'}")
    monkeypatch.delenv("GOODFAITH_REDIS_URL", raising=False)
    saved_structlog = structlog.get_config()
    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    get_settings.cache_clear()
    try:
        yield url
    finally:
        get_settings.cache_clear()
        structlog.configure(**saved_structlog)
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)


def _run(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


def _cases(url: str) -> int:
    engine = make_engine(url)
    try:
        with transaction(make_sessionmaker(engine)) as s:
            return int(s.scalar(select(func.count()).select_from(Case)) or 0)
    finally:
        engine.dispose()


def _deadline(received: str, review: str = "standard", jurisdiction: str = "MA") -> Result:
    return _run(
        "deadline", "--jurisdiction", jurisdiction, "--review", review, "--received", received
    )


# --- deadline ----------------------------------------------------------------------------------


def test_deadline_prints_only_the_due_instant() -> None:
    """A standard MA review received Fri 17 Apr 09:00 is due Thu 23 Apr 17:00 EDT, alone on stdout."""
    result = _deadline("2026-04-17T09:00:00-04:00")
    assert result.exit_code == 0, result.output
    assert result.stdout == "2026-04-23T17:00:00-04:00\n"
    assert result.stderr == ""


def test_deadline_accepts_z_suffix() -> None:
    """The same instant written in UTC with a Z gives the same local due instant."""
    result = _deadline("2026-04-17T13:00:00Z")
    assert result.exit_code == 0, result.output
    assert result.stdout == "2026-04-23T17:00:00-04:00\n"


def test_deadline_accepts_utc_offset() -> None:
    """An explicit +00:00 offset is read like Z."""
    result = _deadline("2026-04-17T13:00:00+00:00")
    assert result.stdout == "2026-04-23T17:00:00-04:00\n"


def test_expedited_deadline_is_24_elapsed_hours_across_dst() -> None:
    """Expedited: 24 real hours; across the spring-forward night the wall clock shows 10:30."""
    result = _deadline("2026-03-07T09:30:00-05:00", review="expedited")
    assert result.exit_code == 0, result.output
    assert result.stdout == "2026-03-08T10:30:00-04:00\n"


def test_unknown_jurisdiction_is_refused_by_name() -> None:
    """An unknown jurisdiction exits non-zero naming it and the known codes."""
    result = _deadline("2026-04-17T09:00:00-04:00", jurisdiction="ZZ")
    assert result.exit_code != 0
    assert result.stdout == ""
    assert "unknown jurisdiction 'ZZ'" in result.stderr
    assert "MA" in result.stderr


def test_naive_timestamp_is_refused() -> None:
    """A timestamp without an offset exits non-zero saying it must be timezone-aware."""
    result = _deadline("2026-04-17T09:00:00")
    assert result.exit_code != 0
    assert result.stdout == ""
    assert "timezone-aware" in result.stderr


def test_unparseable_timestamp_is_refused() -> None:
    """Text that is not ISO-8601 exits non-zero naming --received."""
    result = _deadline("next friday")
    assert result.exit_code != 0
    assert "--received" in result.stderr
    assert "next friday" in result.stderr


def test_unknown_review_type_is_refused() -> None:
    """An unknown review type exits non-zero naming it and the valid types."""
    result = _deadline("2026-04-17T09:00:00-04:00", review="urgent")
    assert result.exit_code != 0
    assert result.stdout == ""
    assert "unknown review type 'urgent'" in result.stderr
    assert "standard, expedited" in result.stderr


# --- intake ------------------------------------------------------------------------------------


def test_intake_of_invalid_notification_exits_2_naming_fields_and_stores_nothing(
    db_url: str, tmp_path: Path
) -> None:
    """Every bad field is printed to stderr, the exit code is 2 and no case row is written."""
    assert _run("db", "upgrade").exit_code == 0
    doc = notification(review_type="urgent", received_at="2026-04-17T09:00:00", providers=[])
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(doc))
    result = _run("intake", str(path))
    assert result.exit_code == 2
    for field in ("review_type", "received_at", "providers"):
        assert f"error: {field}:" in result.stderr
    assert result.stdout == ""
    assert _cases(db_url) == 0


def test_intake_of_non_json_file_is_refused(db_url: str, tmp_path: Path) -> None:
    """A file that is not JSON exits non-zero saying so, naming the file."""
    path = tmp_path / "notice.json"
    path.write_text("notification_id: OPP-1\n")
    result = _run("intake", str(path))
    assert result.exit_code != 0
    assert "not valid JSON" in result.stderr
    assert str(path) in result.stderr


# --- simulate ----------------------------------------------------------------------------------


def _scenario(tmp_path: Path, doc: dict[str, Any]) -> str:
    path = tmp_path / "scenario.json"
    path.write_text(json.dumps(doc))
    return str(path)


GOOD_SCENARIO: dict[str, Any] = {
    "start": "2026-04-17T09:00:00-04:00",
    "notifications": [notification()],
    "providers": {"prov-1": {"respond_after_attempts": 1}},
}


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"colour": "blue"}, "colour: unknown key"),
        ({"start": None}, "start"),
        ({"providers": {"prov-1": {"mood": "grumpy"}}}, "providers.prov-1.mood: unknown key"),
    ],
    ids=["unknown-key", "missing-start", "provider-unknown-key"],
)
def test_malformed_scenario_names_the_key(
    db_url: str, tmp_path: Path, change: dict[str, Any], named: str
) -> None:
    """A malformed scenario exits non-zero before running, and the message names the key."""
    doc = {**GOOD_SCENARIO, **change}
    doc = {k: v for k, v in doc.items() if v is not None}
    run_dir = tmp_path / "run"
    result = _run("simulate", _scenario(tmp_path, doc), "--quiet", "--workdir", str(run_dir))
    assert result.exit_code not in (0, None)
    assert "invalid scenario" in result.stderr
    assert named in result.stderr
    assert not run_dir.exists()


def test_missing_scenario_file_is_refused(db_url: str, tmp_path: Path) -> None:
    """A scenario path that does not exist exits non-zero naming it."""
    result = _run("simulate", str(tmp_path / "nope.json"), "--quiet")
    assert result.exit_code != 0
    assert "nope.json: no such file" in result.stderr


# --- export and db -----------------------------------------------------------------------------


def test_export_attempts_csv_on_empty_database_prints_only_the_header(db_url: str) -> None:
    """With no attempts the CSV export is exactly the header line."""
    result = _run("export", "attempts", "--format", "csv")
    assert result.exit_code == 0, result.output
    assert result.stdout == ",".join(EXPORT_FIELDS) + "\n"


def test_db_upgrade_creates_the_tables(db_url: str) -> None:
    """db upgrade applies the migrations: every model table exists afterwards."""
    result = _run("db", "upgrade")
    assert result.exit_code == 0, result.output
    assert "newest migration" in result.stdout
    engine = make_engine(db_url)
    try:
        tables = set(inspect(engine).get_table_names())
    finally:
        engine.dispose()
    assert {
        "cases",
        "record_requests",
        "attempts",
        "inbound_items",
        "documents",
        "packets",
        "deliveries",
        "audit_events",
        "alembic_version",
    } <= tables


# --- an operator's mistakes: one line, a documented exit code, never a traceback -------------


def _one_line(result: Result, code: int, *needles: str) -> None:
    assert result.exit_code == code, result.output
    assert ("Traceback" not in result.output and result.exception is None) or isinstance(
        result.exception, SystemExit
    )
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


@pytest.mark.parametrize("command", ["intake", "simulate"])
@pytest.mark.parametrize(
    ("content", "says"),
    [
        (None, "no such file"),
        (b"\x00\x01\x02{}", "binary"),
        (b'{"notification_id": "caf\xe9"}', "not UTF-8"),
        (b"{not json", "not valid JSON"),
        ("folder", "is a folder"),
    ],
    ids=["missing", "binary", "latin-1", "not-json", "folder"],
)
def test_a_bad_file_is_one_line_and_exit_2(
    db_url: str, tmp_path: Path, command: str, content: bytes | str | None, says: str
) -> None:
    """intake and simulate given a missing, binary, non-UTF-8, non-JSON file or a folder: one
    line naming the file and what is wrong, exit 2."""
    path = tmp_path / "input.json"
    if content == "folder":
        path.mkdir()
    elif isinstance(content, bytes):
        path.write_bytes(content)
    _one_line(_run(command, str(path)), 2, str(path), says)


@pytest.mark.parametrize(
    ("url", "code", "says"),
    [
        ("notaurl", 2, "not a database URL"),
        ("postgresql://nobody:hunter2@127.0.0.1:1/x", 69, "cannot reach the database"),
    ],
)
def test_db_upgrade_on_a_bad_url_is_one_line(
    db_url: str, monkeypatch: pytest.MonkeyPatch, url: str, code: int, says: str
) -> None:
    """A malformed URL exits 2, an unreachable database 69; the password is never printed."""
    monkeypatch.setenv("GOODFAITH_DATABASE_URL", url)
    get_settings.cache_clear()
    result = _run("db", "upgrade")
    _one_line(result, code, says, "GOODFAITH_DATABASE_URL")
    assert "hunter2" not in result.output


@pytest.mark.parametrize("received", ["9999-12-30T00:00:00-04:00", "2206-04-17T09:00:00-04:00"])
def test_deadline_far_in_the_future_is_one_line(received: str) -> None:
    """A received date past the supported years exits 2 naming --received, no traceback."""
    _one_line(_deadline(received), 2, "--received", "outside the years")


def test_version() -> None:
    """goodfaith --version prints the package version."""
    from importlib.metadata import version

    result = _run("--version")
    assert result.exit_code == 0 and version("goodfaith") in result.output


def test_export_by_notification_id_and_unknown_case(db_url: str, tmp_path: Path) -> None:
    """--case takes the case id or the notification id; an unknown one is an error (exit 1),
    not an empty export."""
    from tests.conftest import at
    from tests.fakes import make_container
    from worker import services

    c, _clock, _fax, _d = make_container(tmp_path, at("2026-04-17T09:00:00-04:00"), db_url)
    try:
        case_id = services.intake(c, notification()).case_id
    finally:
        c.close()
    by_id = _run("export", "attempts", "--case", case_id)
    by_notification = _run("export", "attempts", "--case", "OPP-2026-000123")
    assert by_id.exit_code == by_notification.exit_code == 0
    assert by_id.stdout == by_notification.stdout and case_id in by_id.stdout
    assert len(by_id.stdout.strip().splitlines()) == 2
    _one_line(_run("export", "attempts", "--case", "OPP-404"), 1, "OPP-404", "no case")
