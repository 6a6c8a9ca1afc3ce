"""The PostgreSQL pool of each process comes from ``GOODFAITH_DB__*`` (storage/db.py): size,
overflow, timeout, pre-ping, recycle, and psycopg's prepared statements (off behind a
transaction-mode PgBouncer). Engines connect lazily: nothing here reaches a server."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.pool import QueuePool

from config.settings import DatabaseSettings, Settings
from storage.db import make_engine
from storage.objects import LocalObjectStore

PG = "postgresql://postgres@127.0.0.1:5432/nowhere"


class Captured(Exception):
    """Raised instead of connecting, once the connect arguments are seen."""


def connect_params(engine: Engine) -> dict[str, Any]:
    """The keyword arguments the engine would hand psycopg's ``connect``."""
    seen: dict[str, Any] = {}

    @event.listens_for(engine, "do_connect")
    def _capture(_dialect: Any, _rec: Any, _cargs: Any, cparams: dict[str, Any]) -> None:
        seen.update(cparams)
        raise Captured

    with pytest.raises(Captured):
        engine.connect()
    return seen


def pool_of(engine: Engine) -> tuple[Any, ...]:
    pool = engine.pool
    assert isinstance(pool, QueuePool)
    return (pool.size(), pool._max_overflow, pool._timeout, pool._pre_ping, pool._recycle)


def test_defaults_are_the_former_fixed_values() -> None:
    engine = make_engine(PG, Settings().db)
    assert engine.driver == "psycopg"
    assert pool_of(engine) == (10, 10, 30.0, True, -1)
    assert connect_params(engine)["prepare_threshold"] == 5  # psycopg's own default


def test_every_pool_setting_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {
        "POOL_SIZE": "24",
        "MAX_OVERFLOW": "6",
        "POOL_TIMEOUT_S": "2.5",
        "PRE_PING": "false",
        "POOL_RECYCLE_S": "1800",
        "PREPARED_STATEMENTS": "false",
    }.items():
        monkeypatch.setenv(f"GOODFAITH_DB__{name}", value)
    engine = make_engine(PG, Settings().db)
    assert pool_of(engine) == (24, 6, 2.5, False, 1800)
    # None: psycopg never prepares a statement on the server (PgBouncer transaction pooling)
    assert connect_params(engine)["prepare_threshold"] is None


def test_prepare_threshold_is_used_while_prepared_statements_are_on() -> None:
    engine = make_engine(PG, DatabaseSettings(prepare_threshold=2))
    assert connect_params(engine)["prepare_threshold"] == 2


def test_sqlite_keeps_its_own_set_up(tmp_path: Path) -> None:
    """The pool settings are PostgreSQL's: SQLite's engine takes no psycopg arguments."""
    engine = make_engine(f"sqlite:///{tmp_path / 'x.db'}", DatabaseSettings(pool_size=3))
    with engine.connect():
        pass
    assert engine.driver == "pysqlite"


@pytest.mark.parametrize(("pool_size", "overflow", "warned"), [(2, 0, True), (4, 6, False)])
def test_a_pool_no_larger_than_the_threads_is_named_at_start(
    tmp_path: Path, pool_size: int, overflow: int, warned: bool
) -> None:
    """Threads beyond the pool wait POOL_TIMEOUT_S and fail: the process says so at start."""
    from structlog.testing import capture_logs

    from worker.wiring import InlineDispatcher, build_container

    settings = Settings(
        database_url=PG,
        db=DatabaseSettings(pool_size=pool_size, max_overflow=overflow),
        worker_threads=8,
        object_store=f"file://{tmp_path / 'objects'}",
        eoc_library=f"file://{tmp_path / 'eoc'}",
    )
    with capture_logs() as logs:
        c = build_container(settings, dispatcher=InlineDispatcher(), migrate_schema=False)
        c.close()
    events = [e for e in logs if e["event"] == "db.pool_below_threads"]
    assert bool(events) is warned
    if warned:
        assert (events[0]["pool"], events[0]["worker_threads"]) == (2, 8)


def test_a_sqlite_file_database_has_one_connection_per_process(tmp_path: Path) -> None:
    """Every SQLite transaction begins IMMEDIATE, so a second connection only ever waited:
    one connection, and a thread waits for it as long as for another process's lock."""
    engine = make_engine(f"sqlite:///{tmp_path / 'x.db'}")
    assert pool_of(engine)[:3] == (1, 0, 60)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 60_000
    engine.dispose()


@pytest.mark.parametrize(("durable", "synchronous"), [(True, 1), (False, 0)])
def test_a_scratch_sqlite_database_does_not_wait_for_the_disk(
    tmp_path: Path, durable: bool, synchronous: int
) -> None:
    """WAL with synchronous=NORMAL (1) by default; OFF (0) for a simulation's scratch
    database, which is re-run, not recovered."""
    engine = make_engine(f"sqlite:///{tmp_path / 'x.db'}", durable=durable)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == synchronous
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    engine.dispose()


def test_durable_writes_reach_the_database_and_the_object_store(tmp_path: Path) -> None:
    """GOODFAITH_DURABLE_WRITES (default true) is what the container builds both with; a
    simulation's settings turn it off."""
    from simulator.driver import _settings, _telnyx
    from worker.wiring import InlineDispatcher, build_container

    assert Settings().durable_writes is True
    fax = _telnyx("http://127.0.0.1:2")
    run = _settings(tmp_path, "http://127.0.0.1:1", fax, None, None)
    assert run.durable_writes is False  # the run's own folder: scratch
    named = f"sqlite:///{tmp_path / 'mine.db'}"
    assert _settings(tmp_path, "http://127.0.0.1:1", fax, named, None).durable_writes is True
    for durable in (True, False):
        settings = run.model_copy(update={"durable_writes": durable})
        c = build_container(settings, dispatcher=InlineDispatcher())
        try:
            with c.engine.connect() as conn:
                assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == int(durable)
            assert isinstance(c.store, LocalObjectStore) and c.store.fsync is durable
        finally:
            c.close()


def test_sqlite_threads_take_turns_on_the_one_connection(tmp_path: Path) -> None:
    """Eight threads, 40 read-then-write transactions each: none is lost, none fails, and the
    one connection serves them all (it is opened once)."""
    import threading

    from sqlalchemy import text

    engine = make_engine(f"sqlite:///{tmp_path / 'x.db'}")
    opened: list[object] = []
    event.listen(engine, "connect", lambda conn, _rec: opened.append(conn))
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE n (v INTEGER)")
        conn.exec_driver_sql("INSERT INTO n VALUES (0)")
    failures: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(40):
                with engine.begin() as conn:
                    v = conn.execute(text("SELECT v FROM n")).scalar_one()
                    conn.execute(text("UPDATE n SET v = :v"), {"v": v + 1})
        except BaseException as exc:  # reported below
            failures.append(exc)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with engine.connect() as conn:
        total = conn.exec_driver_sql("SELECT v FROM n").scalar()
    engine.dispose()
    assert failures == []
    assert total == 8 * 40
    assert len(opened) == 1


def test_the_pool_settings_a_caller_gives_win_over_sqlite_s_own(tmp_path: Path) -> None:
    from sqlalchemy.pool import NullPool

    url = f"sqlite:///{tmp_path / 'x.db'}"
    assert pool_of(make_engine(url, pool_timeout=2))[:3] == (1, 0, 2)
    assert isinstance(make_engine(url, poolclass=NullPool).pool, NullPool)
    assert make_engine("sqlite://").pool.__class__.__name__ == "SingletonThreadPool"
