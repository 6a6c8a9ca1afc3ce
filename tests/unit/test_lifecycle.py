"""The case lifecycle rules, without a database: statuses, transitions, redial and backoff."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from worker.domain.lifecycle import (
    MAX_TRANSMISSIONS,
    CaseStatus,
    FaxStep,
    PacketKind,
    RequestStatus,
    SendAction,
    can_cancel,
    delivery_backoff,
    delivery_target_missed,
    failure_reason,
    fax_status_step,
    outreach_allowed,
    packet_to_assemble,
    ready_to_assemble,
    send_action,
    status_on_delivery,
    transmission_key,
    wants_supplemental,
)
from worker.domain.types import AttemptOutcome

T0 = datetime(2026, 4, 17, 13, 0, tzinfo=UTC)
OPEN_, FULFILLED = RequestStatus.OPEN, RequestStatus.FULFILLED


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (CaseStatus.OPEN, PacketKind.INITIAL),
        (CaseStatus.ASSEMBLING, PacketKind.INITIAL),  # an interrupted assembly runs again
        (CaseStatus.DELIVERING, None),
        (CaseStatus.DELIVERED, PacketKind.SUPPLEMENTAL),
        (CaseStatus.LATE, PacketKind.SUPPLEMENTAL),
        (CaseStatus.CANCELLED, None),
    ],
)
def test_which_packet_an_assembly_builds(status: CaseStatus, expected: PacketKind | None) -> None:
    """Open cases get their first packet, delivered ones a supplemental, others none."""
    assert packet_to_assemble(status) is expected


def test_delivery_on_the_due_instant_is_on_time_and_a_second_later_is_late() -> None:
    """``due_at`` itself is on time; anything after it is late."""
    assert status_on_delivery(T0, T0) is CaseStatus.DELIVERED
    assert status_on_delivery(T0 + timedelta(seconds=1), T0) is CaseStatus.LATE


@pytest.mark.parametrize("status", list(CaseStatus))
def test_only_cases_not_yet_delivered_can_be_cancelled(status: CaseStatus) -> None:
    """Delivered, late, cancelled and completed (campaign) cases refuse a cancel; every other
    status takes it."""
    closed = status in (
        CaseStatus.DELIVERED,
        CaseStatus.LATE,
        CaseStatus.CANCELLED,
        CaseStatus.COMPLETED,
    )
    assert can_cancel(status) is (not closed)
    assert status.closed is closed
    assert status.in_progress is (not closed)


def test_a_case_is_assembled_once_every_request_is_closed() -> None:
    """One open request keeps an open case waiting; a case past open never re-assembles."""
    assert ready_to_assemble(CaseStatus.OPEN, [FULFILLED, RequestStatus.NO_RECORDS])
    assert not ready_to_assemble(CaseStatus.OPEN, [FULFILLED, OPEN_])
    assert not ready_to_assemble(CaseStatus.ASSEMBLING, [FULFILLED])


def test_late_records_want_a_supplemental_packet_but_no_records_replies_do_not() -> None:
    """Only records after delivery start a supplemental packet."""
    assert wants_supplemental(CaseStatus.LATE, records=True)
    assert wants_supplemental(CaseStatus.DELIVERED, records=True)
    assert not wants_supplemental(CaseStatus.DELIVERED, records=False)
    assert not wants_supplemental(CaseStatus.OPEN, records=True)


def test_outreach_needs_both_the_request_and_the_case_open() -> None:
    """A closed request or a case past open stops all outreach."""
    assert outreach_allowed(OPEN_, CaseStatus.OPEN)
    assert not outreach_allowed(FULFILLED, CaseStatus.OPEN)
    assert not outreach_allowed(OPEN_, CaseStatus.CANCELLED)
    assert not outreach_allowed(OPEN_, CaseStatus.ASSEMBLING)


@pytest.mark.parametrize(
    ("outcome", "redial_due", "req", "case", "expected"),
    [
        (AttemptOutcome.PENDING, False, OPEN_, CaseStatus.OPEN, SendAction.SEND),
        (AttemptOutcome.SENT, True, OPEN_, CaseStatus.OPEN, SendAction.SEND),  # a redial
        (AttemptOutcome.SENT, False, OPEN_, CaseStatus.OPEN, SendAction.DROP),  # redelivered
        (AttemptOutcome.DELIVERED, True, OPEN_, CaseStatus.OPEN, SendAction.DROP),
        (AttemptOutcome.CANCELLED, False, OPEN_, CaseStatus.OPEN, SendAction.DROP),
        (AttemptOutcome.PENDING, False, FULFILLED, CaseStatus.OPEN, SendAction.CANCEL),
        (AttemptOutcome.PENDING, False, OPEN_, CaseStatus.CANCELLED, SendAction.CANCEL),
        (AttemptOutcome.SENT, True, OPEN_, CaseStatus.ASSEMBLING, SendAction.CANCEL),
    ],
)
def test_send_action(
    outcome: AttemptOutcome,
    redial_due: bool,
    req: RequestStatus,
    case: CaseStatus,
    expected: SendAction,
) -> None:
    """A send message sends a pending attempt or a due redial, drops stale messages, and
    cancels an attempt whose request or case closed before it went out."""
    assert send_action(outcome, redial_due, req, case) is expected


def test_each_redial_gets_its_own_key_and_the_first_keeps_the_attempts() -> None:
    """The far side dedupes by key: a redial is a new transmission of the same attempt."""
    assert transmission_key("att-r-1", 1) == "att-r-1"
    assert transmission_key("att-r-1", 2) == "att-r-1-t2"


def test_busy_lines_are_redialled_up_to_the_limit_then_the_attempt_fails() -> None:
    """Retryable failures redial until MAX_TRANSMISSIONS transmissions, then fail."""
    sent = AttemptOutcome.SENT
    for n in range(1, MAX_TRANSMISSIONS):
        assert fax_status_step(sent, False, retryable=True, transmissions=n) is FaxStep.REDIAL
    last = fax_status_step(sent, False, retryable=True, transmissions=MAX_TRANSMISSIONS)
    assert last is FaxStep.FAILED
    assert fax_status_step(sent, False, retryable=False, transmissions=1) is FaxStep.FAILED
    assert fax_status_step(sent, True, retryable=False, transmissions=1) is FaxStep.DELIVERED


@pytest.mark.parametrize(
    "final", [AttemptOutcome.DELIVERED, AttemptOutcome.FAILED, AttemptOutcome.CANCELLED]
)
def test_status_events_for_finished_attempts_are_ignored(final: AttemptOutcome) -> None:
    """Duplicate and out-of-order webhooks never reopen a finished attempt."""
    assert final.final
    assert fax_status_step(final, True, retryable=False, transmissions=1) is FaxStep.IGNORE
    assert fax_status_step(final, False, retryable=True, transmissions=1) is FaxStep.IGNORE


def test_delivery_backoff_grows_then_repeats_its_last_step() -> None:
    """1st, 2nd... transient failure wait 60, 120, 300, 600, 900 s, then 900 s for ever."""
    waits = [delivery_backoff(n).total_seconds() for n in range(1, 8)]
    assert waits == [60, 120, 300, 600, 900, 900, 900]


def test_the_delivery_target_is_missed_only_while_undelivered() -> None:
    """Past ``deliver_by`` an undelivered packet needs a person; a delivered one does not."""
    assert delivery_target_missed(T0, T0, delivered=False)
    assert not delivery_target_missed(T0 - timedelta(seconds=1), T0, delivered=False)
    assert not delivery_target_missed(T0 + timedelta(hours=1), T0, delivered=True)


def test_failure_reasons_are_clipped() -> None:
    """Vendor messages can be long: the stored reason is at most 256 characters."""
    assert len(failure_reason("x" * 1000)) == 256
