"""Reconciliation end to end in the services, inline with fakes on a virtual clock: a lost
webhook is made good by the check timer, and a send interrupted by a crash is looked for and
adopted, never sent twice."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from connectors.base import TransientError
from simulator.documents import generate_records_pdf
from storage.db import transaction
from storage.models import Attempt, AuditEvent, RecordRequest, Sweep
from tests.conftest import at, notification
from tests.fakes import Crash, fax_delivered, fax_failed, fax_received, make_container
from worker import services
from worker.commands import OpenCase, SendAttempt
from worker.domain.lifecycle import INBOUND_SWEEP_OVERLAP, LEASE, SEND_LEASE
from worker.scheduler import tick

START = at("2026-04-17T09:00:00-04:00")
MIN = timedelta(minutes=1)


@pytest.fixture
def env(tmp_path: Path):  # type: ignore[no-untyped-def]
    c, clock, fax, _deliverer = make_container(tmp_path, START)
    yield c, clock, fax
    c.close()


def _attempt(c) -> Attempt:  # type: ignore[no-untyped-def]
    with transaction(c.sessions) as s:
        return s.scalars(select(Attempt).order_by(Attempt.number)).first()  # type: ignore[return-value]


def _audit(c, kind: str) -> list[dict]:  # type: ignore[no-untyped-def,type-arg]
    with transaction(c.sessions) as s:
        rows = s.scalars(select(AuditEvent).where(AuditEvent.kind == kind)).all()
        return [dict(r.detail) for r in rows]


def test_a_sent_fax_gets_its_status_check_after_the_threshold(env) -> None:  # type: ignore[no-untyped-def]
    """Sending a fax sets check_at to sent + 15 min (GOODFAITH_FAX_STATUS_CHECK_AFTER_S)."""
    c, _clock, _fax = env
    services.intake(c, notification())
    a = _attempt(c)
    assert (a.outcome, a.check_at) == ("sent", START + 15 * MIN)


def test_a_lost_delivered_webhook_is_reconciled_by_the_check_timer(env) -> None:  # type: ignore[no-untyped-def]
    """Given a fax whose fax.delivered webhook never came, when the check timer fires, then the
    vendor is asked and the attempt is delivered, as the webhook would have made it."""
    c, clock, fax = env
    services.intake(c, notification())
    a = _attempt(c)
    fax.statuses[a.external_id] = fax_delivered(a.external_id, START + 2 * MIN)
    clock.advance_to(START + 14 * MIN)
    tick(c)
    assert fax.status_asked == []  # not before the threshold
    clock.advance_to(START + 15 * MIN)
    tick(c)
    a = _attempt(c)
    assert (a.outcome, a.completed_at, a.check_at) == ("delivered", START + 2 * MIN, None)
    assert fax.status_asked == [a.external_id]
    assert [e["via"] for e in _audit(c, "attempt.delivered")] == ["status check"]
    assert len(fax.sent) == 1


def test_a_webhook_in_time_means_the_vendor_is_never_asked(env) -> None:  # type: ignore[no-untyped-def]
    """A final webhook clears the check: no status read at all."""
    c, clock, fax = env
    services.intake(c, notification())
    a = _attempt(c)
    services.record_fax_status(c, fax_delivered(a.external_id, START + 2 * MIN))
    clock.advance_to(START + 60 * MIN)
    tick(c)
    assert fax.status_asked == [] and _attempt(c).check_at is None


def test_a_lost_busy_webhook_is_reconciled_to_a_redial(env) -> None:  # type: ignore[no-untyped-def]
    """A status read saying failed with a busy line redials inside the same attempt."""
    c, clock, fax = env
    services.intake(c, notification())
    a = _attempt(c)
    fax.statuses[a.external_id] = fax_failed(a.external_id, START + MIN)
    clock.advance_to(START + 15 * MIN)
    tick(c)
    a = _attempt(c)
    assert (a.outcome, a.check_at, a.redial_at) == ("sent", None, START + 20 * MIN)
    clock.advance_to(START + 20 * MIN)
    tick(c)
    assert len(fax.sent) == 2 and _attempt(c).transmissions == 2
    assert _attempt(c).check_at == START + 35 * MIN  # the redial gets its own check


def test_a_fax_that_never_ends_is_asked_about_until_the_give_up_time(env) -> None:  # type: ignore[no-untyped-def]
    """Still sending at every check: asked every 15 minutes, failed at sent + 4 h, and the
    policy plans the next attempt; a vendor outage meanwhile only means asking again."""
    c, clock, fax = env
    services.intake(c, notification())
    first = _attempt(c)
    clock.advance_to(START + 15 * MIN)
    tick(c)
    assert _attempt(c).check_at == START + 30 * MIN
    fax.fail_with = TransientError("Telnyx view fax: HTTP 503")
    clock.advance_to(START + 30 * MIN)
    tick(c)
    assert _attempt(c).check_at == START + 45 * MIN
    fax.fail_with = None
    for minutes in range(45, 241, 15):
        clock.advance_to(START + minutes * MIN)
        tick(c)
    a = _attempt(c)
    assert a.id == first.id and a.outcome == "failed" and a.check_at is None
    assert a.failure_reason is not None and "no final fax status" in a.failure_reason
    assert len(fax.status_asked) == 16  # 15, 30 (503), 45, ..., 240


def test_a_crash_after_the_fax_went_out_adopts_it_and_sends_nothing_new(env) -> None:  # type: ignore[no-untyped-def]
    """Given the vendor took the fax and the worker died before writing its answer, when the
    SendAttempt message is redelivered while the send lease holds, then nothing happens; once
    it ends, the fax is found by its key and adopted (status checked at once); exactly one fax
    exists."""
    c, clock, fax = env
    fax.crash_after_send = True
    with pytest.raises(Crash):
        services.intake(c, notification())
    c.dispatcher.queue.clear()  # what the dead worker would have run next is gone
    a = _attempt(c)
    assert (a.outcome, a.transmissions, a.external_id) == ("pending", 1, None)
    assert a.sending_until == START + SEND_LEASE
    fax.crash_after_send = False
    services.run_command(c, SendAttempt(a.id))  # redelivered at once: it may be on the wire
    assert fax.lookups == [] and len(fax.sent) == 1
    clock.advance_to(START + SEND_LEASE)
    services.run_command(c, SendAttempt(a.id))
    a = _attempt(c)
    assert len(fax.sent) == 1
    assert fax.lookups == [a.idempotency_key]
    assert (a.outcome, a.transmissions, a.sending_until) == ("sent", 1, None)
    assert a.external_id == fax.ids[a.idempotency_key]
    assert a.check_at == START + SEND_LEASE  # adopted: its webhooks found no attempt: ask now
    assert [e["external_id"] for e in _audit(c, "attempt.adopted")] == [a.external_id]


def test_a_crash_before_the_vendor_had_it_sends_once_with_the_same_key(env) -> None:  # type: ignore[no-untyped-def]
    """Given a counted transmission the vendor never received, the lookup finds nothing and the
    same transmission goes out once, with the attempt's own key and its count unchanged."""
    c, _clock, fax = env
    fax.fail_with = TransientError("down")  # the first send never reaches the vendor...
    services.intake(c, notification())
    with transaction(c.sessions) as s:  # ...and the worker dies before writing that down
        a = s.scalars(select(Attempt)).one()
        a.outcome, a.completed_at, a.failure_reason, a.sent_at = "pending", None, None, None
    fax.fail_with = None
    services.run_command(c, SendAttempt(a.id))
    a = _attempt(c)
    assert [r.idempotency_key for r in fax.sent] == [a.idempotency_key]
    assert fax.lookups == [a.idempotency_key]
    assert (a.outcome, a.transmissions) == ("sent", 1)


