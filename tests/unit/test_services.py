"""The services behind the actors, run inline with fake connectors on a virtual clock."""

from __future__ import annotations

import itertools
from datetime import timedelta
from pathlib import Path

import pytest
from pypdf import PdfReader
from sqlalchemy import func, select

from connectors.base import InvalidDestination
from simulator.documents import generate_no_records_letter, generate_records_pdf
from storage.db import transaction
from storage.models import AppendOnlyError, Attempt, AuditEvent, Case, Document, RecordRequest
from tests.conftest import at, notification
from tests.fakes import fax_failed, fax_received, make_container, run_until
from worker import services
from worker.commands import PlanOutreach, SendAttempt
from worker.notification import IntakeError
from worker.scheduler import tick

START = at("2026-04-17T09:00:00-04:00")


@pytest.fixture
def env(tmp_path: Path):  # type: ignore[no-untyped-def]
    c, clock, fax, deliverer = make_container(tmp_path, START)
    yield c, clock, fax, deliverer
    c.close()


def _request(c) -> RecordRequest:  # type: ignore[no-untyped-def]
    with transaction(c.sessions) as s:
        r = s.scalars(select(RecordRequest)).one()
        _ = r.attempts, r.case
        return r


def test_intake_opens_case_and_sends_first_attempt(env) -> None:  # type: ignore[no-untyped-def]
    """Intake writes the case with its deadline and the first attempt goes out at once."""
    c, _clock, fax, _ = env
    result = services.intake(c, notification())
    assert result.created
    assert len(fax.sent) == 1
    sent = fax.sent[0]
    assert sent.channel.destination == "+16175550101"
    assert sent.reference.startswith("GF-")
    with transaction(c.sessions) as s:
        case = s.get(Case, result.case_id)
        assert case is not None
        # Fri 17 Apr (day 0) → Tue 21 (1, Mon 20 is Patriots' Day) → Wed 22 → Thu 23 17:00 EDT
        assert case.due_at == at("2026-04-23T17:00:00-04:00")
        a = s.scalars(select(Attempt)).one()
        assert (a.number, a.reason, a.outcome, a.transmissions) == (1, "initial", "sent", 1)


def test_intake_is_idempotent_on_notification_id(env) -> None:  # type: ignore[no-untyped-def]
    """The same notification twice opens one case and sends one request."""
    c, _, fax, _ = env
    first = services.intake(c, notification())
    second = services.intake(c, notification())
    assert (first.case_id, second.created) == (second.case_id, False)
    assert len(fax.sent) == 1


def test_invalid_notification_names_fields_and_stores_nothing(env) -> None:  # type: ignore[no-untyped-def]
    """Every bad field is named and no row is written."""
    c, _, fax, _ = env
    bad = notification(
        review_type="urgent",
        received_at="2026-04-17T09:00:00",
        providers=[
            {"provider_id": "p", "name": "x", "channels": [{"kind": "fax", "number": "617-555"}]}
        ],
    )
    with pytest.raises(IntakeError) as err:
        services.intake(c, bad)
    fields = {f for f, _ in err.value.errors}
    assert {"review_type", "received_at", "providers.0.channels.0"} <= fields
    with transaction(c.sessions) as s:
        assert s.scalar(select(func.count()).select_from(Case)) == 0
    assert fax.sent == []


def test_unknown_agency_and_jurisdiction_are_intake_errors(env) -> None:  # type: ignore[no-untyped-def]
    """A notification naming an unconfigured agency or jurisdiction is refused."""
    c, _, _, _ = env
    with pytest.raises(IntakeError) as err:
        services.intake(c, notification(agency_id="agency-zz", jurisdiction="ZZ"))
    assert {f for f, _ in err.value.errors} == {"agency_id", "jurisdiction"}


def test_attempt_row_is_committed_before_the_connector_is_called(env) -> None:  # type: ignore[no-untyped-def]
    """Write the attempt, then send: the row exists, its transmission counted, when the fax
    goes out."""
    c, _, fax, _ = env
    seen = []

    def check(request) -> None:  # type: ignore[no-untyped-def]
        with transaction(c.sessions) as s:
            a = s.scalar(select(Attempt).where(Attempt.idempotency_key == request.idempotency_key))
            seen.append(
                a is not None
                and a.outcome == "pending"
                and a.transmissions == 1
                and a.letter_uri is not None
            )

    fax.on_send = check
    services.intake(c, notification())
    assert seen == [True]


