"""The audit trail as a hash chain: each event carries the SHA-256 of the one before.

``hash = SHA-256(canonical JSON of {seq, prev, case_id, at, kind, detail})``, where ``prev`` is
the previous event's hash (:data:`GENESIS` before the first) and ``at`` is ISO-8601 UTC with
microseconds. Editing an event breaks its hash; deleting or reordering one breaks the next
event's ``prev_hash``; cutting the tail short disagrees with the head row (``audit_chain``).

Appending, in two steps so that no worker waits for another to record what it did:

1. :func:`append` adds an ``audit_pending`` row in the caller's own transaction (no lock: it
   commits, or rolls back, with the work it records).
2. After that transaction commits, :func:`chain_pending` moves the pending rows, in the order
   they were written, into ``audit_events`` with their ``seq`` and hashes, and moves the head
   — one transaction, under the head row's lock (``SELECT ... FOR UPDATE``; SQLite
   transactions here are ``BEGIN IMMEDIATE``, one writer at a time). A committing worker only
   *tries* that lock (``SKIP LOCKED``): when another chainer holds it, that one takes the
   pending rows too, in batches of :data:`BATCH`. One thread per process chains at a time
   (:func:`committed`); what a race leaves pending is chained by the next commit, by every
   scheduler tick, and before :func:`verify_chain` and :func:`chain_head` read the chain.
   Production processes (many threads) leave it to one background thread each instead
   (:func:`chain_in_background`), which batches what was committed in the last few
   milliseconds into one transaction.

A pending row is evidence not yet sealed: between its commit and the next chaining (under a
second on a running system) it could be removed unnoticed, as before its commit.
"""

from __future__ import annotations

import hashlib
import json
import threading
import weakref
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, insert, or_, select, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from storage.models import AuditChain, AuditEvent, AuditPending

__all__ = [
    "GENESIS",
    "ChainCheck",
    "append",
    "chain_head",
    "chain_pending",
    "event_hash",
    "verify_chain",
]

GENESIS = "0" * 64
HEAD_ID = 1
_QUEUED = "goodfaith.audit_queued"
PAGE = 1_000
#: pending events moved into the chain per transaction
BATCH = 500


