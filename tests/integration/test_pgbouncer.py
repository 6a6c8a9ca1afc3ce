"""goodfaith behind PgBouncer in transaction pooling mode: each transaction may run on another
server connection, so nothing may rely on session state. The driver (psycopg 3) prepares a
statement on the server after it ran a few times on one connection; behind such a pooler that
breaks, so ``GOODFAITH_DB__PREPARED_STATEMENTS=false`` turns it off (storage/db.py)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError

from config.settings import DatabaseSettings
from storage.db import make_engine, transaction
from storage.models import Case, RecordRequest
from tests.conftest import at, notification
from tests.fakes import make_container, run_until
from tests.integration.pgbouncer import running_pgbouncer
from worker import services

START = at("2026-04-17T09:00:00-04:00")
BEHIND_PGBOUNCER = DatabaseSettings(prepared_statements=False, pool_size=4, max_overflow=4)


def test_the_pipeline_runs_behind_transaction_pooling(tmp_path: Path, pg_url: str) -> None:
    """Migrations, concurrent intake and a week of the pipeline (three attempts to each
    unresponsive provider, then the packet) through a transaction-mode PgBouncer holding two
    server connections for the many connections of goodfaith's pool."""
    with running_pgbouncer(pg_url, server_connections=2) as bouncer:
        c, clock, fax, deliverer = make_container(tmp_path, START, bouncer.url, BEHIND_PGBOUNCER)
        try:
            errors: list[BaseException] = []

            def open_cases(worker: int) -> None:
                try:
                    for i in range(3):
                        member = {
                            "member_id": f"M-{worker}-{i}",
                            "name": "Jane Roe",
                            "birth_date": "1971-02-03",
                        }  # one chase each, no coalescing
                        services.intake(
                            c, notification(notification_id=f"PGB-{worker}-{i}", insured=member)
                        )
                except BaseException as exc:
                    errors.append(exc)

            threads = [threading.Thread(target=open_cases, args=(w,)) for w in range(4)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            assert errors == []
            assert len(fax.sent) == 12  # each case's first attempt went out at intake
            run_until(c, clock, at("2026-04-24T00:00:00-04:00"))
            with transaction(c.sessions) as s:
                statuses = s.scalars(select(RecordRequest.status)).all()
                assert sorted(statuses) == ["unresponsive"] * 12
                assert s.scalar(select(Case).where(Case.delivered_at.is_(None)).limit(1)) is None
            assert len(fax.sent) == 36  # three documented attempts each
            assert len(deliverer.submissions) == 12
        finally:
            c.close()


def _two_clients_repeat_a_query(url: str, db: DatabaseSettings) -> list[int]:
    """Two pooled connections of one engine run the same query in turn, one transaction at
    a time; behind a one-server-connection PgBouncer both land on the same server session."""
    engine = make_engine(url, db)
    try:
        with engine.connect() as a, engine.connect() as b:
            seen = []
            for conn in (a, b):
                for n in range(4):
                    seen.append(conn.execute(text("SELECT CAST(:n AS integer)"), {"n": n}).one()[0])
                    conn.commit()
            return seen
    finally:
        engine.dispose()


def test_prepared_statements_break_transaction_pooling_and_the_setting_turns_them_off(
    pg_url: str,
) -> None:
    """The failure the setting exists for, shown against the real pooler: with psycopg's
    prepared statements on, the second client's statement collides with the first's on the
    shared server session; with ``prepared_statements=false`` the same runs clean."""
    with running_pgbouncer(pg_url, server_connections=1) as bouncer:
        prepared = DatabaseSettings(prepared_statements=True, prepare_threshold=1)
        with pytest.raises(DBAPIError, match="prepared statement"):
            _two_clients_repeat_a_query(bouncer.url, prepared)
        unprepared = DatabaseSettings(prepared_statements=False)
        assert _two_clients_repeat_a_query(bouncer.url, unprepared) == [0, 1, 2, 3] * 2
