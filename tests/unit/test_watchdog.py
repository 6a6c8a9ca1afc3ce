"""The watchdog's rules, pure: which cases are overdue for their next step and what drives them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from worker.domain.lifecycle import CaseStatus, DeliveryStatus
from worker.domain.watchdog import (
    ATTENTION,
    Action,
    CaseWatch,
    Reason,
    Step,
    Verdict,
    assess,
    deadline_reason,
    flag,
    unflag,
)

ASSEMBLE_AT = datetime(2026, 4, 23, 13, 0, tzinfo=UTC)
DELIVER_BY = ASSEMBLE_AT + timedelta(hours=2)
GRACE = timedelta(minutes=20)
BEFORE = ASSEMBLE_AT - timedelta(minutes=1)
IN_GRACE = ASSEMBLE_AT + timedelta(minutes=19)
PAST_GRACE = ASSEMBLE_AT + GRACE
PAST_TARGET = DELIVER_BY


def _w(status: CaseStatus, timer: datetime | None = ASSEMBLE_AT, **kw: object) -> CaseWatch:
    return CaseWatch(status, ASSEMBLE_AT, DELIVER_BY, timer, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("watch", "now", "expected"),
    [
        (_w(CaseStatus.OPEN), BEFORE, None),
        (_w(CaseStatus.OPEN), IN_GRACE, None),
        (_w(CaseStatus.OPEN), PAST_GRACE, (Step.ASSEMBLE, Reason.NOT_ASSEMBLED, Action.ASSEMBLE)),
        (
            _w(CaseStatus.OPEN, None),
            PAST_GRACE,
            (Step.ASSEMBLE, Reason.NOT_ASSEMBLED, Action.ASSEMBLE),
        ),
        (
            _w(CaseStatus.OPEN),
            PAST_TARGET,
            (Step.ASSEMBLE, Reason.PAST_DELIVER_BY, Action.ASSEMBLE),
        ),
        (_w(CaseStatus.ASSEMBLING), IN_GRACE, None),
        (
            _w(CaseStatus.ASSEMBLING, None),
            BEFORE,
            (Step.ASSEMBLE, Reason.TIMER_LOST, Action.ASSEMBLE),
        ),
        (
            _w(CaseStatus.ASSEMBLING),
            PAST_GRACE,
            (Step.ASSEMBLE, Reason.NOT_ASSEMBLED, Action.ASSEMBLE),
        ),
        (
            _w(CaseStatus.ASSEMBLING),
            PAST_TARGET,
            (Step.ASSEMBLE, Reason.PAST_DELIVER_BY, Action.ASSEMBLE),
        ),
    ],
)
def test_assembly_is_overdue_past_the_cutoff_and_grace_or_without_a_timer(
    watch: CaseWatch, now: datetime, expected: tuple[Step, Reason, Action] | None
) -> None:
    """An open or assembling case is driven again once assemble_at + grace (or deliver_by) has
    passed; an assembling case with no timer at once; on track before that."""
    verdict = assess(watch, now, GRACE)
    assert (None if verdict is None else (verdict.step, verdict.reason, verdict.action)) == expected


PENDING = DeliveryStatus.PENDING


@pytest.mark.parametrize(
    ("watch", "now", "expected"),
    [
        (
            _w(CaseStatus.DELIVERING, None, delivery=PENDING, delivery_timer=IN_GRACE),
            PAST_GRACE,
            None,
        ),
        (
            _w(CaseStatus.DELIVERING, None, delivery=PENDING),
            BEFORE,
            (Step.DELIVER, Reason.TIMER_LOST, Action.DELIVER),
        ),
        (
            _w(CaseStatus.DELIVERING, None, delivery=PENDING, delivery_timer=PAST_TARGET),
            PAST_TARGET,
            (Step.DELIVER, Reason.PAST_DELIVER_BY, Action.DELIVER),
        ),
        (
            _w(CaseStatus.DELIVERING, None, delivery=DeliveryStatus.FAILED),
            BEFORE,
            (Step.DELIVER, Reason.DELIVERY_FAILED, Action.FLAG),
        ),
        (
            _w(CaseStatus.DELIVERING, None),
            BEFORE,
            (Step.DELIVER, Reason.DELIVERY_MISSING, Action.FLAG),
        ),
    ],
)
def test_delivery_is_driven_when_its_timer_is_lost_or_the_target_passed(
    watch: CaseWatch, now: datetime, expected: tuple[Step, Reason, Action] | None
) -> None:
    """A pending delivery without a timer, or past deliver_by, is re-driven; a failed or missing
    delivery can only be flagged for a person."""
    verdict = assess(watch, now, GRACE)
    assert (None if verdict is None else (verdict.step, verdict.reason, verdict.action)) == expected


@pytest.mark.parametrize("status", [CaseStatus.DELIVERED, CaseStatus.LATE, CaseStatus.CANCELLED])
def test_closed_cases_are_never_overdue(status: CaseStatus) -> None:
    """Delivered, late and cancelled cases are left alone, whatever their timers say."""
    far = DELIVER_BY + timedelta(days=3)
    assert assess(_w(status, None, delivery=PENDING), far, GRACE) is None
    assert deadline_reason(status, ASSEMBLE_AT, DELIVER_BY, far, GRACE) is None


def test_deadline_reason_puts_the_delivery_target_first() -> None:
    """Past deliver_by is the reason even for a case that was also never assembled."""
    assert deadline_reason(CaseStatus.OPEN, ASSEMBLE_AT, DELIVER_BY, PAST_TARGET, GRACE) == (
        Reason.PAST_DELIVER_BY
    )
    assert (
        deadline_reason(CaseStatus.DELIVERING, ASSEMBLE_AT, DELIVER_BY, PAST_GRACE, GRACE) is None
    )


def test_only_flag_verdicts_need_a_person() -> None:
    """A verdict drives a command unless its action is flag; every reason has its words."""
    assert Verdict(Step.ASSEMBLE, Reason.TIMER_LOST, Action.ASSEMBLE).drives
    assert not Verdict(Step.DELIVER, Reason.DELIVERY_FAILED, Action.FLAG).drives
    assert set(ATTENTION) == set(Reason)
    assert all(len(text) <= 100 for text in ATTENTION.values())


def test_flag_keeps_earlier_reasons_and_never_repeats_one() -> None:
    """A new reason is appended after the existing ones; a reason already there changes nothing;
    a full attention field stays as it is."""
    assert flag(None, "a") == "a"
    assert flag("a", "b") == "a; b"
    assert flag("a; b", "b") is None
    assert flag("x" * 10, "b", limit=10) is None
    assert flag("x" * 8, "bcd", limit=12) == "xxxxxxxx; bc"


def test_unflag_drops_the_resolved_reasons_and_keeps_the_others_in_order() -> None:
    """Reasons starting with the prefix go; the rest stay as they were; none left is None."""
    eoc = "evidence of coverage"
    both = f"{eoc} not found: add it; late fax; {eoc} missing: packet held"
    assert unflag(both, eoc) == "late fax"
    assert unflag("a; b", eoc) == "a; b"
    assert unflag(f"{eoc} missing", eoc) is None
    assert unflag(None, eoc) is None
