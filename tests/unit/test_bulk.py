"""A campaign's first attempts in batches (worker/services/bulk.py): the same rows as one
message a request, and no batch ever holds a request back (it splits into single messages)."""

from __future__ import annotations

import threading
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from structlog.testing import capture_logs

from storage.db import transaction
from storage.models import Attempt, AuditEvent, Case, DeadLetter, RecordRequest
from tests.conftest import at
from tests.fakes import Crash, Recorded, make_container, run_until
from worker import services
from worker.commands import Command, FirstAttempts, PlanOutreach, SendAttempt
from worker.domain.lifecycle import SEND_LEASE
from worker.scheduler import tick
from worker.services import bulk
from worker.services.outreach import LetterDraft

START = at("2026-04-17T09:00:00-04:00")  # a Friday, in MA business hours
HEADER = "member_id,member_name,birth_date,provider_id,provider_name,npi,fax,fhir,request,due_date"


def _csv(rows: int, *, provider: str = "prov-{i}", member: str = "M{i:04d}") -> str:
    lines = [HEADER]
    for i in range(rows):
        lines.append(
            f"{member.format(i=i)},Member {i},1970-01-0{1 + i % 9},{provider.format(i=i)},"
            f"Clinic {i},,+1617555{i:04d},,Office notes 2025,2026-05-29"
        )
    return "\n".join(lines) + "\n"


def _opened(c: Any, *csvs: str) -> list[Command]:
    """Load each campaign and run one scheduler tick; the commands it enqueued."""
    for n, text in enumerate(csvs):
        services.load_campaign(c, {"name": f"UR {n}", "csv": text}, "test", lambda *a: None)
    inline, c.dispatcher = c.dispatcher, Recorded()
    try:
        return tick(c)
    finally:
        c.dispatcher = inline


def _env(tmp: Path, database_url: str) -> Any:
    return make_container(tmp, START, database_url, authorization_fallback=None)


def _state(c: Any, prefix: str) -> dict[str, Any]:
    """Per member of the campaign whose member ids start with ``prefix`` (by the rest of the
    id): each attempt's fields that are not ids, its request's timer and status, and the kinds
    of its case's audit events."""
    out: dict[str, Any] = {}
    with transaction(c.sessions) as s:
        for case in s.scalars(select(Case)):
            if not case.insured_member_id.startswith(prefix):
                continue
            (r,) = case.requests
            attempts = [
                (
                    a.number, a.reason, a.channel, a.destination, a.outcome, a.transmissions,
                    a.vendor, a.planned_at, a.sent_at, a.check_at, a.sending_until,
                    a.letter_uri is not None, a.external_id is not None,
                )
                for a in sorted(r.attempts, key=lambda a: a.number)
            ]  # fmt: skip
            kinds = sorted(s.scalars(select(AuditEvent.kind).where(AuditEvent.case_id == case.id)))
            out[case.insured_member_id.removeprefix(prefix)] = (
                attempts, r.status, r.next_action_at, kinds
            )  # fmt: skip
    return out


def test_a_batch_writes_what_one_message_a_request_writes(
    tmp_path: Path, database_url: str
) -> None:
    """Two like campaigns opened in one tick, one sent in a FirstAttempts batch and the other
    by one PlanOutreach per request, leave the same attempts, timers and audit trails; each
    request gets one fax."""
    c, _, fax, _ = _env(tmp_path, database_url)
    try:
        (opened,) = _opened(c, _csv(4, member="A{i:04d}"), _csv(4, member="B{i:04d}"))
        assert isinstance(opened, FirstAttempts) and len(opened.ids) == 8
        with transaction(c.sessions) as s:
            members = dict(
                s.execute(
                    select(RecordRequest.id, Case.insured_member_id)
                    .join(Case)
                    .where(RecordRequest.id.in_(opened.ids))
                ).all()
            )
        batch = [r for r in opened.ids if members[r].startswith("A")]
        c.dispatcher.enqueue([FirstAttempts(",".join(batch))])
        c.dispatcher.enqueue(PlanOutreach(r) for r in opened.ids if r not in batch)
        got, want = _state(c, "A"), _state(c, "B")
        assert got == want
        assert len(got) == 4
        for attempts, status, next_action_at, kinds in got.values():
            (attempt,) = attempts
            assert attempt[4] == "sent" and attempt[5] == 1 and attempt[11] and attempt[12]
            assert status == "open" and next_action_at > START + timedelta(days=1)
            assert kinds.count("attempt.planned") == 1 and kinds.count("attempt.sent") == 1
        assert len({r.reference for r in fax.sent}) == len(fax.sent) == 8
    finally:
        c.close()