def test_when_the_far_side_cannot_be_asked_nothing_is_sent(env) -> None:  # type: ignore[no-untyped-def]
    """A lookup that fails transiently raises (the message is retried later); no fax goes out
    meanwhile and the attempt stays as it was."""
    c, clock, fax = env
    fax.crash_after_send = True
    with pytest.raises(Crash):
        services.intake(c, notification())
    c.dispatcher.queue.clear()
    a = _attempt(c)
    fax.crash_after_send = False

    def down(request, since):  # type: ignore[no-untyped-def]
        raise TransientError("Telnyx list faxes: HTTP 503")

    fax.find_sent = down  # type: ignore[method-assign]
    clock.advance_to(START + SEND_LEASE)
    with pytest.raises(TransientError):
        services.run_command(c, SendAttempt(a.id))
    assert len(fax.sent) == 1
    a = _attempt(c)
    assert (a.outcome, a.transmissions) == ("pending", 1)
    assert a.sending_until is None  # not on the wire: the retried message may look again


def test_a_crash_mid_redial_is_re_driven_and_adopted_never_sent_twice(env) -> None:  # type: ignore[no-untyped-def]
    """Given a busy line redialled, when the worker dies after the vendor took the redial but
    before its answer was written, then the redial timer (kept as a lease) drives the attempt
    again, the redial is found by its own key and adopted: two faxes in all, none twice."""
    c, clock, fax = env
    services.intake(c, notification())
    a = _attempt(c)
    services.record_fax_status(c, fax_failed(a.external_id, START + MIN))
    first_id = a.external_id
    clock.advance_to(START + 6 * MIN)  # the redial is due at +6 (webhook at +1, 5 min later)
    fax.crash_after_send = True
    with pytest.raises(Crash):
        tick(c)  # the redial runs inline, and "dies" once the vendor has it
    c.dispatcher.queue.clear()
    fax.crash_after_send = False
    a = _attempt(c)
    assert (a.outcome, a.transmissions, a.external_id) == ("sent", 2, None)
    assert a.redial_at == START + 6 * MIN + LEASE  # the lease re-drives it
    assert fax.ids and len(fax.sent) == 2
    # a late duplicate webhook of the first transmission finds nothing to change
    services.record_fax_status(c, fax_failed(first_id, START + MIN))
    clock.advance_to(START + 6 * MIN + LEASE)
    tick(c)
    a = _attempt(c)
    assert len(fax.sent) == 2
    assert fax.lookups == [f"{a.idempotency_key}-t2"]
    assert (a.outcome, a.transmissions, a.redial_at) == ("sent", 2, None)
    assert a.external_id == fax.ids[f"{a.idempotency_key}-t2"]
    assert [e["transmission"] for e in _audit(c, "attempt.adopted")] == [2]


