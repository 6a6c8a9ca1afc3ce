"""Request coalescing: one outreach per provider serves every open request for one member;
each request's log documents the attempts that served it, and the answer serves them all."""

from __future__ import annotations

import io
import threading
from pathlib import Path
from typing import Any

import pytest
from pypdf import PdfReader
from sqlalchemy import select

from simulator.documents import generate_records_pdf
from storage.db import transaction
from storage.models import Attempt, AuditEvent, Case, Document, RecordRequest
from tests.conftest import at, notification
from tests.fakes import Recorded, fax_delivered, fax_received, make_container, run_until
from worker import services
from worker.commands import PlanOutreach, SendAttempt
from worker.domain.lanes import Lane
from worker.readmodels.campaigns import campaign_detail
from worker.readmodels.export import iter_attempts
from worker.services.lanes import lanes_of

#: Thursday 16 April 2026, 20:00 in Boston: after hours, so a standard review's first attempt
#: waits for Friday's opening, and a second review received meanwhile joins the chase.
EVENING = at("2026-04-16T20:00:00-04:00")


@pytest.fixture
def env(tmp_path: Path, database_url: str):  # type: ignore[no-untyped-def]
    """On SQLite and PostgreSQL: the chase takes row locks (``FOR UPDATE OF``)."""
    c, clock, fax, deliverer = make_container(tmp_path, EVENING, database_url)
    yield c, clock, fax, deliverer
    c.close()


def _requests(c) -> dict[str, RecordRequest]:  # type: ignore[no-untyped-def]
    """Requests by their case's notification id, attempts loaded."""
    with transaction(c.sessions) as s:
        out = {}
        for r in s.scalars(select(RecordRequest)):
            _ = r.attempts, r.case
            out[r.case.notification_id] = r
        return out


def _reply(c, clock, fax, reference: str, name: str) -> None:  # type: ignore[no-untyped-def]
    fax.media[name] = generate_records_pdf(reference, "Example Orthopedics", "M1001", 3)
    c.dispatcher.enqueue(
        services.record_inbound_fax(c, fax_received(name, name, clock.now(), "+16175550101"))
    )


def test_two_reviews_for_one_member_share_one_fax_and_both_packets_carry_the_records(
    env,
) -> None:  # type: ignore[no-untyped-def]
    """Two reviews for the same member and provider: one fax goes out, both logs show it, and
    the one reply is attached to both requests and delivered in both packets."""
    c, clock, fax, deliverer = env
    services.intake(c, notification(notification_id="A", received_at=EVENING.isoformat()))
    services.intake(c, notification(notification_id="B", received_at=EVENING.isoformat()))
    run_until(c, clock, at("2026-04-17T10:00:00-04:00"))
    assert len(fax.sent) == 1  # one fax at Friday's opening, for both
    reqs = _requests(c)
    a, b = reqs["A"], reqs["B"]
    assert a.chase_id == b.chase_id is not None
    (sent,) = [x for r in (a, b) for x in r.attempts if x.served_by == x.id]
    (doc,) = [x for r in (a, b) for x in r.attempts if x.served_by not in (None, x.id)]
    assert doc.served_by == sent.id and doc.outcome == sent.outcome == "sent"
    assert doc.request_id != sent.request_id and doc.number == 1
    # the letter names the other request it serves
    other = a if sent.request_id == b.id else b
    with transaction(c.sessions) as s:
        a_row = s.get(Attempt, sent.id)
        assert a_row is not None and a_row.letter_uri is not None
        letter = c.store.get(a_row.letter_uri)
    text = " ".join(PdfReader(io.BytesIO(letter)).pages[0].extract_text().split())
    assert other.reference in text
    # a status webhook for the fax is documented on both requests
    c.dispatcher.enqueue(
        services.record_fax_status(
            c, fax_delivered(fax.ids[fax.sent[0].idempotency_key], clock.now())
        )
    )
    reqs = _requests(c)
    assert {x.outcome for r in reqs.values() for x in r.attempts} == {"delivered"}
    # the export shows, on the request the fax also served, which reference it went out under
    rows = {row["notification_id"]: row for row in iter_attempts(c)}
    served = "A" if sent.request_id == b.id else "B"
    assert rows[served]["sent_under"] == (b if served == "A" else a).reference
    assert rows[served]["external_id"] == fax.ids[fax.sent[0].idempotency_key]
    assert rows["B" if served == "A" else "A"]["sent_under"] is None
    # the reply quotes one reference; it serves both
    _reply(c, clock, fax, a.reference, "reply")
    run_until(c, clock, at("2026-04-24T00:00:00-04:00"))
    reqs = _requests(c)
    assert {r.status for r in reqs.values()} == {"fulfilled"}
    assert len(fax.sent) == 1
    assert len(deliverer.submissions) == 2
    for sub in deliverer.submissions:
        records = [p for p in sub.manifest["parts"] if p["kind"] == "records"]
        assert len(records) == 1 and records[0]["pages"] == 3
    with transaction(c.sessions) as s:
        docs = list(s.scalars(select(Document)))
        assert len(docs) == 2 and len({d.case_id for d in docs}) == 2
        assert len({d.sha256 for d in docs}) == 1
        kinds = {
            (e.case_id, e.kind)
            for e in s.scalars(select(AuditEvent).where(AuditEvent.kind == "attempt.planned"))
        }
        assert len(kinds) == 2  # each case's own trail documents the attempt


