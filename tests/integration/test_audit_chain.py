"""The audit trail is one hash chain, on SQLite and PostgreSQL: intact after real work and
concurrent writers, and any edit, removal or cut of a row is found and named."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import select, text

from config.settings import get_settings
from storage.auditchain import GENESIS, event_hash, verify_chain
from storage.db import make_engine, make_sessionmaker, migrate, transaction
from storage.models import AuditChain, AuditEvent
from tests.conftest import at, notification
from tests.fakes import api_client, make_container
from worker import services
from worker.cli import main
from worker.services.audit import audit
from worker.wiring import Container

START = at("2026-04-17T09:00:00-04:00")


@pytest.fixture
def c(tmp_path: Path, database_url: str) -> Iterator[Container]:
    container, _clock, _fax, _d = make_container(tmp_path, START, database_url)
    yield container
    container.close()


def _write(c: Container, n: int, kind: str = "test.event") -> None:
    with transaction(c.sessions) as s:
        for i in range(n):
            audit(s, START + timedelta(seconds=i), kind, None, i=i, what=("a", 1))


def _sql(c: Container, statement: str, **params: object) -> None:
    with c.engine.begin() as conn:  # below the ORM: its append-only guard does not apply
        conn.execute(text(statement), params)


def test_real_work_leaves_an_intact_chain(c: Container) -> None:
    """Intake, cancel and key events chain from the genesis hash; the head row is the last."""
    services.intake(c, notification())
    services.intake(c, notification(notification_id="OPP-2"))
    with transaction(c.sessions) as s:
        case_id = s.scalars(
            select(AuditEvent.case_id).where(AuditEvent.case_id.is_not(None))
        ).first()
    assert case_id and services.cancel_case(c, case_id, "withdrawn")
    check = verify_chain(c.sessions)
    assert check.ok, check.describe()
    with transaction(c.sessions) as s:
        events = list(s.scalars(select(AuditEvent).order_by(AuditEvent.seq)))
        head = s.get(AuditChain, 1)
    assert [e.seq for e in events] == list(range(1, len(events) + 1)) and len(events) >= 5
    assert events[0].prev_hash == GENESIS
    assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(events))
    assert head is not None and (head.seq, head.hash) == (events[-1].seq, events[-1].hash)
    assert (check.events, check.head_hash) == (len(events), head.hash)


def test_a_rolled_back_transaction_leaves_no_event_behind(c: Container) -> None:
    """Events queued in a transaction that rolls back are never sealed, then or later."""
    s = c.sessions()
    audit(s, START, "lost", None)
    s.rollback()
    s.commit()
    s.close()
    _write(c, 1)
    with transaction(c.sessions) as s2:
        assert list(s2.scalars(select(AuditEvent.kind))) == ["test.event"]
    assert verify_chain(c.sessions).ok


def test_concurrent_writers_make_one_chain(c: Container) -> None:
    """Eight threads appending at once (separate transactions) leave one contiguous chain."""
    barrier = threading.Barrier(8)
    errors: list[BaseException] = []

    def writer(k: int) -> None:
        try:
            barrier.wait()
            for _ in range(10):
                _write(c, 3, kind=f"writer.{k}")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    check = verify_chain(c.sessions)
    assert check.ok, check.describe()
    assert check.events == check.head_seq == 8 * 10 * 3


@pytest.mark.parametrize("damage", ["edit", "delete", "truncate", "unchained"])
def test_tampering_is_found_and_the_first_broken_event_named(c: Container, damage: str) -> None:
    """An edited detail, a deleted middle row, a cut tail and a row slipped in without a hash
    are each reported; the report names the first broken event."""
    _write(c, 6)
    with transaction(c.sessions) as s:
        third = s.scalars(select(AuditEvent).where(AuditEvent.seq == 3)).one()
    if damage == "edit":
        _sql(c, "UPDATE audit_events SET kind = 'forged' WHERE id = :i", i=third.id)
        expected, reason = 3, "altered"
    elif damage == "delete":
        _sql(c, "DELETE FROM audit_events WHERE id = :i", i=third.id)
        expected, reason = 4, "missing"
    elif damage == "truncate":
        _sql(c, "DELETE FROM audit_events WHERE seq = 6")
        expected, reason = None, "head"
    else:
        _sql(
            c,
            "INSERT INTO audit_events (case_id, at, kind, detail) VALUES (NULL, :at, 'x', '{}')",
            at=datetime(2026, 4, 17, tzinfo=UTC).replace(tzinfo=None),
        )
        expected, reason = None, "no chain hash"
    check = verify_chain(c.sessions)
    assert not check.ok
    assert check.broken_seq == expected
    assert reason in check.describe()


def test_event_hash_covers_every_field() -> None:
    """Changing any one hashed field changes the hash."""
    base = (1, GENESIS, "case", START, "k", {"a": 1})
    h = event_hash(*base)
    for i, other in enumerate(
        (2, "1" * 64, "other", START + timedelta(microseconds=1), "j", {"a": 2})
    ):
        changed = list(base)
        changed[i] = other
        assert event_hash(*changed) != h  # type: ignore[arg-type]


def test_audit_verify_cli_exits_0_then_1_naming_the_event(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`goodfaith audit verify`: 0 and the head on an intact trail; after one row is edited,
    1 and one line naming that event's seq, id and kind."""
    url = f"sqlite:///{tmp_path / 'audit.db'}"
    monkeypatch.setenv("GOODFAITH_DATABASE_URL", url)
    get_settings.cache_clear()
    engine = make_engine(url)
    try:
        migrate(engine)
        sessions = make_sessionmaker(engine)
        with transaction(sessions) as s:
            for i in range(4):
                audit(s, START, f"kind.{i}", None, i=i)
        ok = CliRunner().invoke(main, ["audit", "verify"])
        assert ok.exit_code == 0 and "intact: 4 events" in ok.stdout
        with engine.begin() as conn:
            conn.execute(text("UPDATE audit_events SET detail = '{\"i\": 9}' WHERE seq = 2"))
        bad = CliRunner().invoke(main, ["audit", "verify"])
        assert bad.exit_code == 1
        assert bad.stderr.count("\n") == 1
        assert "broken at event seq 2" in bad.stderr and "kind.1" in bad.stderr
    finally:
        engine.dispose()
        get_settings.cache_clear()