def test_a_lost_open_case_message_is_re_driven_by_the_opening_timer(env) -> None:  # type: ignore[no-untyped-def]
    """Given a notification taken in whose OpenCase message was lost (Redis flushed, or the
    enqueue failed after the commit), when the opening lease ends, then the scheduler opens the
    case and outreach starts; once opened, the timer is cleared."""
    c, clock, fax = env
    c.dispatcher.enqueue = lambda cmds: None  # type: ignore[method-assign]  # lost
    case_id = services.intake(c, notification()).case_id
    del c.dispatcher.enqueue
    assert _attempt(c) is None
    clock.advance_to(START + LEASE)
    cmds = tick(c)
    assert OpenCase(case_id) in cmds
    a = _attempt(c)
    assert a is not None and a.outcome == "sent" and len(fax.sent) == 1
    with transaction(c.sessions) as s:
        from storage.models import Case

        assert s.get(Case, case_id).open_at is None  # type: ignore[union-attr]


def _sweep(c) -> Sweep:  # type: ignore[no-untyped-def]
    with transaction(c.sessions) as s:
        return s.get(Sweep, "inbound_fax")  # type: ignore[return-value]


def test_an_answer_whose_fax_received_webhook_was_lost_is_found_by_the_inbound_sweep(env) -> None:  # type: ignore[no-untyped-def]
    """Given a fax delivered to the provider (the sweep is armed 30 minutes out) and the
    provider's answer received by the vendor but its fax.received webhook lost, when the sweep
    runs, then the answer is listed, taken in as the webhook would have been, and fulfils the
    request; once nothing more is awaited, the sweep rests."""
    c, clock, fax = env
    assert _sweep(c).next_at is None  # nothing awaited yet: no sweep
    services.intake(c, notification())
    a = _attempt(c)
    services.record_fax_status(c, fax_delivered(a.external_id, START + 2 * MIN))
    assert _sweep(c).next_at == START + 30 * MIN
    with transaction(c.sessions) as s:
        reference = s.scalars(select(RecordRequest)).one().reference
    fax.media["m1"] = generate_records_pdf(reference, "Example Orthopedics", "M1001", 3)
    fax.received.append(fax_received("in-1", "m1", START + 10 * MIN, "+16175550101"))
    clock.advance_to(START + 30 * MIN)
    tick(c)
    assert fax.listed_since == [START + 30 * MIN - INBOUND_SWEEP_OVERLAP]
    with transaction(c.sessions) as s:
        assert s.scalars(select(RecordRequest)).one().status == "fulfilled"
    sweep = _sweep(c)  # re-armed: the answer was still being taken in when it looked
    assert (sweep.swept_at, sweep.next_at) == (START + 30 * MIN, START + 60 * MIN)
    clock.advance_to(START + 60 * MIN)
    tick(c)
    assert _sweep(c).next_at is None  # nothing awaited any more: the sweep rests


def test_the_sweep_takes_each_answer_once_and_keeps_going_while_answers_are_awaited(env) -> None:  # type: ignore[no-untyped-def]
    """An answer whose webhook did come is not taken twice; a vendor outage means only that the
    next sweep looks back further; while a request awaits an answer the sweep repeats."""
    c, clock, fax = env
    services.intake(c, notification())
    a = _attempt(c)
    services.record_fax_status(c, fax_delivered(a.external_id, START + 2 * MIN))
    fax.fail_with = TransientError("Telnyx list faxes: HTTP 503")
    clock.advance_to(START + 30 * MIN)
    tick(c)
    fax.fail_with = None
    assert (_sweep(c).swept_at, _sweep(c).next_at) == (None, START + 60 * MIN)
    other = fax_received("in-2", "m2", START + 20 * MIN, "+16175550199")  # not our provider
    fax.media["m2"] = generate_records_pdf("UNKNOWN-REF", "Someone", "M9", 1)
    services.record_inbound_fax(c, other)  # its webhook came
    fax.received.append(other)
    clock.advance_to(START + 60 * MIN)
    tick(c)
    assert fax.listed_since[-1] == START + 60 * MIN - INBOUND_SWEEP_OVERLAP
    with transaction(c.sessions) as s:
        from storage.models import InboundItem

        assert len(s.scalars(select(InboundItem)).all()) == 1
        assert s.scalars(select(RecordRequest)).one().status == "open"
    assert _sweep(c).next_at == START + 90 * MIN  # the request still awaits an answer
