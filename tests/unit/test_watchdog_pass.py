"""The scheduler's watchdog pass, run inline with fake connectors on a virtual clock: a case
whose step was lost or failed is driven again from the database and flagged, never left silent."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from connectors.base import PermanentError
from storage.db import transaction
from storage.models import AuditEvent, Case, Delivery
from tests.conftest import at, notification
from tests.fakes import make_container
from worker import services
from worker.commands import AssemblePacket, Command, DeliverPacket
from worker.readmodels.dashboard import dashboard
from worker.readmodels.risk import metric_lines
from worker.scheduler import next_due, tick
from worker.wiring import InlineDispatcher

START = at("2026-04-17T09:00:00-04:00")


class LossyDispatcher(InlineDispatcher):
    """Runs commands inline, but loses every command ``lose`` picks (a dead-lettered message)."""

    def __init__(self) -> None:
        super().__init__()
        self.lose: Any = lambda cmd: False
        self.lost: list[Command] = []

    def enqueue(self, commands: Iterable[Command]) -> None:
        keep = []
        for cmd in commands:
            (self.lost if self.lose(cmd) else keep).append(cmd)
        super().enqueue(keep)


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Any]:
    dispatcher = LossyDispatcher()
    c, clock, _fax, deliverer = make_container(tmp_path, START)
    c.dispatcher, dispatcher.container = dispatcher, c
    yield c, clock, dispatcher, deliverer
    c.close()


def _run_until(c: Any, clock: Any, until: datetime) -> None:
    while (nxt := next_due(c)) is not None and nxt <= until:
        clock.advance_to(max(nxt, clock.now()))
        tick(c)
    clock.advance_to(until)
    tick(c)


def _case(c: Any) -> Case:
    with transaction(c.sessions) as s:
        case = s.scalars(select(Case)).one()
        s.expunge(case)
        return case


def _overdue_events(c: Any) -> list[dict[str, Any]]:
    with transaction(c.sessions) as s:
        rows = s.scalars(select(AuditEvent).where(AuditEvent.kind == "case.overdue"))
        return [dict(e.detail) for e in rows]


def test_lost_assembly_is_driven_to_delivery_before_deliver_by(env: Any) -> None:
    """Every AssemblePacket before assemble_at + grace is lost and the case timer is gone with
    the crashed worker: the watchdog assembles and delivers the packet before deliver_by,
    audits case.overdue, and flags the case."""
    c, clock, dispatcher, deliverer = env
    services.intake(c, notification())
    case = _case(c)
    grace = timedelta(seconds=c.settings.watchdog_grace_s)
    dispatcher.lose = lambda cmd: (
        isinstance(cmd, AssemblePacket) and clock.now() < (case.assemble_at + grace)
    )
    _run_until(c, clock, case.assemble_at)
    assert dispatcher.lost == [AssemblePacket(case.id)]
    with transaction(c.sessions) as s:  # the worker died after clearing the timer
        s.get(Case, case.id).next_action_at = None  # type: ignore[union-attr]
    assert next_due(c) is None  # nothing in the timer table would ever run the case again
    clock.advance_to(case.assemble_at + grace)
    cmds = tick(c)
    assert cmds[0] == AssemblePacket(case.id)
    after = _case(c)
    assert after.status == "delivered" and after.delivered_at <= after.deliver_by  # type: ignore[operator]
    assert len(deliverer.submissions) == 1
    assert _overdue_events(c) == [
        {"step": "assemble", "reason": "not_assembled", "action": "assemble"}
    ]
    assert "not assembled by the assembly cutoff" in (after.attention or "")
    row = dashboard(c)["active"][0]  # flagged: still on the watch list, with its reason
    assert row["case_id"] == case.id and "watchdog" in row["attention"]


def test_pending_delivery_without_a_timer_is_delivered_again(env: Any) -> None:
    """A DeliverPacket lost with its timer (delivering, nothing scheduled) is re-driven at once."""
    c, clock, dispatcher, deliverer = env
    dispatcher.lose = lambda cmd: isinstance(cmd, DeliverPacket)
    services.intake(c, notification())
    case = _case(c)
    _run_until(c, clock, case.assemble_at)
    with transaction(c.sessions) as s:
        d = s.scalars(select(Delivery)).one()
        d.next_action_at = None
    assert _case(c).status == "delivering" and deliverer.submissions == []
    dispatcher.lose = lambda cmd: False
    clock.advance(60)
    cmds = tick(c)
    assert [type(x) for x in cmds] == [DeliverPacket]
    assert _case(c).status == "delivered"
    assert _overdue_events(c) == [{"step": "deliver", "reason": "timer_lost", "action": "deliver"}]


def test_permanent_delivery_failure_is_flagged_once_and_counted(env: Any) -> None:
    """A packet the agency refuses cannot be driven: the case is flagged (once, however many
    ticks pass), counted in goodfaith_cases_at_risk, and past deliver_by also overdue."""
    c, clock, _dispatcher, deliverer = env
    deliverer.fail_with = PermanentError("422 rejected")
    services.intake(c, notification())
    case = _case(c)
    _run_until(c, clock, case.assemble_at + timedelta(minutes=1))
    for _ in range(3):
        clock.advance(3600)
        assert tick(c) == []
    after = _case(c)
    assert after.status == "delivering"
    assert "failed permanently" in (after.attention or "")
    assert _overdue_events(c) == [
        {"step": "deliver", "reason": "delivery_failed", "action": "flag"}
    ]
    lines = metric_lines(c)
    assert 'goodfaith_cases_at_risk{reason="delivery_failed"} 1' in lines
    assert 'goodfaith_cases_at_risk{reason="past_deliver_by"} 1' in lines
    assert "goodfaith_cases_overdue 1" in lines
    assert dashboard(c)["active"][0]["overdue"] == "past_deliver_by"


def test_on_track_cases_are_left_alone(env: Any) -> None:
    """A case delivered on time never meets the watchdog: no overdue audit, no flag, no metric."""
    c, clock, _dispatcher, deliverer = env
    services.intake(c, notification())
    _run_until(c, clock, at("2026-04-24T12:00:00-04:00"))
    assert len(deliverer.submissions) == 1 and _overdue_events(c) == []
    assert _case(c).attention is None
    lines = metric_lines(c)
    assert "goodfaith_cases_overdue 0" in lines
    assert all(line.endswith(" 0") for line in lines if line.startswith("goodfaith_cases_at"))


def test_delivery_flags_join_the_reasons_already_there(env: Any) -> None:
    """A case already flagged (here: no authorization with the notification) whose agency then
    refuses the packet keeps both reasons: a delivery failure adds its own, it does not
    replace what ops still has to do, and the watchdog's own flag joins them."""
    c, clock, _dispatcher, deliverer = env
    deliverer.fail_with = PermanentError("422 rejected")
    services.intake(c, notification())
    earlier = "no authorization for release with the notification"
    with transaction(c.sessions) as s:
        s.scalars(select(Case)).one().attention = earlier
    case = _case(c)
    _run_until(c, clock, case.assemble_at + timedelta(minutes=1))
    clock.advance(3600)
    tick(c)
    reasons = (_case(c).attention or "").split("; ")
    assert reasons[0] == earlier
    assert "delivery to the agency failed: PermanentError" in reasons
    assert any("failed permanently" in r for r in reasons)  # the watchdog's, once
    assert len(reasons) == len(set(reasons)) == 3


def test_flag_case_adds_a_reason_once_after_the_others() -> None:
    """Every service flags a case through one rule: a new reason goes after those already
    there and says so (True); one already there changes nothing (False), and never drops the
    others (packet exclusions once replaced the whole field when their reason repeated)."""
    from worker.services.mapping import flag_case

    case = Case(attention="no authorization for release with the notification")
    excluded = "1 document(s) left out of packet 1: see document.excluded"
    assert flag_case(case, excluded) is True
    assert flag_case(case, excluded) is False
    assert case.attention == f"no authorization for release with the notification; {excluded}"
    fresh = Case()
    assert flag_case(fresh, excluded) is True and fresh.attention == excluded