def test_a_chase_letter_is_handed_out_until_every_request_it_serves_is_withdrawn(
    env,
) -> None:  # type: ignore[no-untyped-def]
    """Withdrawing the review whose request sends the chase's fax leaves the letter available
    (it still asks for the other review's records); withdrawing both closes it (404)."""
    from worker.services.coalescing import withdrawn

    c, clock, _fax, _ = env
    ids = {}
    for name in ("A", "B"):
        ids[name] = services.intake(
            c, notification(notification_id=name, received_at=EVENING.isoformat())
        ).case_id
    run_until(c, clock, at("2026-04-17T10:00:00-04:00"))
    reqs = _requests(c)
    (sent,) = [x for r in reqs.values() for x in r.attempts if x.served_by == x.id]
    driver = "A" if sent.request_id == reqs["A"].id else "B"
    other = "B" if driver == "A" else "A"
    services.cancel_case(c, ids[driver], "withdrawn")
    with transaction(c.sessions) as s:
        a = s.get(Attempt, sent.id)
        assert a is not None and a.request.status == "cancelled"
        assert not withdrawn(s, a)
    services.cancel_case(c, ids[other], "withdrawn")
    with transaction(c.sessions) as s:
        a = s.get(Attempt, sent.id)
        assert a is not None and withdrawn(s, a)


def _chart_being_chased(c, clock):  # type: ignore[no-untyped-def]
    """A one-chart campaign for the member at prov-1, loaded Friday 17 April at 09:00 and run
    to 09:30 (its first attempt sent)."""
    clock.advance_to(at("2026-04-17T09:00:00-04:00"))
    csv_text = (
        "member_id,member_name,birth_date,provider_id,provider_name,fax,request,due_date\n"
        "M1001,Jane Roe,1971-02-03,prov-1,Example Orthopedics,+16175550101,"
        "Charts 2025,2026-05-29\n"
    )
    loaded = services.load_campaign(c, {"name": "RA 2025", "csv": csv_text}, "test")
    run_until(c, clock, at("2026-04-17T09:30:00-04:00"))
    return loaded


def test_a_review_joining_a_campaign_chase_goes_first_and_the_answer_serves_both(
    env,
) -> None:  # type: ignore[no-untyped-def]
    """A campaign chart is being chased; a review for the same member and provider arrives:
    the review's deadline drives (its attempt goes at once, documented on the campaign request
    too), and the reply to the campaign's reference closes both and fills the review's packet."""
    c, clock, fax, deliverer = env
    loaded = _chart_being_chased(c, clock)
    assert len(fax.sent) == 1  # the campaign's first attempt
    clock.advance_to(at("2026-04-20T10:00:00-04:00"))
    services.intake(c, notification(received_at=clock.now().isoformat(), review_type="expedited"))
    assert len(fax.sent) == 2  # the review cannot wait for the campaign's next attempt
    reqs = _requests(c)
    review = reqs["OPP-2026-000123"]
    chart = next(r for r in reqs.values() if r.case.campaign_id == loaded.campaign_id)
    assert review.chase_id == chart.chase_id is not None
    assert [x.served_by for x in review.attempts] == [review.attempts[0].id]
    assert [x.number for x in chart.attempts] == [1, 2]
    assert chart.attempts[1].served_by == review.attempts[0].id
    # the review's work is expedited even though it serves a campaign request
    lanes = lanes_of([SendAttempt(review.attempts[0].id)], sessions=c.sessions)
    assert lanes == [Lane.EXPEDITED]
    _reply(c, clock, fax, chart.reference, "chart-reply")
    run_until(c, clock, at("2026-04-22T00:00:00-04:00"))
    reqs = _requests(c)
    assert {r.status for r in reqs.values()} == {"fulfilled"}
    assert len(deliverer.submissions) == 1  # the review's packet; a campaign delivers none
    records = [p for p in deliverer.submissions[0].manifest["parts"] if p["kind"] == "records"]
    assert len(records) == 1
    with transaction(c.sessions) as s:
        chart_case = s.scalars(select(Case).where(Case.campaign_id == loaded.campaign_id)).one()
        assert chart_case.status == "completed"
    detail = campaign_detail(c, loaded.campaign_id)
    assert detail is not None
    assert detail["records_received"] == {"documents": 1, "requests": 1}
    assert detail["attempts_coalesced"] == 1


