"""Engines, sessions and migrations, for SQLite (embedded default) and PostgreSQL.

SQLite is used by worker threads, the API and the scheduler at once: WAL journal, a busy
timeout, and ``BEGIN IMMEDIATE`` so a read that later writes never fails with a stale snapshot.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog
from sqlalchemy import Select, bindparam, create_engine, event, select, text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.orm.interfaces import LoaderOption

if TYPE_CHECKING:
    from config.settings import DatabaseSettings

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def pool_options(url: str, db: DatabaseSettings | None = None) -> dict[str, Any]:
    """``create_engine`` keywords for the PostgreSQL pool of ``db`` (its defaults when None):
    size, overflow, timeout, pre-ping, recycle, and psycopg's prepared statements (off behind
    a transaction-mode PgBouncer)."""
    from config.settings import DatabaseSettings

    db = db or DatabaseSettings()
    options: dict[str, Any] = {
        "pool_size": db.pool_size,
        "max_overflow": db.max_overflow,
        "pool_timeout": db.pool_timeout_s,
        "pool_pre_ping": db.pre_ping,
        "pool_recycle": db.pool_recycle_s,
    }
    if make_url(url).get_driver_name() == "psycopg":
        # psycopg 3: None turns server-side prepared statements off on every connection
        threshold = db.prepare_threshold if db.prepared_statements else None
        options["connect_args"] = {"prepare_threshold": threshold}
    return options


#: Seconds a SQLite transaction waits for the database: for its process's one connection
#: (:data:`_ONE_CONNECTION`), then for another process's write lock (``busy_timeout``).
_SQLITE_WAIT_S = 60
#: A SQLite file database's pool: one connection per process. Every transaction here begins
#: IMMEDIATE, so two never ran at once anyway; with one connection a waiting thread is woken
#: as soon as the connection is free, where a second connection slept in SQLite's busy
#: handler (1 to 100 ms a try), and the connection's page cache stays valid between
#: transactions instead of being re-read after every other connection's commit. A thread
#: that holds the connection must not ask for a second one (it would wait ``pool_timeout``):
#: the audit chain runs after a transaction has given its connection back (storage/models.py).
_ONE_CONNECTION = {"pool_size": 1, "max_overflow": 0, "pool_timeout": _SQLITE_WAIT_S}


def make_engine(
    url: str, db: DatabaseSettings | None = None, *, durable: bool = True, **kwargs: Any
) -> Engine:
    """An engine for ``url``; creates the folder of a SQLite file database. ``db``: the
    PostgreSQL pool settings (``GOODFAITH_DB__*``; their defaults when None); a SQLite file
    database has one connection per process (:data:`_ONE_CONNECTION`). ``durable=False``
    (SQLite only, a scratch database): SQLite never waits for the disk (``synchronous=OFF``);
    a crash of the process loses nothing, an OS crash or power cut may lose the newest
    transactions or damage the database."""
    sync = "NORMAL" if durable else "OFF"
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
            if "poolclass" not in kwargs:  # a caller's pool settings win
                kwargs = {**_ONE_CONNECTION, **kwargs}
        engine = create_engine(
            url, connect_args={"timeout": _SQLITE_WAIT_S, "check_same_thread": False}, **kwargs
        )

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute(f"PRAGMA synchronous={sync}")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute(f"PRAGMA busy_timeout={_SQLITE_WAIT_S * 1000}")
            cur.close()

        @event.listens_for(engine, "begin")
        def _begin_immediate(conn: Any) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    if parsed.get_backend_name() == "postgresql" and parsed.drivername == "postgresql":
        url = str(parsed.set(drivername="postgresql+psycopg"))
    return create_engine(url, **{**pool_options(url, db), **kwargs})


def by_id(
    model: type[Any], *options: LoaderOption, lock_of: type[Any] | None = None
) -> Select[Any]:
    """A statement reading one ``model`` row by its ``id`` (bound at execution as ``:id``)
    with loader ``options``, locked ``FOR UPDATE OF lock_of``'s table when given. Build it
    once, at import: on the hot paths, building a statement and its cache key on each call
    (what ``Session.get`` with options does) cost more CPU than the query's round trip. Run
    it with :func:`one_by_id`."""
    stmt = select(model).where(model.id == bindparam("id")).options(*options)
    return stmt.with_for_update(of=lock_of) if lock_of is not None else stmt


def one_by_id(s: Session, stmt: Select[Any], id_: str) -> Any:
    """The row ``stmt`` (from :func:`by_id`) reads for ``id_``, or None."""
    return s.execute(stmt, {"id": id_}).unique().scalar_one_or_none()


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One unit of work: commit on success, roll back on any error."""
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest migration (alembic ``upgrade head``)."""
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


#: autovacuum's defaults for when a table's statistics are due again (PostgreSQL's
#: ``autovacuum_analyze_threshold`` and ``autovacuum_analyze_scale_factor``)
_ANALYZE_THRESHOLD = 50
_ANALYZE_SCALE = 0.1


def analyze_after_load(engine: Engine, rows: int, tables: tuple[str, ...]) -> bool:
    """Refresh the planner's statistics of ``tables`` after a bulk load of ``rows`` rows into
    them, when the load is as large as what would make autovacuum analyze them (more than
    50 + 10 % of the rows the planner believes the largest holds): PostgreSQL's advice for
    populating a database ("Run ANALYZE Afterwards"). Until autovacuum's next round (a minute
    or more; never where it is off) the planner would plan the work that follows the load —
    the scheduler opening the loaded cases, their first plannings — for tables of the old
    size, e.g. a sequential scan where an index probe serves. PostgreSQL only; returns
    whether it analyzed. A failure (e.g. a role that does not own the tables) is logged and
    left to autovacuum: the load is committed already."""
    if engine.dialect.name != "postgresql" or not tables:
        return False
    try:
        with engine.connect() as conn:
            believed = conn.execute(
                text(
                    "SELECT coalesce(max(greatest(reltuples, 0)), 0) FROM pg_class "
                    "WHERE oid = ANY(CAST(:names AS regclass[]))"
                ),
                {"names": list(tables)},
            ).scalar_one()
            if rows <= _ANALYZE_THRESHOLD + _ANALYZE_SCALE * float(believed):
                return False
            # names from our own schema (a constant tuple), not input: quoted all the same
            quoted = ", ".join(conn.dialect.identifier_preparer.quote(t) for t in tables)
            conn.execute(text(f"ANALYZE {quoted}"))
            conn.commit()
    except Exception as exc:
        structlog.get_logger("goodfaith.storage").warning(
            "storage.analyze_skipped", tables=list(tables), error=type(exc).__name__
        )
        return False
    return True