def test_exports_carry_the_chain_head(c: Container) -> None:
    """The JSON export and the CSV export's header carry the head the rows are as new as."""
    client = api_client(c, "compliance")
    services.intake(c, notification())
    head = verify_chain(c.sessions)
    as_json = client.get("/v1/exports/attempts").json()
    assert as_json["audit_chain_head"] == {"seq": head.head_seq, "hash": head.head_hash}
    as_csv = client.get("/v1/exports/attempts", params={"format": "csv"})
    assert as_csv.headers["goodfaith-audit-chain-head"] == f"{head.head_seq}:{head.head_hash}"
    verified = client.get("/v1/audit/verify").json()
    assert verified["ok"] is True and verified["head_hash"] == head.head_hash
    client.close()


def test_sqlite_chains_a_commit_s_events_on_its_one_connection(tmp_path: Path) -> None:
    """A SQLite engine has one connection (storage/db.py), and a commit chains its events
    with a connection of its own: only once the transaction has given its connection back.
    Chaining at commit, connection still held, would wait out the pool's timeout (here 2 s)
    and leave the events pending."""
    from storage.models import AuditPending

    engine = make_engine(f"sqlite:///{tmp_path / 'one.db'}", pool_timeout=2)
    try:
        migrate(engine)
        sessions = make_sessionmaker(engine)
        began = time.monotonic()
        for i in range(3):
            with transaction(sessions) as s:
                audit(s, START, f"kind.{i}", None, i=i)
        took = time.monotonic() - began
        with transaction(sessions) as s:
            assert s.scalars(select(AuditPending.kind)).all() == []
        check = verify_chain(sessions)
    finally:
        engine.dispose()
    assert took < 2, f"three audited commits took {took:.1f} s"
    assert check.ok and check.events == 3, check.describe()


