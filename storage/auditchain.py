"""The audit trail as a hash chain: each event carries the SHA-256 of the one before.

``hash = SHA-256(canonical JSON of {seq, prev, case_id, at, kind, detail})``, where ``prev`` is
the previous event's hash (:data:`GENESIS` before the first) and ``at`` is ISO-8601 UTC with
microseconds. Editing an event breaks its hash; deleting or reordering one breaks the next
event's ``prev_hash``; cutting the tail short disagrees with the head row (``audit_chain``).

Appending: :func:`append` queues an event on the session; when the session commits, the
queued events are sealed (``before_commit``): the head row is locked (``SELECT ... FOR
UPDATE`` on PostgreSQL; SQLite transactions here are ``BEGIN IMMEDIATE``, one writer at a
time), the events get the next ``seq`` numbers and their hashes, and the head moves. The
session's other changes are flushed before the lock is taken, so the head is the last lock a
transaction takes and is held only for its commit: concurrent workers serialise there, and
the chain stays one chain.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session, sessionmaker

from storage.models import AuditChain, AuditEvent

__all__ = ["GENESIS", "ChainCheck", "append", "chain_head", "event_hash", "verify_chain"]

GENESIS = "0" * 64
HEAD_ID = 1
_PENDING = "goodfaith.audit_pending"
PAGE = 1_000


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


def append(s: Session, event: AuditEvent) -> None:
    """Queue ``event``; it is sealed into the chain and inserted when ``s`` commits."""
    # the stored form of detail (JSON round trip: tuples → lists, keys → strings) is hashed
    event.detail = json.loads(json.dumps(event.detail))
    if not s.in_transaction():  # so that a rollback, even of nothing else, discards it
        s.begin()
    s.info.setdefault(_PENDING, []).append(event)


def seal(s: Session) -> None:
    """Give the queued events their place in the chain (called before commit)."""
    pending: list[AuditEvent] = s.info.pop(_PENDING, [])
    if not pending:
        return
    s.flush()  # every other change first: the head lock is the transaction's last
    head = s.scalars(
        select(AuditChain).where(AuditChain.id == HEAD_ID).with_for_update()
    ).one_or_none()
    if head is None:  # a database built without the migrations' head row
        head = AuditChain(id=HEAD_ID, seq=0, hash=GENESIS)
        s.add(head)
    for event in pending:
        event.seq = head.seq + 1
        event.prev_hash = head.hash
        event.hash = event_hash(
            event.seq, head.hash, event.case_id, event.at, event.kind, event.detail
        )
        s.add(event)
        head.seq, head.hash = event.seq, event.hash
    s.flush()


def discard(s: Session) -> None:
    """Forget queued events (the transaction ended without sealing them: rolled back)."""
    s.info.pop(_PENDING, None)


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
    head_seq, head_hash = chain_head(sessions)
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
    """The head of the chain now: (seq, hash) of the last event."""
    with sessions() as s:
        head = s.get(AuditChain, HEAD_ID)
        return (head.seq, head.hash) if head else (0, GENESIS)