def _instant(at: datetime) -> str:
    if at.tzinfo is None:
        raise ValueError("audit instants are aware datetimes")
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def event_hash(
    seq: int, prev: str, case_id: str | None, at: datetime, kind: str, detail: Any
) -> str:
    """The chain hash of one event (hex SHA-256 of its canonical JSON)."""
    canonical = json.dumps(
        {
            "seq": seq,
            "prev": prev,
            "case_id": case_id,
            "at": _instant(at),
            "kind": kind,
            "detail": detail,
        },
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=True,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def append(s: Session, case_id: str | None, at: datetime, kind: str, detail: Any) -> None:
    """Record an event in ``s``'s transaction; it joins the chain after ``s`` commits."""
    _instant(at)  # refuse a naive instant now, not in the chainer
    # the stored form of detail (JSON round trip: tuples → lists, keys → strings) is hashed
    stored = json.loads(json.dumps(detail))
    s.add(AuditPending(case_id=case_id, at=at, kind=kind, detail=stored))
    s.info[_QUEUED] = True


class _Chainer:
    """Per engine: one thread of this process chains at a time; a commit that finds it busy
    leaves a note (``again``) that makes the busy thread look once more before it stops."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.again = False


_CHAINERS: weakref.WeakKeyDictionary[Engine, _Chainer] = weakref.WeakKeyDictionary()
_CHAINERS_LOCK = threading.Lock()


def _chainer(engine: Engine) -> _Chainer:
    with _CHAINERS_LOCK:
        chainer = _CHAINERS.get(engine)
        if chainer is None:
            chainer = _CHAINERS[engine] = _Chainer()
        return chainer


class _Background:
    """One daemon thread that chains ``engine``'s pending events: a commit only wakes it. It
    waits ``gather_s`` after the first wake-up so one transaction chains what many workers
    committed meanwhile, and it waits for the head's lock (no race with other processes).
    :meth:`stop` chains what is pending once more and ends the thread, before the engine is
    disposed: a chaining still under way then would hold a connection of the pool being
    replaced, left open until the garbage collector finds it."""

    def __init__(self, engine: Engine, gather_s: float) -> None:
        self.engine, self.gather_s = engine, gather_s
        self.wake = threading.Event()
        self.stopping = False
        self.thread = threading.Thread(target=self._run, name="audit-chainer", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        import time

        import structlog

        while True:
            self.wake.wait()
            if not self.stopping:
                time.sleep(self.gather_s)
            self.wake.clear()
            last = self.stopping  # read after clear(): a stop() after it wakes the loop again
            try:
                chain_pending(self.engine)
            except Exception as exc:  # the rows stay pending: try again, and the tick chains
                structlog.get_logger("goodfaith.audit").warning(
                    "audit.chain_deferred", error=type(exc).__name__
                )
                if not last:
                    self.wake.set()
                    time.sleep(1.0)
            if last:
                return

    def stop(self, timeout_s: float) -> None:
        self.stopping = True
        self.wake.set()  # one last chaining, then the loop ends
        self.thread.join(timeout_s)


_BACKGROUND: weakref.WeakKeyDictionary[Engine, _Background] = weakref.WeakKeyDictionary()


def chain_in_background(engine: Engine, gather_s: float = 0.05) -> None:
    """Chain ``engine``'s events in one background thread of this process instead of in each
    committing thread (worker, API and scheduler processes: many threads, many commits).
    ``gather_s``: seconds the chainer waits after a commit wakes it, to batch. End it with
    :func:`stop_background` before disposing of ``engine``."""
    with _CHAINERS_LOCK:
        if engine not in _BACKGROUND:
            _BACKGROUND[engine] = _Background(engine, gather_s)


def stop_background(engine: Engine, timeout_s: float = 30.0) -> None:
    """End ``engine``'s background chainer, if any, after it has chained what is pending
    (waiting at most ``timeout_s`` seconds); later commits chain in their own thread."""
    with _CHAINERS_LOCK:
        background = _BACKGROUND.pop(engine, None)
    if background is not None:
        background.stop(timeout_s)


def committed(s: Session) -> None:
    """After a commit that recorded events: chain what is pending, unless a chainer of this
    process or another is at it (it takes these rows too), or wake this process's background
    chainer (:func:`chain_in_background`). Never raises: a failure leaves the rows pending for
    the next chaining."""
    if not s.info.pop(_QUEUED, False):
        return
    bind = s.get_bind()
    engine = bind if isinstance(bind, Engine) else bind.engine
    background = _BACKGROUND.get(engine)
    if background is not None:
        background.wake.set()
        return
    chainer = _chainer(engine)
    chainer.again = True
    while chainer.again:
        if not chainer.lock.acquire(blocking=False):
            return  # the thread holding it sees `again` and looks once more
        try:
            chainer.again = False
            chain_pending(engine, wait=False)
        except Exception as exc:  # the rows stay pending; the scheduler's tick chains them
            import structlog

            structlog.get_logger("goodfaith.audit").warning(
                "audit.chain_deferred", error=type(exc).__name__
            )
            return
        finally:
            chainer.lock.release()


def chain_pending(engine: Engine, *, wait: bool = True) -> int:
    """Move every pending event into the chain, oldest first, :data:`BATCH` per transaction;
    returns how many. ``wait=False``: return 0 at once when another chainer holds the head."""
    with engine.connect() as conn:  # the common case: nothing pending, one light read
        if conn.execute(select(AuditPending.id).limit(1)).first() is None:
            return 0
    total = 0
    while True:
        with engine.begin() as conn:
            moved = _chain_batch(conn, wait)
        total += moved or 0
        if moved is None or moved < BATCH:
            return total


_PENDING_ROWS = select(
    AuditPending.id, AuditPending.case_id, AuditPending.at, AuditPending.kind, AuditPending.detail
).order_by(AuditPending.id)


def _chain_batch(conn: Connection, wait: bool) -> int | None:
    """One batch under the head's lock: the number chained, or None when the head is busy."""
    stmt = select(AuditChain.seq, AuditChain.hash).where(AuditChain.id == HEAD_ID)
    head = conn.execute(stmt.with_for_update(skip_locked=not wait)).one_or_none()
    if head is None:
        if conn.execute(stmt).one_or_none() is not None:
            return None  # another chainer holds it (SKIP LOCKED)
        try:  # a database built without the migrations' head row
            with conn.begin_nested():
                conn.execute(insert(AuditChain).values(id=HEAD_ID, seq=0, hash=GENESIS))
        except IntegrityError:
            return None  # another chainer made it first
        head = conn.execute(stmt.with_for_update()).one()
    rows = conn.execute(_PENDING_ROWS.limit(BATCH)).all()
    if not rows:
        return 0
    seq, prev = int(head.seq), str(head.hash)
    events = []
    for row in rows:
        seq += 1
        digest = event_hash(seq, prev, row.case_id, row.at, row.kind, row.detail)
        events.append(
            {
                "case_id": row.case_id,
                "at": row.at,
                "kind": row.kind,
                "detail": row.detail,
                "seq": seq,
                "prev_hash": prev,
                "hash": digest,
            }
        )
        prev = digest
    conn.execute(insert(AuditEvent), events)
    conn.execute(delete(AuditPending).where(AuditPending.id.in_([row.id for row in rows])))
    conn.execute(update(AuditChain).where(AuditChain.id == HEAD_ID).values(seq=seq, hash=prev))
    return len(rows)


@dataclass(frozen=True)
class ChainCheck:
    """The result of :func:`verify_chain`: ``events`` checked; ``head_seq`` / ``head_hash``
    of the intact chain (or as far as it held); on a break, the first broken event's ``seq``,
    its row ``id``, ``kind`` and ``reason``."""

    ok: bool
    events: int
    head_seq: int
    head_hash: str
    broken_seq: int | None = None
    broken_id: int | None = None
    broken_kind: str | None = None
    reason: str | None = None

    def describe(self) -> str:
        if self.ok:
            return f"audit trail intact: {self.events} events, head seq {self.head_seq} sha256 {self.head_hash}"
        where = f"event seq {self.broken_seq}" if self.broken_seq is not None else "the chain head"
        ident = f" (id {self.broken_id}, {self.broken_kind})" if self.broken_id is not None else ""
        return f"audit trail broken at {where}{ident}: {self.reason}"


_ROWS = (
    select(AuditEvent)
    .order_by(AuditEvent.seq.is_(None), AuditEvent.seq, AuditEvent.id)
    .execution_options(yield_per=PAGE)
)


def _fault(e: AuditEvent, seq: int, prev: str) -> str | None:
    """Why ``e`` does not follow the event ``seq`` whose hash is ``prev``; None when it does."""
    if e.seq is None or e.hash is None or e.prev_hash is None:
        return "the event carries no chain hash (written outside the chain)"
    if e.seq != seq + 1:
        return f"expected seq {seq + 1}: events {seq + 1}–{e.seq - 1} are missing"
    if e.prev_hash != prev:
        return "prev_hash is not the previous event's hash (removed or reordered)"
    if event_hash(e.seq, e.prev_hash, e.case_id, e.at, e.kind, e.detail) != e.hash:
        return "its content does not match its hash (the row was altered)"
    return None


def verify_chain(sessions: sessionmaker[Session]) -> ChainCheck:
    """Walk the chain in ``seq`` order (streamed) up to the head read first (events appended
    while it runs are left for the next check) and report the first broken link."""
    head_seq, head_hash = chain_head(sessions)  # chains what is pending first
    prev, seq, count = GENESIS, 0, 0
    with sessions() as s:
        rows = s.scalars(_ROWS.where(or_(AuditEvent.seq.is_(None), AuditEvent.seq <= head_seq)))
        try:
            for e in rows:
                fault = _fault(e, seq, prev)
                if fault is not None:
                    return ChainCheck(False, count, seq, prev, e.seq, e.id, e.kind, fault)
                prev, seq, count = e.hash or GENESIS, seq + 1, count + 1
        finally:
            rows.close()
    if (head_seq, head_hash) != (seq, prev):
        return ChainCheck(
            False,
            count,
            seq,
            prev,
            reason=f"the head says seq {head_seq} but the chain ends at seq {seq} "
            "(events cut from the end, or the head row altered)",
        )
    return ChainCheck(True, count, seq, prev)


def chain_head(sessions: sessionmaker[Session]) -> tuple[int, str]:
    """The head of the chain now, every event committed so far chained: (seq, hash) of the
    last event."""
    with sessions() as s:
        bind = s.get_bind()
    chain_pending(bind if isinstance(bind, Engine) else bind.engine)
    with sessions() as s:
        head = s.get(AuditChain, HEAD_ID)
        return (head.seq, head.hash) if head else (0, GENESIS)
