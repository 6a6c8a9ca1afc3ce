"""Reconciliation rules, without a database: when an attempt was left mid-send, what a send
command does with it, and when the fax vendor is asked about a transmission (and given up on)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from worker.domain.lifecycle import (
    CaseStatus,
    RequestStatus,
    SendAction,
    StatusChecks,
    left_mid_send,
    send_action,
)
from worker.domain.types import AttemptOutcome

T0 = datetime(2026, 4, 17, 13, 0, tzinfo=UTC)
MIN = timedelta(minutes=1)
PENDING, SENT = AttemptOutcome.PENDING, AttemptOutcome.SENT


@pytest.mark.parametrize(
    ("outcome", "transmissions", "has_external_id", "expected"),
    [
        (PENDING, 0, False, False),  # planned, never counted: a plain first send
        (PENDING, 1, False, True),  # counted, the vendor's answer never recorded: a crash
        (PENDING, 2, False, True),
        (PENDING, 1, True, False),  # the answer was recorded
        (SENT, 2, False, True),  # a redial counted, its answer never recorded: a crash
        (SENT, 2, True, False),  # a redial answered (or a sent fax): the webhooks own it
        (AttemptOutcome.FAILED, 1, False, False),
    ],
)
def test_an_attempt_is_left_mid_send_when_counted_and_without_an_external_id(
    outcome: AttemptOutcome, transmissions: int, has_external_id: bool, expected: bool
) -> None:
    """The "sending" state is derived from the row: pending or sent (a redial clears the
    previous transmission's id when it starts), counted, no external id."""
    assert left_mid_send(outcome, transmissions, has_external_id) is expected


def test_a_send_command_looks_before_resending_an_attempt_left_mid_send() -> None:
    """Given a pending attempt counted once without an external id, when its send message is
    redelivered, then it looks at the far side first; a fresh one is sent, a closed one is
    cancelled, whatever its count."""
    open_ = (RequestStatus.OPEN, CaseStatus.OPEN)
    assert send_action(PENDING, False, *open_, transmissions=1) is SendAction.LOOK
    assert send_action(PENDING, False, *open_, transmissions=0) is SendAction.SEND
    assert send_action(PENDING, False, *open_, 1, has_external_id=True) is SendAction.SEND
    closed = (RequestStatus.FULFILLED, CaseStatus.OPEN)
    assert send_action(PENDING, False, *closed, transmissions=1) is SendAction.CANCEL
    assert send_action(SENT, True, *open_, transmissions=1, has_external_id=True) is (
        SendAction.SEND
    )
    # a redial left mid-send by a crash: its timer fires again, and it looks first
    assert send_action(SENT, True, *open_, transmissions=2) is SendAction.LOOK


def test_a_send_command_for_an_attempt_on_the_wire_is_dropped() -> None:
    """Another command is transmitting the attempt now (its send lease holds): whatever the
    rest says — send, look, even cancel — this one does nothing, so the attempt is never on the
    wire twice and never marked cancelled while it goes out."""
    open_ = (RequestStatus.OPEN, CaseStatus.OPEN)
    closed = (RequestStatus.FULFILLED, CaseStatus.OPEN)
    for args in [
        (PENDING, False, *open_, 0),
        (PENDING, False, *open_, 1),
        (SENT, True, *open_, 2),
        (PENDING, False, *closed, 1),
    ]:
        assert send_action(*args, in_flight=True) is SendAction.DROP  # type: ignore[arg-type]


def test_the_first_status_check_comes_after_the_threshold() -> None:
    """A transmission made at T0 is first checked at T0 + after (15 min by default)."""
    assert StatusChecks().first(T0) == T0 + 15 * MIN
    assert StatusChecks(after=5 * MIN).first(T0) == T0 + 5 * MIN


def test_checks_repeat_every_interval_while_the_vendor_is_not_final() -> None:
    """A check at T0+15 min that finds the fax still queued is followed by one 15 min later."""
    checks = StatusChecks()
    assert checks.next(T0, T0 + 15 * MIN) == T0 + 30 * MIN
    # an early check (an adopted fax is checked at once) waits a full interval, and never
    # comes before the first check
    assert checks.next(T0, T0 + 2 * MIN) == T0 + 17 * MIN
    assert StatusChecks(every=MIN).next(T0, T0 + 2 * MIN) == T0 + 15 * MIN


def test_the_last_check_is_at_the_give_up_time_and_then_it_gives_up() -> None:
    """Checks stop at sent + give_up: the last one lands exactly there, the next is None."""
    checks = StatusChecks(after=15 * MIN, every=60 * MIN, give_up=4 * 60 * MIN)
    assert checks.next(T0, T0 + 230 * MIN) == T0 + 240 * MIN
    assert checks.next(T0, T0 + 240 * MIN) is None
    assert checks.next(T0, T0 + 300 * MIN) is None
