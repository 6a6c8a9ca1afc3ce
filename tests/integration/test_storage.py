"""The database and the object store, against real engines (SQLite, PostgreSQL, moto S3)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import func, select

from storage.db import make_engine, make_sessionmaker, migrate, transaction
from storage.models import AppendOnlyError, AuditEvent, Base, Case
from storage.objects import (
    LocalObjectStore,
    ObjectNotFound,
    ObjectStore,
    S3ObjectStore,
    UriReader,
    content_key,
    open_store,
)


def test_migrations_build_exactly_the_models(database_url: str) -> None:
    """`alembic upgrade head` yields the schema the models describe, on SQLite and PostgreSQL."""
    engine = make_engine(database_url)
    migrate(engine)
    migrate(engine)  # idempotent
    with engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
    engine.dispose()


def test_the_check_timer_reads_the_faxes_in_flight_through_their_index(pg_url: str) -> None:
    """On PostgreSQL, the check timer's due faxes and its earliest check are read through the
    partial index of faxes still ``sent`` (migration 0018), not by reading every attempt.
    Sequential scans are priced out, so the plan shows which index, if any, serves them."""
    from sqlalchemy import text
    from sqlalchemy.dialects import postgresql

    from worker.scheduler import TIMERS, _due_rows

    engine = make_engine(pg_url)
    migrate(engine)
    timers = {timer.name: timer for timer in TIMERS}
    now = datetime(2026, 4, 17, 14, tzinfo=UTC)

    def plan(stmt: Any) -> str:
        sql = stmt.compile(dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True})
        with engine.begin() as conn:
            conn.execute(text("SET LOCAL enable_seqscan = off"))
            return "\n".join(conn.execute(text(f"EXPLAIN {sql}")).scalars())

    check = timers["check"]
    try:
        assert "ix_attempts_check_sent" in plan(_due_rows(check, now))
        assert "ix_attempts_check_sent" in plan(select(func.min(check.column)).where(check.active))
    finally:
        engine.dispose()


def test_the_packet_timer_s_earliest_is_one_index_probe_per_case_status(pg_url: str) -> None:
    """The scheduler reads each timer's earliest instant every tick. The packet timer's
    (cases open, assembling, delivered or late) is read per status, each the first entry of
    ix_cases_status_next (a ``Limit`` over the index), and the least of them is the timer's:
    ``min(...) WHERE status IN (...)`` read every open case (45 ms a tick at 100,000)."""
    from sqlalchemy import insert, text
    from sqlalchemy.dialects import postgresql

    from worker.scheduler import _next_due_statement, next_due_by_timer

    engine = make_engine(pg_url)
    migrate(engine)
    t = datetime(2026, 4, 17, 13, 0, tzinfo=UTC)
    rows = [
        _case_values(id=f"c{n}", notification_id=f"N-{n}",
                     status="delivered" if n == 7 else "open",
                     next_action_at=t + timedelta(minutes=n + (0 if n == 7 else 60)))
        for n in range(3000)
    ]  # fmt: skip
    try:
        with engine.begin() as conn:
            conn.execute(insert(Case), rows)
            conn.execute(text("ANALYZE cases"))
        sql = _next_due_statement().compile(
            dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True}
        )
        with engine.connect() as conn:
            plan = "\n".join(conn.execute(text(f"EXPLAIN {sql}")).scalars())
        packet = [line for line in plan.splitlines() if "ix_cases_status_next" in line]
        assert len(packet) == 4 and plan.count("Limit") >= 4, plan
        assert "Seq Scan on cases" not in plan and "Bitmap" not in plan, plan
        assert next_due_by_timer(engine)["packet"] == t + timedelta(minutes=7)
    finally:
        engine.dispose()


def test_a_read_built_once_locks_only_its_row_and_reads_it_again_and_again(
    database_url: str,
) -> None:
    """``by_id`` statements (the hot path's reads, built at import) lock only the named
    model's table even with joined eager loads (PostgreSQL refuses FOR UPDATE on the nullable
    side of an outer join), serve any number of ids, and read None for an unknown one."""
    from sqlalchemy.dialects import postgresql
    from sqlalchemy.orm import joinedload

    from storage.db import by_id, one_by_id
    from storage.models import RecordRequest

    stmt = by_id(Case, joinedload(Case.requests).joinedload(RecordRequest.attempts), lock_of=Case)
    sql = str(stmt.compile(dialect=postgresql.dialect()))
    assert sql.rstrip().endswith("FOR UPDATE OF cases") and "LEFT OUTER JOIN attempts" in sql
    engine = make_engine(database_url)
    migrate(engine)
    sessions = make_sessionmaker(engine)
    try:
        with transaction(sessions) as s:
            for n in range(3):
                s.add(_case(id=f"case-{n}", notification_id=f"N-{n}"))
        for n in range(3):
            with transaction(sessions) as s:
                case = one_by_id(s, stmt, f"case-{n}")
                assert case.id == f"case-{n}" and case.requests == []
        with transaction(sessions) as s:
            assert one_by_id(s, stmt, "no-such-case") is None
    finally:
        engine.dispose()


def _alembic(engine: Any, verb: str, revision: str) -> None:
    from alembic import command
    from alembic.config import Config

    from storage.db import MIGRATIONS_DIR

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        getattr(command, verb)(cfg, revision)


def _attempt_columns(engine: Any) -> set[str]:
    from sqlalchemy import inspect

    return {c["name"] for c in inspect(engine).get_columns("attempts")}


def test_migration_0002_adds_vendor_drops_sending_and_keeps_attempts(
    database_url: str, tmp_path: Path
) -> None:
    """0002 adds attempts.vendor and drops attempts.sending; attempts survive the upgrade and a
    downgrade (which restores sending as false), on SQLite and PostgreSQL."""
    from sqlalchemy import text

    from tests.conftest import at, notification
    from tests.fakes import make_container
    from worker import services

    c, _, _, _ = make_container(tmp_path, at("2026-04-17T09:00:00-04:00"), database_url)
    try:
        services.intake(c, notification())
        columns = _attempt_columns(c.engine)
        assert "vendor" in columns and "sending" not in columns
        with c.engine.connect() as conn:
            before = conn.execute(text("SELECT id, outcome FROM attempts")).all()
        assert len(before) == 1
        _alembic(c.engine, "downgrade", "0001")
        assert "vendor" not in _attempt_columns(c.engine)
        with c.engine.connect() as conn:
            rows = conn.execute(text("SELECT id, outcome, sending FROM attempts")).all()
        assert [(r[0], r[1], bool(r[2])) for r in rows] == [(*before[0], False)]
        _alembic(c.engine, "upgrade", "head")
        with c.engine.connect() as conn:
            rows = conn.execute(text("SELECT id, outcome, vendor FROM attempts")).all()
            assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
        assert [tuple(r) for r in rows] == [(*before[0], None)]
    finally:
        c.close()


def test_migration_0016_fills_request_numbers_from_the_channels(
    database_url: str, tmp_path: Path
) -> None:
    """0016 creates request_numbers and fills it from the requests already stored: each
    request's fax numbers (its provider's and its designee's), normalised, once each."""
    from sqlalchemy import text

    from tests.conftest import at, notification
    from tests.fakes import make_container
    from worker import services

    c, _, _, _ = make_container(tmp_path, at("2026-04-17T09:00:00-04:00"), database_url)
    try:
        provider = dict(notification()["providers"][0])
        provider["designee"] = {
            "vendor_id": "ciox",
            "name": "Ciox Health",
            "channels": [{"kind": "fax", "number": "+18005550123"}],
        }
        second = {**provider, "provider_id": "prov-2", "designee": None}
        second["channels"] = [{"kind": "fhir", "base_url": "https://ehr.example/fhir"}]
        services.intake(c, notification(providers=[provider, second]))
        query = "SELECT number, request_id FROM request_numbers ORDER BY number"
        with c.engine.connect() as conn:
            written = [tuple(r) for r in conn.execute(text(query))]
        assert [n for n, _ in written] == ["+16175550101", "+18005550123"]
        _alembic(c.engine, "downgrade", "0015")
        _alembic(c.engine, "upgrade", "head")
        with c.engine.connect() as conn:
            assert [tuple(r) for r in conn.execute(text(query))] == written
            assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
    finally:
        c.close()