def test_redelivered_send_message_does_not_send_twice(env) -> None:  # type: ignore[no-untyped-def]
    """A SendAttempt redelivered after the send succeeded is a no-op."""
    c, _, fax, _ = env
    services.intake(c, notification())
    attempt_id = _request(c).attempts[0].id
    c.dispatcher.enqueue([SendAttempt(attempt_id), SendAttempt(attempt_id)])
    assert len(fax.sent) == 1


def test_unresponsive_provider_gets_three_spaced_attempts_then_packet_on_time(env) -> None:  # type: ignore[no-untyped-def]
    """No reply: three documented attempts before the cutoff, then the packet goes out on time."""
    c, clock, _fax, deliverer = env
    services.intake(c, notification())
    run_until(c, clock, at("2026-04-24T00:00:00-04:00"))
    r = _request(c)
    assert len(r.attempts) == 3 and r.status == "unresponsive"
    times = [a.sent_at for a in r.attempts]
    assert all(t is not None and t < r.case.assemble_at for t in times)
    assert all(b - a >= timedelta(minutes=30) for a, b in itertools.pairwise(times))  # type: ignore[operator]
    assert len(deliverer.submissions) == 1
    with transaction(c.sessions) as s:
        case = s.scalars(select(Case)).one()
        assert case.status == "delivered" and case.delivered_at <= case.due_at  # type: ignore[operator]
    reader = PdfReader(__import__("io").BytesIO(deliverer.submissions[0].packet_pdf))
    assert len(reader.pages) == deliverer.submissions[0].manifest["pages"]


def test_records_stop_outreach_and_trigger_the_packet(env) -> None:  # type: ignore[no-untyped-def]
    """Records matched by reference fulfil the request; no attempt follows; packet delivered."""
    c, clock, fax, deliverer = env
    services.intake(c, notification())
    r = _request(c)
    clock.advance(3600)
    fax.media["m1"] = generate_records_pdf(r.reference, "Example Orthopedics", "M1001", 7)
    c.dispatcher.enqueue(
        services.record_inbound_fax(c, fax_received("in-1", "m1", clock.now(), "+16175550199"))
    )
    run_until(c, clock, at("2026-04-24T00:00:00-04:00"))
    r = _request(c)
    assert r.status == "fulfilled" and len(r.attempts) == 1
    assert len(deliverer.submissions) == 1
    manifest = deliverer.submissions[0].manifest
    records = [p for p in manifest["parts"] if p["kind"] == "records"]
    assert records and records[0]["pages"] == 7
    # the index names the document's source and when it came, in the jurisdiction's time
    cover = PdfReader(__import__("io").BytesIO(deliverer.submissions[0].packet_pdf)).pages[0]
    index = " ".join(cover.extract_text().split())
    assert (
        "Records from Example Orthopedics (received 2026-04-17 10:00 EDT (-04:00) by fax from "
        "+16175550199)" in index
    )


def test_duplicate_inbound_webhook_is_taken_once(env) -> None:  # type: ignore[no-untyped-def]
    """The same inbound fax reported twice yields one document."""
    c, clock, fax, _ = env
    services.intake(c, notification())
    r = _request(c)
    fax.media["m1"] = generate_records_pdf(r.reference, "Example Orthopedics", "M1001", 2)
    ev = fax_received("in-1", "m1", clock.now(), "+16175550199")
    c.dispatcher.enqueue(services.record_inbound_fax(c, ev))
    c.dispatcher.enqueue(services.record_inbound_fax(c, ev))
    with transaction(c.sessions) as s:
        assert s.scalar(select(func.count()).select_from(Document)) == 1


def test_written_no_records_reply_closes_the_request(env) -> None:  # type: ignore[no-untyped-def]
    """A 'no records' letter closes the request as no_records and adds no records to the packet."""
    c, clock, fax, deliverer = env
    services.intake(c, notification())
    r = _request(c)
    fax.media["m1"] = generate_no_records_letter(r.reference, "Example Orthopedics")
    c.dispatcher.enqueue(
        services.record_inbound_fax(c, fax_received("in-1", "m1", clock.now(), "+1"))
    )
    assert _request(c).status == "no_records"
    assert not [p for p in deliverer.submissions[0].manifest["parts"] if p["kind"] == "records"]