def test_when_the_driving_request_closes_the_chase_goes_on_for_the_others(env) -> None:  # type: ignore[no-untyped-def]
    """The driver (earliest deadline) is cancelled: the other request is woken and chased on
    its own schedule until it has its three attempts."""
    c, clock, fax, _ = env
    first = services.intake(c, notification(notification_id="A", received_at=EVENING.isoformat()))
    later = at("2026-04-16T21:00:00-04:00")
    clock.advance_to(later)
    services.intake(c, notification(notification_id="B", received_at=later.isoformat()))
    run_until(c, clock, at("2026-04-17T10:00:00-04:00"))
    assert len(fax.sent) == 1
    assert services.cancel_case(c, first.case_id, "withdrawn")
    run_until(c, clock, at("2026-04-27T00:00:00-04:00"))
    b = _requests(c)["B"]
    made = [x for x in b.attempts if x.sent_at is not None]
    assert len(made) >= 3
    assert b.attempts[0].served_by not in (None, b.attempts[0].id)  # served by A's fax


def _at_once(c: Any, plans: list[Any]) -> tuple[list[Any], list[BaseException]]:
    """Run ``plans`` on one thread each, released together; (follow-ups, errors)."""
    start = threading.Barrier(len(plans))
    errors: list[BaseException] = []
    follow: list[Any] = []

    def plan(cmd: PlanOutreach) -> None:
        start.wait()
        try:
            follow.extend(services.run_command(c, cmd))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=plan, args=(cmd,)) for cmd in plans]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return follow, errors


def test_two_first_plannings_at_once_for_one_member_at_one_provider_make_one_chase(
    tmp_path: Path, pg_url: str
) -> None:
    """Two workers plan, at the same moment, the first attempt of two requests for one member
    at one provider (PostgreSQL: they really run at once). Each used to lock its own row and
    then the other's: PostgreSQL aborted one as a deadlock (retried a second later), or,
    when neither saw the other yet, both started a chase and the provider got two faxes. A
    lock per member and provider, taken before either row, makes the second wait for the
    first and join its chase: no error, one chase, one attempt to send."""
    morning = at("2026-04-17T10:00:00-04:00")  # a business hour: the first attempt is now
    c, _, _, _ = make_container(tmp_path, morning, pg_url)
    collect = Recorded()
    c.dispatcher = collect  # type: ignore[assignment]
    try:
        for n in range(12):
            member = {"member_id": f"M{n:04d}", "name": "Jane Roe", "birth_date": "1971-02-03"}
            for side in "AB":
                services.intake(c, notification(notification_id=f"{side}{n}", insured=member))
            while opens := [x for x in collect.commands if not isinstance(x, PlanOutreach)]:
                collect.commands = [x for x in collect.commands if isinstance(x, PlanOutreach)]
                for cmd in opens:
                    collect.commands += services.run_command(c, cmd)
            plans, collect.commands = collect.commands, []
            assert len(plans) == 2
            follow, errors = _at_once(c, plans)
            assert errors == [], f"round {n}: {errors!r}"
            with transaction(c.sessions) as s:
                chases = set(
                    s.scalars(
                        select(RecordRequest.chase_id)
                        .join(Case, Case.id == RecordRequest.case_id)
                        .where(Case.insured_member_id == member["member_id"])
                    )
                )
                sent = s.scalars(
                    select(Attempt.id)
                    .join(Case, Case.id == Attempt.case_id)
                    .where(
                        Case.insured_member_id == member["member_id"],
                        Attempt.served_by == Attempt.id,
                    )
                ).all()
            assert len(chases) == 1 and None not in chases, f"round {n}: chases {chases}"
            assert len(sent) == 1, f"round {n}: {len(sent)} attempts to send"
            assert {x.attempt_id for x in follow if isinstance(x, SendAttempt)} == set(sent)
    finally:
        c.close()


def test_a_campaign_task_is_read_before_the_assembly_of_a_review_that_joined_its_chase(
    env,
) -> None:  # type: ignore[no-untyped-def]
    """What answers the campaign's attempt serves the review too, so the instants that bound
    its next poll (worker/domain/polling.py) include the review's assembly, not only the
    campaign's own far-off ones."""
    from worker.services.inbound import _acts_at

    c, clock, _fax, _deliverer = env
    _chart_being_chased(c, clock)
    with transaction(c.sessions) as s:
        (chart,) = s.scalars(select(RecordRequest)).all()
        alone = _acts_at(s, chart)
        assert chart.case.assemble_at in alone
    clock.advance_to(at("2026-04-20T10:00:00-04:00"))
    services.intake(c, notification(received_at=clock.now().isoformat(), review_type="expedited"))
    reqs = _requests(c)
    review = reqs["OPP-2026-000123"]
    with transaction(c.sessions) as s:
        chart = s.get(RecordRequest, next(r.id for r in reqs.values() if r is not review))
        acts = _acts_at(s, chart)
    assert review.case.assemble_at in acts
    assert min(t for t in acts if t is not None) <= review.case.assemble_at < min(alone)  # type: ignore[type-var]