def test_a_planning_error_splits_the_batch_and_writes_none_of_it(
    tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One request whose planning raises: the batch's transaction is rolled back whole and one
    PlanOutreach per request takes its place; each then goes out on its own."""
    c, _, fax, _ = _env(tmp_path, database_url)
    try:
        (batch,) = _opened(c, _csv(3))
        assert isinstance(batch, FirstAttempts)
        bad = batch.ids[1]
        plan = bulk.plan_request

        def failing(s: Any, r: RecordRequest, now: Any) -> list[Command]:
            if r.id == bad:
                raise RuntimeError("a planning bug")
            return plan(s, r, now)

        monkeypatch.setattr(bulk, "plan_request", failing)
        with capture_logs() as logs:
            follow = services.run_command(c, batch)
        assert follow == [PlanOutreach(request_id) for request_id in batch.ids]
        assert [e["step"] for e in logs if e["event"] == "batch.split"] == ["plan"]
        with transaction(c.sessions) as s:
            assert s.scalars(select(Attempt)).all() == []
            assert "attempt.planned" not in s.scalars(select(AuditEvent.kind)).all()
        assert fax.sent == []
        c.dispatcher.enqueue(follow)  # singles: the bad request is planned by plan_outreach
        assert len({r.reference for r in fax.sent}) == len(fax.sent) == 3
    finally:
        c.close()


def test_an_error_before_any_transmission_splits_the_batch_into_sends(
    tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The letters cannot be stored: nothing is counted or held, and one SendAttempt per
    planned attempt takes the batch's place; each then goes out once."""
    c, _, fax, _ = _env(tmp_path, database_url)
    try:
        (batch,) = _opened(c, _csv(3))
        write = LetterDraft.write

        def store_down(self: LetterDraft, store: Any) -> str:
            raise OSError("object store unavailable")

        monkeypatch.setattr(LetterDraft, "write", store_down)
        follow = services.run_command(c, batch)
        with transaction(c.sessions) as s:
            attempts = s.scalars(select(Attempt)).all()
            assert sorted(follow, key=str) == sorted((SendAttempt(a.id) for a in attempts), key=str)
            assert [(a.transmissions, a.sending_until, a.outcome) for a in attempts] == [
                (0, None, "pending")
            ] * 3
        assert fax.sent == []
        monkeypatch.setattr(LetterDraft, "write", write)
        c.dispatcher.enqueue(follow)
        with transaction(c.sessions) as s:
            assert [(a.transmissions, a.outcome) for a in s.scalars(select(Attempt))] == [
                (1, "sent")
            ] * 3
        assert len(fax.sent) == 3
    finally:
        c.close()


def test_a_send_that_crashes_holds_its_attempt_and_the_others_are_recorded(
    tmp_path: Path, database_url: str
) -> None:
    """The far side takes one fax and the send raises what no connector translated (a crash
    mid-send): the batch's other answers are written and their requests planned; that attempt
    stays held, and once its send lease ends it is looked for and adopted, never sent twice."""
    c, clock, fax, _ = _env(tmp_path, database_url)
    try:
        (batch,) = _opened(c, _csv(3))
        with transaction(c.sessions) as s:
            crashing = s.get(RecordRequest, batch.ids[1])
            assert crashing is not None
            reference = crashing.reference

        def crash_one(request: Any) -> None:
            if request.reference == reference:
                fax.ids[request.idempotency_key] = "fax-taken"
                raise Crash("worker died before the answer was written")

        fax.on_send = crash_one
        assert services.run_command(c, batch) == []
        with transaction(c.sessions) as s:
            by_ref = {a.request.reference: a for a in s.scalars(select(Attempt))}
            held = by_ref.pop(reference)
            assert (held.outcome, held.transmissions, held.external_id) == ("pending", 1, None)
            assert held.sending_until == START + SEND_LEASE
            assert {a.outcome for a in by_ref.values()} == {"sent"}
            assert all(
                a.request.next_action_at > START + timedelta(days=1) for a in by_ref.values()
            )
        fax.on_send = None
        run_until(c, clock, START + SEND_LEASE + timedelta(minutes=30))
        with transaction(c.sessions) as s:
            adopted = s.scalars(select(Attempt).where(Attempt.id == held.id)).one()
            assert (adopted.outcome, adopted.transmissions) == ("sent", 1)
            assert adopted.external_id == "fax-taken"
        assert len(fax.sent) == 2 and reference not in {r.reference for r in fax.sent}
        assert fax.lookups == [held.idempotency_key]
    finally:
        c.close()


def test_a_slow_batch_hands_what_it_has_not_sent_to_single_messages(
    tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past its send budget (here: at once), a batch sends no more: the rest are freed and
    sent alone, each looked for at the far side first (its transmission was counted), then
    sent once with its own key."""
    c, _, fax, _ = _env(tmp_path, database_url)
    try:
        (batch,) = _opened(c, _csv(3))
        monkeypatch.setattr(bulk, "SEND_BUDGET", timedelta(0))
        follow = services.run_command(c, batch)
        assert len(fax.sent) == 1 and [type(cmd) for cmd in follow] == [SendAttempt] * 2
        with transaction(c.sessions) as s:
            waiting = [s.get(Attempt, cmd.attempt_id) for cmd in follow]  # type: ignore[union-attr]
            assert [(a.outcome, a.transmissions, a.sending_until) for a in waiting if a] == [
                ("pending", 1, None)
            ] * 2
        c.dispatcher.enqueue(follow)
        assert len({r.idempotency_key for r in fax.sent}) == len(fax.sent) == 3
        assert len(fax.lookups) == 2
        with transaction(c.sessions) as s:
            assert [(a.outcome, a.transmissions) for a in s.scalars(select(Attempt))] == [
                ("sent", 1)
            ] * 3
    finally:
        c.close()


def test_two_campaigns_chasing_one_member_share_one_fax_in_a_batch(
    tmp_path: Path, database_url: str
) -> None:
    """Two campaigns ask the same provider for the same member: their requests, opened in one
    batch, coalesce into one chase, one fax, documented in both requests' logs."""
    c, _, fax, _ = _env(tmp_path, database_url)
    try:
        cmds = _opened(c, _csv(1, provider="prov-x"), _csv(1, provider="prov-x"))
        assert [type(cmd) for cmd in cmds] == [FirstAttempts]
        c.dispatcher.enqueue(cmds)
        assert len(fax.sent) == 1
        with transaction(c.sessions) as s:
            attempts = s.scalars(select(Attempt)).all()
            assert len(attempts) == 2
            (sending,) = [a for a in attempts if a.served_by == a.id]
            (served,) = [a for a in attempts if a.served_by != a.id]
            assert served.served_by == sending.id and served.outcome == sending.outcome == "sent"
    finally:
        c.close()


def test_a_dead_lettered_batch_is_recorded_as_each_request_s_planning(
    tmp_path: Path, database_url: str
) -> None:
    """A batch dramatiq gave up on: one dead letter per request (PlanOutreach, what an ops
    retry enqueues), each flagging its own case."""
    c, _, _, _ = _env(tmp_path, database_url)
    try:
        (batch,) = _opened(c, _csv(2))
        assert isinstance(batch, FirstAttempts)
        services.record_dead_letter(c, batch, "first_attempts", "msg-1", "TimeLimitExceeded", 5)
        with transaction(c.sessions) as s:
            letters = s.scalars(select(DeadLetter).order_by(DeadLetter.message_id)).all()
            assert [(x.command, x.entity_id, x.message_id) for x in letters] == [
                ("PlanOutreach", batch.ids[0], "msg-1/0"),
                ("PlanOutreach", batch.ids[1], "msg-1/1"),
            ]
            flagged = s.scalars(select(Case.attention)).all()
            assert len(flagged) == 2 and all(f and "dead" in f for f in flagged)
    finally:
        c.close()


def test_batches_sharing_members_at_once_never_deadlock_or_send_twice(
    tmp_path: Path, pg_url: str
) -> None:
    """PostgreSQL: two campaigns ask the same providers for the same members, and their
    batches run at once, the requests in opposite orders. The first-planning locks are taken
    in one order, so neither batch splits on a deadlock; each member gets one fax."""
    c, _, fax, _ = make_container(tmp_path, START, pg_url, authorization_fallback=None)
    try:
        a, b = (_csv(8, provider="prov-x", member="M{i:04d}") for _ in range(2))
        services.load_campaign(c, {"name": "A", "csv": a}, "test", lambda *x: None)
        services.load_campaign(c, {"name": "B", "csv": b}, "test", lambda *x: None)
        with transaction(c.sessions) as s:
            by_campaign: dict[str, list[str]] = {}
            for r in s.scalars(select(RecordRequest).order_by(RecordRequest.reference)):
                by_campaign.setdefault(r.case.campaign_id or "", []).append(r.id)
                r.case.open_at = None  # opened here, not by a tick
        first, second = by_campaign.values()
        batches = [FirstAttempts(",".join(first)), FirstAttempts(",".join(reversed(second)))]
        follow: list[Any] = []
        barrier = threading.Barrier(2)

        def run(batch: FirstAttempts) -> None:
            barrier.wait()
            follow.extend(services.run_command(c, batch))

        with capture_logs() as logs:
            threads = [threading.Thread(target=run, args=(x,)) for x in batches]
            for t in threads:
                t.start()
            for t in threads:
                t.join(60)
        assert [e for e in logs if e["event"] == "batch.split"] == []
        c.dispatcher.enqueue(follow)
        assert sorted(x.patient.name for x in fax.sent) == sorted(f"Member {i}" for i in range(8))
        with transaction(c.sessions) as s:
            assert len(s.scalars(select(Attempt)).all()) == 16
    finally:
        c.close()