def _case(**kw: Any) -> Case:
    return Case(**_case_values(**kw))


def _case_values(**kw: Any) -> dict[str, Any]:
    """A case's column values (``kw`` overriding), for the ORM or a multi-row insert."""
    t = datetime(2026, 4, 17, 13, 0, tzinfo=UTC)
    base: dict[str, Any] = dict(
        notification_id="N-1",
        jurisdiction="MA",
        review_type="standard",
        agency_id="a",
        received_at=t,
        opened_at=t,
        due_at=t + timedelta(days=6),
        assemble_at=t,
        deliver_by=t,
        insured_member_id="M1",
        insured_name="x",
        insured_birth_date="1970-01-01",
        plan_id="P",
        dispute={},
        notification={},
        created_at=t,
    )
    base.update(kw)
    return base


def test_instants_round_trip_as_aware_utc(database_url: str) -> None:
    """An instant written in any offset comes back aware, in UTC, equal to what was written."""
    engine = make_engine(database_url)
    migrate(engine)
    sessions = make_sessionmaker(engine)
    eastern = datetime(2026, 11, 1, 1, 30, tzinfo=timezone(timedelta(hours=-5)))
    with transaction(sessions) as s:
        s.add(_case(received_at=eastern))
    with transaction(sessions) as s:
        got = s.scalars(select(Case)).one().received_at
    assert got == eastern and got.tzinfo == UTC
    engine.dispose()