def test_busy_line_is_redialled_inside_one_attempt(env) -> None:  # type: ignore[no-untyped-def]
    """A busy signal is a transport retry: more transmissions, still attempt number 1."""
    c, clock, fax, _ = env
    services.intake(c, notification())
    a = _request(c).attempts[0]
    c.dispatcher.enqueue(services.record_fax_status(c, fax_failed(a.external_id, clock.now())))  # type: ignore[arg-type]
    clock.advance(6 * 60)
    tick(c)
    r = _request(c)
    assert len(r.attempts) == 1 and r.attempts[0].transmissions == 2
    assert len(fax.sent) == 2 and fax.sent[0].idempotency_key != fax.sent[1].idempotency_key


def test_final_failure_escalates_to_the_designee(env, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """After a transmission finally fails, the next attempt goes to another channel."""
    c, clock, _fax, _ = env
    prov = notification()["providers"][0] | {
        "designee": {
            "vendor_id": "v1",
            "name": "Retrieval Co",
            "channels": [{"kind": "fax", "number": "+17815550100"}],
        }
    }
    services.intake(c, notification(providers=[prov]))
    a = _request(c).attempts[0]
    c.dispatcher.enqueue(
        services.record_fax_status(c, fax_failed(a.external_id, clock.now(), retryable=False))  # type: ignore[arg-type]
    )
    run_until(c, clock, at("2026-04-21T17:00:00-04:00"))
    attempts = _request(c).attempts
    assert attempts[0].outcome == "failed"
    assert attempts[1].destination == "+17815550100" and attempts[1].reason == "escalation"


def test_permanent_send_error_is_a_documented_failed_attempt(env) -> None:  # type: ignore[no-untyped-def]
    """An invalid number fails the attempt (documented) instead of crashing the worker."""
    c, _, fax, _ = env
    fax.fail_with = InvalidDestination("invalid number")
    services.intake(c, notification())
    a = _request(c).attempts[0]
    assert a.outcome == "failed" and "invalid number" in (a.failure_reason or "")


def test_cancel_stops_outreach(env) -> None:  # type: ignore[no-untyped-def]
    """A withdrawn review stops every further attempt."""
    c, clock, fax, deliverer = env
    res = services.intake(c, notification())
    assert services.cancel_case(c, res.case_id, "withdrawn")
    run_until(c, clock, at("2026-04-24T00:00:00-04:00"))
    assert len(fax.sent) == 1 and deliverer.submissions == []
    assert _request(c).status == "cancelled"


def test_late_records_go_out_as_a_supplemental_packet(env) -> None:  # type: ignore[no-untyped-def]
    """Records arriving after delivery make packet 2; packet 1 is left as delivered."""
    c, clock, fax, deliverer = env
    services.intake(c, notification())
    run_until(c, clock, at("2026-04-24T00:00:00-04:00"))
    r = _request(c)
    fax.media["late"] = generate_records_pdf(r.reference, "Example Orthopedics", "M1001", 3)
    c.dispatcher.enqueue(
        services.record_inbound_fax(c, fax_received("in-9", "late", clock.now(), "+1"))
    )
    assert len(deliverer.submissions) == 2
    first, second = deliverer.submissions
    assert second.supplemental and not first.supplemental and first.sha256 != second.sha256
    # packet 2 names the packet it follows, in its manifest and on its cover
    assert first.manifest["follows"] is None
    assert second.manifest["follows"] == {"sequence": 1, "packet_sha256": first.sha256}
    reader = PdfReader(__import__("io").BytesIO(second.packet_pdf))
    cover = " ".join(reader.pages[0].extract_text().split())
    assert f"follows packet 1 of this case, SHA-256 {first.sha256}" in cover


def test_missing_eoc_holds_the_packet_for_ops(tmp_path: Path) -> None:
    """Without an EOC the case is flagged and never sent without it."""
    c, clock, _, deliverer = make_container(tmp_path, START, eoc_fallback=None)
    try:
        services.intake(c, notification())
        run_until(c, clock, at("2026-04-24T00:00:00-04:00"))
        with transaction(c.sessions) as s:
            case = s.scalars(select(Case)).one()
            assert "evidence of coverage" in (case.attention or "")
        assert deliverer.submissions == []
    finally:
        c.close()


def test_an_eoc_added_to_the_library_after_the_hold_is_picked_up_and_the_flag_cleared(
    tmp_path: Path,
) -> None:
    """The flag tells ops to add the EOC to the library; doing so is enough. The held packet
    looks again every EOC_LOOK_AGAIN, finds it, clears the EOC flags and is delivered by its
    deliver_by. While it waits, the hold is audited once, not at every look."""
    from simulator.documents import generate_eoc_pdf
    from worker.domain.lifecycle import EOC_LOOK_AGAIN

    c, clock, _, deliverer = make_container(tmp_path, START, eoc_fallback=None)
    try:
        services.intake(c, notification())
        run_until(c, clock, at("2026-04-23T14:00:00-04:00"))  # held at 13:00, due by 15:00
        with transaction(c.sessions) as s:
            case = s.scalars(select(Case)).one()
            assert case.eoc_object_uri is None and case.deliver_by > clock.now()
            assert "packet held" in (case.attention or "")
            assert case.next_action_at is not None
            assert case.next_action_at <= clock.now() + EOC_LOOK_AGAIN
            held = s.scalars(select(AuditEvent).where(AuditEvent.kind == "packet.held")).all()
        assert len(held) == 1 and deliverer.submissions == []
        library = tmp_path / "eoc"
        library.mkdir(exist_ok=True)
        (library / f"{case.plan_id}.pdf").write_bytes(generate_eoc_pdf(case.plan_id))
        run_until(c, clock, case.deliver_by)
        assert len(deliverer.submissions) == 1
        with transaction(c.sessions) as s:
            case = s.scalars(select(Case)).one()
            assert case.status == "delivered" and case.eoc_object_uri is not None
            assert "evidence of coverage" not in (case.attention or "")
            kinds = set(s.scalars(select(AuditEvent.kind)))
        assert "case.eoc_found" in kinds
    finally:
        c.close()


def test_audit_trail_is_append_only(env) -> None:  # type: ignore[no-untyped-def]
    """Audit rows cannot be changed once written."""
    c, _, _, _ = env
    services.intake(c, notification())
    with pytest.raises(AppendOnlyError), transaction(c.sessions) as s:
        ev = s.scalars(select(AuditEvent)).first()
        assert ev is not None
        ev.kind = "edited"


def test_lost_message_is_recovered_by_the_scheduler(env) -> None:  # type: ignore[no-untyped-def]
    """A PlanOutreach message lost with Redis is re-enqueued once its lease runs out."""
    c, clock, fax, _ = env
    services.intake(c, notification())
    r = _request(c)
    with transaction(c.sessions) as s:  # simulate: the attempt row written, message lost
        a = Attempt(
            request_id=r.id,
            case_id=r.case_id,
            number=2,
            reason="follow_up",
            planned_at=clock.now(),
            channel="fax",
            destination="+16175550101",
            requested="x",
            idempotency_key="lost-2",
            outcome="pending",
        )
        s.add(a)
        s.get(RecordRequest, r.id).next_action_at = clock.now() + timedelta(minutes=10)  # type: ignore[union-attr]
    clock.advance(11 * 60)
    cmds = tick(c)
    assert PlanOutreach(r.id) in cmds
    assert len(fax.sent) == 2 and fax.sent[1].idempotency_key == "lost-2"


def test_agency_outage_retries_and_flags_the_case_past_the_delivery_target(env) -> None:  # type: ignore[no-untyped-def]
    """A 5xx from the agency is retried on a timer; past deliver_by the case is flagged for ops."""
    from connectors.base import TransientError

    c, clock, _fax, deliverer = env
    deliverer.fail_with = TransientError("503 from agency")
    services.intake(c, notification())
    run_until(c, clock, at("2026-04-23T16:30:00-04:00"))
    with transaction(c.sessions) as s:
        case = s.scalars(select(Case)).one()
        assert case.status == "delivering" and "delivery target missed" in (case.attention or "")
    deliverer.fail_with = None
    run_until(c, clock, at("2026-04-23T17:00:00-04:00"))
    with transaction(c.sessions) as s:
        case = s.scalars(select(Case)).one()
        assert case.status == "delivered" and case.delivered_at <= case.due_at  # type: ignore[operator]
    assert len(deliverer.submissions) == 1


def test_a_withdrawal_while_the_agency_is_down_stops_the_packet_upload(env) -> None:  # type: ignore[no-untyped-def]
    """The agency answers 503 and the upload waits for its retry; the case is withdrawn: the
    delivery is cancelled and the packet never uploaded, though the agency comes back. An
    upload that was already on the wire and succeeds afterwards is recorded on the delivery,
    flagged, and the case stays cancelled."""
    from connectors.base import TransientError
    from storage.models import Delivery
    from worker.commands import DeliverPacket

    c, clock, _fax, deliverer = env
    deliverer.fail_with = TransientError("503 from agency")
    case_id = services.intake(c, notification()).case_id
    run_until(c, clock, at("2026-04-23T13:30:00-04:00"))
    assert services.cancel_case(c, case_id, "review withdrawn")
    deliverer.fail_with = None
    run_until(c, clock, at("2026-04-24T00:00:00-04:00"))
    assert deliverer.submissions == []
    with transaction(c.sessions) as s:
        d = s.scalars(select(Delivery)).one()
        case = s.get(Case, case_id)
        assert case is not None and d.status == "cancelled" and case.status == "cancelled"
        d.status = "pending"  # as if its upload had been under way when the case was withdrawn
    c.dispatcher.enqueue([DeliverPacket(d.id)])
    with transaction(c.sessions) as s:
        d = s.scalars(select(Delivery)).one()
        case = s.get(Case, case_id)
        assert case is not None and d.status == "delivered" and case.status == "cancelled"
        assert "reached the agency" in (case.attention or "")
        kinds = list(s.scalars(select(AuditEvent.kind)))
    assert "packet.delivered_after_cancel" in kinds and "packet.delivered" not in kinds


def test_two_inbound_faxes_with_the_same_bytes_are_two_documents(env) -> None:  # type: ignore[no-untyped-def]
    """Documents are identified by the channel's fax id, not by content: both faxes are kept."""
    c, clock, fax, _ = env
    services.intake(c, notification())
    r = _request(c)
    fax.media["m1"] = fax.media["m2"] = generate_records_pdf(r.reference, "Example", "M1001", 2)
    for fax_id, url in (("in-1", "m1"), ("in-2", "m2")):
        c.dispatcher.enqueue(
            services.record_inbound_fax(c, fax_received(fax_id, url, clock.now(), "+1"))
        )
    with transaction(c.sessions) as s:
        docs = list(s.scalars(select(Document)))
    assert sorted(d.external_id for d in docs) == ["in-1", "in-2"]
    assert docs[0].sha256 == docs[1].sha256


def test_demo_scenario_gives_every_provider_its_own_fax_number_and_npi() -> None:
    """5,000 demo cases: no two providers share a fax number or an NPI; none is the carrier's."""
    from simulator.demo import demo_scenario
    from worker.notification import parse_notification

    numbers = [
        ch["number"]
        for n in demo_scenario(5000).notifications
        for p in n["providers"]
        for ch in p["channels"] + (p.get("designee") or {}).get("channels", [])
        if ch["kind"] == "fax"
    ]
    assert len(numbers) == len(set(numbers)) and "+16175550000" not in numbers
    npis = [p["npi"] for n in demo_scenario(5000).notifications for p in n["providers"]]
    assert len(npis) == len(set(npis))
    parse_notification(demo_scenario(1).notifications[0])  # the NPIs pass the check digit


def test_each_attempt_records_the_vendor_that_carried_it(env) -> None:  # type: ignore[no-untyped-def]
    """An attempt row names the vendor adapter it went out through, before it is sent."""
    c, _, fax, _ = env
    seen = []

    def check(request) -> None:  # type: ignore[no-untyped-def]
        with transaction(c.sessions) as s:
            a = s.scalar(select(Attempt).where(Attempt.idempotency_key == request.idempotency_key))
            seen.append(a.vendor if a else None)

    fax.on_send = check
    services.intake(c, notification())
    assert seen == [fax.vendor] == ["fake"]