def test_a_commit_never_waits_for_the_chain_head(tmp_path: Path, pg_url: str) -> None:
    """While another transaction holds the chain head's lock (PostgreSQL), an audited commit
    goes through at once, its event pending; once the lock is released the next chaining
    seals it."""
    from storage.auditchain import chain_pending
    from storage.models import AuditPending

    c, _clock, _fax, _d = make_container(tmp_path, START, pg_url)
    _write(c, 2)
    holder = c.engine.connect()
    held = holder.begin()
    holder.execute(text("SELECT seq FROM audit_chain WHERE id = 1 FOR UPDATE"))
    try:
        done = threading.Event()

        def commit() -> None:
            _write(c, 1, kind="while.locked")
            done.set()

        t = threading.Thread(target=commit)
        t.start()
        assert done.wait(10), "an audited commit waited for the chain head"
        t.join()
        with transaction(c.sessions) as s:
            assert s.scalars(select(AuditPending.kind)).all() == ["while.locked"]
    finally:
        held.rollback()
        holder.close()
    assert chain_pending(c.engine) == 1
    check = verify_chain(c.sessions)
    c.close()
    assert check.ok and check.events == 3, check.describe()


def test_a_background_chainer_seals_what_workers_commit(c: Container) -> None:
    """chain_in_background: commits only wake the chainer thread; their events are sealed
    within moments, in one chain."""
    from storage.auditchain import chain_head, chain_in_background, stop_background
    from storage.models import AuditPending

    chain_in_background(c.engine, gather_s=0.01)
    for _ in range(5):
        _write(c, 3)
    deadline = time.monotonic() + 10
    while True:
        with transaction(c.sessions) as s:
            pending = s.scalars(select(AuditPending.id)).all()
        if not pending:
            break
        assert time.monotonic() < deadline, f"{len(pending)} events still pending"
        time.sleep(0.05)
    assert chain_head(c.sessions)[0] == 15
    assert verify_chain(c.sessions).ok
    stop_background(c.engine)


def test_stopping_the_background_chainer_seals_what_is_pending_and_ends_it(
    c: Container,
) -> None:
    """A container closing stops its chainer before disposing of the engine: what was
    committed is chained first (here during the chainer's gathering wait), then the thread
    ends, holding no connection of the pool being disposed."""
    from storage.auditchain import _BACKGROUND, chain_head, chain_in_background, stop_background
    from storage.models import AuditPending

    chain_in_background(c.engine, gather_s=0.5)
    thread = _BACKGROUND[c.engine].thread
    _write(c, 4)  # wakes the chainer, which gathers for 0.5 s
    stop_background(c.engine)
    assert not thread.is_alive()
    assert c.engine not in _BACKGROUND
    with transaction(c.sessions) as s:
        assert s.scalars(select(AuditPending.id)).all() == []
    assert chain_head(c.sessions)[0] == 4
    stop_background(c.engine)  # again: nothing to stop


def test_a_container_closing_ends_its_background_chainer(tmp_path: Path, database_url: str) -> None:
    """``background_audit=True`` (the production processes, simulations): closing the
    container ends the chainer thread before the engine is disposed."""
    from storage.auditchain import _BACKGROUND

    c, _clock, _fax, _d = make_container(tmp_path, START, database_url, background_audit=True)
    engine = c.engine
    thread = _BACKGROUND[engine].thread
    _write(c, 2)
    c.close()
    assert not thread.is_alive() and engine not in _BACKGROUND


def test_events_recorded_before_a_savepoint_are_chained_at_the_commit(c: Container) -> None:
    """A savepoint released inside a transaction that recorded events (its release fires
    SQLAlchemy's after_commit too): the events are chained when the transaction commits, not
    at the release, where the chainer could not see them (and, on SQLite, would wait for the
    transaction's own lock)."""
    from storage.auditchain import chain_head
    from storage.models import AuditPending

    with transaction(c.sessions) as s:
        audit(s, START, "test.before_savepoint", None)
        with s.begin_nested():
            audit(s, START, "test.in_savepoint", None)
    with transaction(c.sessions) as s:
        assert s.scalars(select(AuditPending.id)).all() == []
    assert chain_head(c.sessions)[0] == 2
    assert verify_chain(c.sessions).ok