def test_naive_datetime_is_refused(database_url: str) -> None:
    """Writing a naive datetime fails loudly instead of guessing a zone."""
    engine = make_engine(database_url)
    migrate(engine)
    with (
        pytest.raises(Exception, match="naive datetime"),
        transaction(make_sessionmaker(engine)) as s,
    ):
        s.add(_case(received_at=datetime(2026, 4, 17, 9, 0)))
    engine.dispose()


def test_audit_rows_cannot_be_deleted(database_url: str) -> None:
    """The audit trail is append-only on both databases."""
    engine = make_engine(database_url)
    migrate(engine)
    sessions = make_sessionmaker(engine)
    with transaction(sessions) as s:
        s.add(AuditEvent(case_id=None, at=datetime.now(UTC), kind="k", detail={}))
    with pytest.raises(AppendOnlyError), transaction(sessions) as s:
        s.delete(s.scalars(select(AuditEvent)).one())
    engine.dispose()


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[ObjectStore, Any]]:
    """The same contract runs against the local folder and against S3 (moto)."""
    if request.param == "local":
        yield LocalObjectStore(tmp_path / "objects"), None
        return
    import boto3
    from moto import mock_aws

    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket="gf-bucket")
        yield S3ObjectStore(client, "gf-bucket", "prefix/records"), client


def test_object_store_contract(store: tuple[ObjectStore, Any]) -> None:
    """put returns a URI that get reads back byte for byte; keys are content-addressed."""
    s, client = store
    data = b"%PDF-1.4 records"
    key = content_key("case-1", "inbound", data, "pdf")
    assert key.endswith(".pdf") and "/inbound/" in key
    uri = s.put(key, data, "application/pdf")
    assert s.get(uri) == data
    assert s.put(key, data, "application/pdf") == uri  # same bytes, same place
    assert UriReader(client).read(uri) == data
    with pytest.raises(ObjectNotFound):
        s.get(uri.replace(".pdf", ".missing"))


def test_s3_objects_are_encrypted_at_rest() -> None:
    """Server-side encryption is requested on every S3 write by default."""
    import boto3
    from moto import mock_aws

    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket="gf-bucket")
        s = open_store("s3://gf-bucket/p", s3_client=client)
        uri = s.put("cases/c/x.pdf", b"data")
        head = client.head_object(Bucket="gf-bucket", Key=uri.removeprefix("s3://gf-bucket/"))
        assert head["ServerSideEncryption"] == "AES256"


def test_local_store_refuses_keys_outside_its_folder(tmp_path: Path) -> None:
    """A key with '..' cannot write outside the store."""
    from storage.objects import ObjectStoreError

    with pytest.raises(ObjectStoreError):
        LocalObjectStore(tmp_path / "objects").put("../escape.pdf", b"x")
    assert not (tmp_path / "escape.pdf").exists()


@pytest.mark.parametrize(("durable", "flushes"), [(True, 1), (False, 0)])
def test_a_folder_store_flushes_each_object_to_disk_unless_it_is_scratch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, durable: bool, flushes: int
) -> None:
    """Each object is flushed to disk before it is renamed into place; a scratch folder (a
    simulation's run) skips the flush and still never shows half an object."""
    import storage.objects as objects

    calls: list[int] = []
    real_fsync = objects.os.fsync
    monkeypatch.setattr(objects.os, "fsync", lambda fd: (calls.append(fd), real_fsync(fd)))
    store = open_store(f"file://{tmp_path / 'objects'}", fsync=durable)
    uri = store.put("cases/c1/raw/a.pdf", b"%PDF-1.7 x")
    assert store.get(uri) == b"%PDF-1.7 x"
    assert len(calls) == flushes
    assert [p.name for p in (tmp_path / "objects/cases/c1/raw").iterdir()] == ["a.pdf"]


def test_migration_0009_chains_the_events_already_written(
    database_url: str, tmp_path: Path
) -> None:
    """Down to 0008 (no chain) and up again: the events already there are chained in id order
    and the trail verifies, on SQLite and PostgreSQL."""
    from storage.auditchain import verify_chain
    from tests.conftest import at, notification
    from tests.fakes import make_container
    from worker import services

    c, _, _, _ = make_container(tmp_path, at("2026-04-17T09:00:00-04:00"), database_url)
    try:
        services.intake(c, notification())
        services.intake(c, notification(notification_id="N-2"))
        before = verify_chain(c.sessions)
        assert before.ok and before.events >= 4
        _alembic(c.engine, "downgrade", "0008")
        _alembic(c.engine, "upgrade", "head")
        after = verify_chain(c.sessions)
        assert after.ok, after.describe()
        assert (after.events, after.head_seq) == (before.events, before.events)
        services.intake(c, notification(notification_id="N-3"))
        assert verify_chain(c.sessions).ok
    finally:
        c.close()
