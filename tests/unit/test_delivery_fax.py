"""Packets faxed to agencies that take only fax: the transport (cover sheet, what the fax vendor
is asked), and the delivery service driving it — confirmation by webhook or by status check
when the webhook is lost, busy lines retried on the delivery backoff, permanent failures and
missed targets flagged, a crash mid-send looked up before any re-send, the signed media URL."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError
from pypdf import PdfReader
from sqlalchemy import select

from config.settings import Settings
from connectors.base import (
    AgencyNotConfigured,
    FaxPacketTransport,
    InvalidDestination,
    PacketFax,
    PacketSubmission,
    TransientError,
)
from connectors.delivery.fax import (
    COVER_PAGES_RE,
    COVER_SHA256_RE,
    FaxAgencySettings,
    FaxPacketDeliverer,
)
from connectors.delivery.https import HashMismatch
from connectors.registry import AgencyRouter, BuildContext, build_deliverer
from simulator.documents import generate_records_pdf
from storage.db import transaction
from storage.models import AuditEvent, Case, Delivery, RecordRequest
from tests.conftest import at, notification
from tests.fakes import (
    Crash,
    FakeDeliverer,
    FakeFax,
    api_client,
    fax_delivered,
    fax_failed,
    fax_received,
    make_container,
    run_until,
)
from tests.qpdf import qpdf_problems
from worker import services
from worker.commands import DeliverPacket
from worker.domain.clock import VirtualClock
from worker.domain.lifecycle import (
    FaxDeliveryAction,
    FaxDeliveryStep,
    fax_delivery_action,
    fax_delivery_step,
)
from worker.wiring import Container

START = at("2026-04-17T09:00:00-04:00")
AGENCY_FAX = "+16175550199"


def _packet(pages: int = 3) -> bytes:
    return generate_records_pdf("GF-ABCDEFGH", "Example Orthopedics", "M1", pages)


def _submission(pdf: bytes, **overrides: object) -> PacketSubmission:
    fields: dict[str, object] = {
        "idempotency_key": "dlv-1",
        "agency_id": "agency-f",
        "case_ref": "case-1",
        "notification_id": "OPP-2026-000123",
        "packet_pdf": pdf,
        "manifest": {"pages": 3},
        "sha256": hashlib.sha256(pdf).hexdigest(),
    }
    fields.update(overrides)
    return PacketSubmission(**fields)  # type: ignore[arg-type]


def _transport(line: FakeFax) -> FaxPacketDeliverer:
    agency = FaxAgencySettings(name="Fax-only Review Co", fax_number=AGENCY_FAX)
    return FaxPacketDeliverer(line, {"agency-f": agency}, carrier_name="Example Health Plan")


# --- the transport -----------------------------------------------------------------------------


def test_fax_document_is_a_cover_sheet_then_the_packet_page_for_page() -> None:
    """The cover names the references, the page count (cover included) and the packet's
    SHA-256, and nothing about the insured; the packet's pages follow unchanged."""
    pdf = _packet(3)
    document = _transport(FakeFax()).fax_document(_submission(pdf), START)
    reader = PdfReader(io.BytesIO(document))
    assert len(reader.pages) == 4
    cover = reader.pages[0].extract_text()
    pages = COVER_PAGES_RE.search(cover)
    assert pages is not None and pages.groups() == ("4", "3")
    sha = COVER_SHA256_RE.search(cover)
    assert sha is not None and sha.group(1) == hashlib.sha256(pdf).hexdigest()
    assert "OPP-2026-000123" in cover and "case-1" in cover and AGENCY_FAX in cover
    assert "Jane Roe" not in cover and "M1" not in cover.split()
    packet = PdfReader(io.BytesIO(pdf))
    for ours, theirs in zip(reader.pages[1:], packet.pages, strict=True):
        assert ours.extract_text() == theirs.extract_text()
    assert qpdf_problems(document) is None  # the vendor's converter gets a clean file


def test_the_fax_document_of_an_assembled_packet_passes_qpdf(tmp_path: Path) -> None:
    """A real packet (cover, EOC, records, attestation) under our cover sheet is a clean PDF
    of one page more, its cover stating the packet's pages and hash."""
    c, clock, _fax, deliverer = make_container(tmp_path, START)
    try:
        _to_delivery(c, clock)
        pdf = deliverer.submissions[0].packet_pdf
    finally:
        c.close()
    submission = _submission(pdf, agency_id="agency-f")
    document = _transport(FakeFax()).fax_document(submission, START)
    assert qpdf_problems(document) is None
    pages = len(PdfReader(io.BytesIO(pdf)).pages)
    cover = PdfReader(io.BytesIO(document))
    assert len(cover.pages) == pages + 1
    stated = COVER_PAGES_RE.search(cover.pages[0].extract_text())
    assert stated is not None and stated.groups() == (str(pages + 1), str(pages))


def test_fax_document_refuses_bytes_that_are_not_the_recorded_packet() -> None:
    """Stored bytes whose SHA-256 is not the recorded one are never faxed."""
    with pytest.raises(HashMismatch):
        _transport(FakeFax()).fax_document(_submission(_packet(), sha256="0" * 64), START)


def test_transmit_faxes_the_document_url_to_the_agency_number_with_the_key() -> None:
    """One fax to the agency's number, of our signed URL, carrying the transmission key."""
    line = FakeFax()
    fax = PacketFax(_submission(_packet()), "dlv-1-t2", "https://us.example/v1/media/deliveries/d")
    receipt = _transport(line).transmit(fax)
    sent = line.sent[0]
    assert (sent.channel.destination, sent.document_url, sent.idempotency_key) == (
        AGENCY_FAX,
        fax.document_url,
        "dlv-1-t2",
    )
    assert receipt.external_id == line.ids["dlv-1-t2"]
    assert _transport(line).find_sent(fax, START) == receipt


def test_an_agency_without_a_fax_number_is_not_configured() -> None:
    """A submission for an agency the fax transport does not hold fails, naming the setting."""
    fax = PacketFax(_submission(_packet(), agency_id="agency-x"), "k", "https://x.example/d")
    with pytest.raises(AgencyNotConfigured, match="fax_number"):
        _transport(FakeFax()).transmit(fax)


def test_fax_agency_settings_resolve_from_the_environment_shape_and_check_the_number() -> None:
    """``transport: fax`` picks FaxAgencySettings; a number not in E.164 is refused by name."""
    settings = Settings(
        agencies={"agency-f": {"name": "F", "transport": "fax", "fax_number": AGENCY_FAX}}
    )
    assert isinstance(settings.agencies["agency-f"], FaxAgencySettings)
    with pytest.raises(ValidationError, match=r"fax_number must be E\.164"):
        Settings(agencies={"agency-f": {"name": "F", "transport": "fax", "fax_number": "617-5"}})


def test_the_registry_builds_fax_agencies_over_the_fax_adapter() -> None:
    """The router's transport for a fax agency is a FaxPacketTransport over ``ctx.fax``."""
    import httpx

    line = FakeFax(vendor="telnyx")
    ctx = BuildContext(
        http=httpx.Client(), retrying=lambda: None, public_base_url="http://x", fax=line
    )
    router = build_deliverer(
        {"agency-f": FaxAgencySettings(name="F", fax_number=AGENCY_FAX)},
        ctx,
    )
    transport = router.transport_for("agency-f")
    assert isinstance(transport, FaxPacketTransport) and transport.vendor == "telnyx"
    with pytest.raises(AgencyNotConfigured, match="reached by fax"):
        router.deliver(_submission(_packet()))


# --- the rules ---------------------------------------------------------------------------------


def test_fax_delivery_action_follows_the_lease_and_the_external_id() -> None:
    """In flight → drop; lease ended without an answer → look; handed over → check; else send."""
    now = START
    assert fax_delivery_action(now + timedelta(minutes=1), False, now) is FaxDeliveryAction.DROP
    assert fax_delivery_action(now - timedelta(minutes=1), False, now) is FaxDeliveryAction.LOOK
    assert fax_delivery_action(None, True, now) is FaxDeliveryAction.CHECK
    assert fax_delivery_action(None, False, now) is FaxDeliveryAction.SEND


def test_fax_delivery_step_retries_busy_lines_forever_and_hard_failures_three_times() -> None:
    """A busy line is always retried; another failure until three transmissions were made."""
    assert fax_delivery_step(True, False, 9) is FaxDeliveryStep.DELIVERED
    assert fax_delivery_step(False, True, 50) is FaxDeliveryStep.RETRY
    assert fax_delivery_step(False, False, 2) is FaxDeliveryStep.RETRY
    assert fax_delivery_step(False, False, 3) is FaxDeliveryStep.FAILED


# --- the delivery service ----------------------------------------------------------------------


@pytest.fixture
def env(tmp_path: Path) -> Iterator[tuple[Container, VirtualClock, FakeFax]]:
    """A container whose agency ``agency-a`` is reached by fax over its own fake fax line."""
    c, clock, _fax, _deliverer = make_container(tmp_path, START)
    line = FakeFax(vendor="telnyx")
    agency = FaxAgencySettings(name="Fax-only Review Co", fax_number=AGENCY_FAX)
    c.deliverer = AgencyRouter(
        {"agency-a": FaxPacketDeliverer(line, {"agency-a": agency}, carrier_name="Plan")}
    )
    yield c, clock, line
    c.close()


def _to_delivery(c: Container, clock: VirtualClock) -> None:
    """Records come back at once, the packet is assembled and its fax handed to the vendor."""
    fax = c.fax
    assert isinstance(fax, FakeFax)
    services.intake(c, notification())
    with transaction(c.sessions) as s:
        reference = s.scalars(select(RecordRequest.reference)).one()
    clock.advance(3600)
    fax.media["m1"] = generate_records_pdf(reference, "Example Orthopedics", "M1001", 4)
    c.dispatcher.enqueue(
        services.record_inbound_fax(c, fax_received("in-1", "m1", clock.now(), "+16175550101"))
    )


def _delivery(c: Container) -> tuple[Delivery, Case]:
    with transaction(c.sessions) as s:
        d = s.scalars(select(Delivery)).one()
        case = s.get(Case, d.case_id)
        assert case is not None
        s.expunge_all()
        return d, case


def _audits(c: Container, kind: str) -> list[dict[str, object]]:
    with transaction(c.sessions) as s:
        return [e.detail for e in s.scalars(select(AuditEvent).where(AuditEvent.kind == kind))]


def test_a_faxed_packet_is_delivered_only_when_the_vendor_confirms_it(env) -> None:  # type: ignore[no-untyped-def]
    """After the send the case is still delivering; the fax.delivered webhook delivers it (on
    time, receipt = the fax id); a duplicate webhook changes nothing."""
    c, clock, line = env
    _to_delivery(c, clock)
    assert len(line.sent) == 1
    d, case = _delivery(c)
    assert (d.status, case.status, d.transmissions) == ("pending", "delivering", 1)
    assert d.external_id == line.ids[d.idempotency_key]
    assert line.sent[0].document_url == c.delivery_media_url(d.id)
    clock.advance(120)
    event = fax_delivered(d.external_id, clock.now())  # type: ignore[arg-type]
    assert services.record_fax_status(c, event) == []
    d, case = _delivery(c)
    assert (d.status, case.status, d.receipt_id) == ("delivered", "delivered", d.external_id)
    assert case.delivered_at is not None and case.delivered_at <= case.due_at
    assert services.record_fax_status(c, event) == []
    assert [a["via"] for a in _audits(c, "packet.delivered")] == ["webhook"]


def test_progress_webhooks_change_nothing_and_touch_no_table(env) -> None:  # type: ignore[no-untyped-def]
    """fax.queued, fax.media.processed and fax.sending.started (three a fax) are answered
    without a database statement, for a packet fax as for a letter; the final event still
    delivers."""
    from sqlalchemy import event as sa_event

    from connectors.base import FaxStatusEvent

    c, clock, _ = env
    _to_delivery(c, clock)
    d, _case = _delivery(c)
    statements: list[str] = []

    def count(conn, cursor, statement, *args) -> None:  # type: ignore[no-untyped-def]
        statements.append(statement)

    sa_event.listen(c.engine, "before_cursor_execute", count)
    try:
        for kind in ("fax.queued", "fax.media.processed", "fax.sending.started"):
            progress = FaxStatusEvent(f"ev-{kind}", kind, d.external_id, clock.now(), None)  # type: ignore[arg-type]
            assert services.record_fax_status(c, progress) == []
        assert statements == []
        assert _delivery(c)[0].status == "pending"
        services.record_fax_status(c, fax_delivered(d.external_id, clock.now()))  # type: ignore[arg-type]
        assert statements, "the final event is applied"
    finally:
        sa_event.remove(c.engine, "before_cursor_execute", count)
    assert _delivery(c)[1].status == "delivered"


def test_a_lost_webhook_is_made_good_by_the_status_check(env) -> None:  # type: ignore[no-untyped-def]
    """No webhook comes: the delivery's timer asks the vendor, which says delivered."""
    c, clock, line = env
    _to_delivery(c, clock)
    d, _ = _delivery(c)
    assert d.next_action_at == d.sent_at + c.status_checks.after  # type: ignore[operator]
    line.statuses[d.external_id] = fax_delivered(d.external_id, clock.now())  # type: ignore[index,arg-type]
    read: list[str] = []
    get = c.store.get

    def reading(uri: str) -> bytes:
        read.append(uri)
        return get(uri)

    c.store.get = reading  # type: ignore[method-assign]
    run_until(c, clock, clock.now() + timedelta(hours=1))
    d, case = _delivery(c)
    assert (d.status, case.status) == ("delivered", "delivered")
    assert line.status_asked == [d.external_id]
    assert read == []  # a status check reads neither the packet nor the fax document
    assert [a["via"] for a in _audits(c, "packet.delivered")] == ["status check"]


def test_a_busy_agency_line_is_retried_on_the_delivery_backoff(env) -> None:  # type: ignore[no-untyped-def]
    """fax.failed (busy) → a new transmission with its own key after the backoff; the second
    one is delivered."""
    c, clock, line = env
    _to_delivery(c, clock)
    d, _ = _delivery(c)
    c.dispatcher.enqueue(services.record_fax_status(c, fax_failed(d.external_id, clock.now())))  # type: ignore[arg-type]
    d, case = _delivery(c)
    assert (d.status, d.external_id, d.tries) == ("pending", None, 1)
    assert d.next_action_at == clock.now() + timedelta(seconds=60)
    run_until(c, clock, clock.now() + timedelta(seconds=61))
    assert [r.idempotency_key for r in line.sent] == [d.idempotency_key, f"{d.idempotency_key}-t2"]
    d, _ = _delivery(c)
    services.record_fax_status(c, fax_delivered(d.external_id, clock.now()))  # type: ignore[arg-type]
    d, case = _delivery(c)
    assert (d.status, d.transmissions, case.status) == ("delivered", 2, "delivered")


def test_a_withdrawal_between_transmissions_sends_the_packet_no_more(env) -> None:  # type: ignore[no-untyped-def]
    """The agency's line was busy and a new transmission is waiting; the case is withdrawn:
    the delivery is cancelled (nothing was on the wire, so no flag), its timer ends and no
    other transmission goes out, and its fax document is no longer handed out."""
    c, clock, line = env
    _to_delivery(c, clock)
    d, case = _delivery(c)
    c.dispatcher.enqueue(services.record_fax_status(c, fax_failed(d.external_id, clock.now())))  # type: ignore[arg-type]
    url = c.delivery_media_url(d.id)
    assert services.cancel_case(c, case.id, "review withdrawn")
    d, case = _delivery(c)
    assert (d.status, d.next_action_at, case.status) == ("cancelled", None, "cancelled")
    assert _audits(c, "delivery.cancelled") == [{"delivery_id": d.id, "in_flight": False}]
    assert "agency" not in (case.attention or "")
    run_until(c, clock, clock.now() + timedelta(days=2))
    c.dispatcher.enqueue([DeliverPacket(d.id)])  # a stale message changes nothing either
    assert len(line.sent) == 1
    assert api_client(c, None).get(url[url.index("/v1/") :]).status_code == 404


def test_a_packet_fax_confirmed_after_the_withdrawal_is_recorded_and_flagged(env) -> None:  # type: ignore[no-untyped-def]
    """Withdrawn while its fax awaited confirmation: the case is flagged at once (the agency
    may have it); the confirmation that follows is recorded on the delivery and in the audit
    trail, and the case stays cancelled."""
    c, clock, line = env
    _to_delivery(c, clock)
    d, case = _delivery(c)
    assert services.cancel_case(c, case.id, "review withdrawn")
    d, case = _delivery(c)
    assert (d.status, case.status) == ("cancelled", "cancelled")
    assert _audits(c, "delivery.cancelled") == [{"delivery_id": d.id, "in_flight": True}]
    assert "fax was under way" in (case.attention or "")
    clock.advance(120)
    services.record_fax_status(c, fax_delivered(d.external_id, clock.now()))  # type: ignore[arg-type]
    d, case = _delivery(c)
    assert (d.status, d.receipt_id, case.status) == ("delivered", d.external_id, "cancelled")
    assert case.delivered_at is None and "reached the agency" in (case.attention or "")
    assert [a["via"] for a in _audits(c, "packet.delivered_after_cancel")] == ["webhook"]
    assert _audits(c, "packet.delivered") == []
    assert len(line.sent) == 1


def test_a_line_busy_past_the_delivery_target_flags_the_case_and_keeps_trying(env) -> None:  # type: ignore[no-untyped-def]
    """Every transmission busy: past deliver_by the case is flagged, and retries go on."""
    c, clock, line = env
    _to_delivery(c, clock)

    def busy(_: object) -> None:
        d, _case = _delivery(c)
        if d.external_id:
            c.dispatcher.enqueue(
                services.record_fax_status(c, fax_failed(d.external_id, clock.now()))
            )

    d, case = _delivery(c)
    busy(None)
    while clock.now() < case.deliver_by + timedelta(minutes=20):
        run_until(c, clock, clock.now() + timedelta(minutes=15))
        busy(None)
    d, case = _delivery(c)
    assert d.status == "pending" and case.status == "delivering"
    assert "delivery target missed" in (case.attention or "")
    assert d.transmissions == len(line.sent) >= 5


def test_a_hard_fax_failure_fails_the_delivery_after_three_transmissions(env) -> None:  # type: ignore[no-untyped-def]
    """A failure the vendor does not call retryable is tried three times, then the delivery
    fails and the case is flagged for ops."""
    c, clock, line = env
    _to_delivery(c, clock)
    for _ in range(3):
        d, _case = _delivery(c)
        assert d.status == "pending" and d.external_id is not None
        event = fax_failed(d.external_id, clock.now(), retryable=False)
        c.dispatcher.enqueue(services.record_fax_status(c, event))
        run_until(c, clock, clock.now() + timedelta(minutes=10))
    d, case = _delivery(c)
    assert (d.status, d.transmissions, len(line.sent)) == ("failed", 3, 3)
    assert case.status == "delivering" and "delivery to the agency failed" in (case.attention or "")


def test_a_vendor_refusing_the_number_fails_the_delivery_at_once(env) -> None:  # type: ignore[no-untyped-def]
    """An InvalidDestination from the vendor's API is permanent: failed and flagged."""
    c, clock, line = env
    line.fail_with = InvalidDestination("422 to: not a valid number")
    _to_delivery(c, clock)
    d, case = _delivery(c)
    assert (d.status, d.external_id, d.sending_until) == ("failed", None, None)
    assert "InvalidDestination" in (case.attention or "")


def test_a_vendor_outage_at_send_time_retries(env) -> None:  # type: ignore[no-untyped-def]
    """A TransientError from the vendor's API is retried on the backoff, not flagged; the
    vendor is asked for the transmission's key first (a timeout may hide a fax it created),
    then the same transmission is sent again with the same key."""
    c, clock, line = env
    line.fail_with = TransientError("503")
    _to_delivery(c, clock)
    d, case = _delivery(c)
    assert (d.status, d.tries, case.attention) == ("pending", 1, None)
    line.fail_with = None
    run_until(c, clock, clock.now() + timedelta(minutes=2))
    d, _ = _delivery(c)
    assert len(line.sent) == 1 and line.lookups == [d.idempotency_key]
    assert (d.transmissions, d.external_id) == (1, line.ids[d.idempotency_key])


def test_no_final_status_within_the_give_up_time_starts_a_new_transmission(env) -> None:  # type: ignore[no-untyped-def]
    """The vendor keeps saying "sending": after the give-up time a new transmission goes out."""
    c, clock, line = env
    _to_delivery(c, clock)
    run_until(c, clock, clock.now() + c.status_checks.give_up + timedelta(minutes=2))
    assert len(line.sent) == 2 and len(line.status_asked) >= 2
    assert any("no final fax status" in str(a["reason"]) for a in _audits(c, "delivery.retry"))


def test_a_crash_mid_send_is_looked_up_and_adopted_not_sent_again(env) -> None:  # type: ignore[no-untyped-def]
    """The vendor took the fax, then the worker died before writing its id: the next try
    (after the send lease) finds it by its key and adopts it; nothing is faxed twice."""
    c, clock, line = env
    line.crash_after_send = True
    with pytest.raises(Crash):
        _to_delivery(c, clock)
    line.crash_after_send = False
    d, _ = _delivery(c)
    assert (d.transmissions, d.external_id) == (1, None) and d.sending_until is not None
    # a redelivered message during the lease is dropped
    services.run_command(c, DeliverPacket(d.id))
    assert len(line.sent) == 1 and line.lookups == []
    run_until(c, clock, clock.now() + timedelta(minutes=6))
    d, _ = _delivery(c)
    assert len(line.sent) == 1 and line.lookups == [d.idempotency_key]
    assert d.external_id == line.ids[d.idempotency_key] and d.sending_until is None
    assert _audits(c, "delivery.fax_adopted")


def test_the_fax_document_url_is_signed_per_delivery_and_closes_once_delivered(env) -> None:  # type: ignore[no-untyped-def]
    """The vendor gets the stored document with the delivery's token; another token (or an
    attempt's) is 404; once delivered the URL serves nothing."""
    c, clock, _line = env
    _to_delivery(c, clock)
    d, _ = _delivery(c)
    client = api_client(c, None)
    url = c.delivery_media_url(d.id)
    path = url[url.index("/v1/") :]
    response = client.get(path)
    assert response.status_code == 200 and response.content == c.store.get(d.document_uri)  # type: ignore[arg-type]
    assert "OPP-2026" not in url and "M1001" not in url
    assert client.get(f"/v1/media/deliveries/{d.id}?token={c.media_token(d.id)}").status_code == 404
    assert client.get(f"/v1/media/deliveries/{d.id}?token=0").status_code == 404
    services.record_fax_status(c, fax_delivered(d.external_id, clock.now()))  # type: ignore[arg-type]
    assert client.get(path).status_code == 404


def test_https_agencies_are_untouched_by_the_fax_path(tmp_path: Path) -> None:
    """A plain deliverer (no routing) still gets the submission and answers at once."""
    c, clock, _fax, deliverer = make_container(tmp_path, START)
    try:
        assert isinstance(deliverer, FakeDeliverer)
        _to_delivery(c, clock)
        d, case = _delivery(c)
        assert (d.status, case.status, d.transmissions) == ("delivered", "delivered", 0)
        assert len(deliverer.submissions) == 1
    finally:
        c.close()


# --- fallback: an agency's own transport fails permanently -------------------------------------


def test_fallback_fax_numbers_are_checked_and_fax_agencies_take_none() -> None:
    """Any transport may name an E.164 fallback fax; a fax agency may not (fax is its own)."""
    ok = Settings(
        agencies={
            "a": {"name": "A", "submit_url": "https://a.x", "fallback_fax_number": AGENCY_FAX}
        }
    )
    assert ok.agencies["a"].fallback_fax_number == AGENCY_FAX
    with pytest.raises(ValidationError, match="fallback_fax_number must be E"):
        Settings(
            agencies={"a": {"name": "A", "submit_url": "https://a.x", "fallback_fax_number": "x"}}
        )
    with pytest.raises(ValidationError, match="no fallback_fax_number"):
        FaxAgencySettings(name="F", fax_number=AGENCY_FAX, fallback_fax_number=AGENCY_FAX)


@pytest.fixture
def fallback_env(
    tmp_path: Path,
) -> Iterator[tuple[Container, VirtualClock, FakeFax, FakeDeliverer]]:
    """``agency-a`` takes HTTPS uploads (a fake) and names a fallback fax (its own line)."""
    c, clock, _fax, uploads = make_container(tmp_path, START)
    line = FakeFax(vendor="telnyx")
    fallback = FaxPacketDeliverer(
        line, {"agency-a": FaxAgencySettings(name="A", fax_number=AGENCY_FAX)}, carrier_name="P"
    )
    c.deliverer = AgencyRouter({"agency-a": uploads}, {"agency-a": fallback})
    yield c, clock, line, uploads
    c.close()


def test_a_permanent_upload_failure_falls_back_to_the_fax_and_stays_there(fallback_env) -> None:  # type: ignore[no-untyped-def]
    """The agency refuses our credentials: the packet is faxed to the fallback number at once,
    the case flagged; later tries follow the fax (the upload is not tried again)."""
    from connectors.base import AuthError

    c, clock, line, uploads = fallback_env
    uploads.fail_with = AuthError("403 from agency")
    _to_delivery(c, clock)
    d, case = _delivery(c)
    assert len(line.sent) == 1 and line.sent[0].channel.destination == AGENCY_FAX
    assert (d.status, d.transmissions) == ("pending", 1)
    assert "packet sent by fallback fax" in (case.attention or "")
    assert [a["error"] for a in _audits(c, "delivery.fallback")] == ["AuthError"]
    uploads.fail_with = None  # even if the upload would work now, this delivery stays by fax
    c.dispatcher.enqueue(services.record_fax_status(c, fax_failed(d.external_id, clock.now())))  # type: ignore[arg-type]
    run_until(c, clock, clock.now() + timedelta(minutes=2))
    d, _ = _delivery(c)
    services.record_fax_status(c, fax_delivered(d.external_id, clock.now()))  # type: ignore[arg-type]
    d, case = _delivery(c)
    assert (d.status, d.transmissions, case.status) == ("delivered", 2, "delivered")
    assert uploads.submissions == []


@pytest.mark.parametrize("transient", [True, False])
def test_transient_failures_and_hash_mismatches_do_not_fall_back(
    fallback_env, transient: bool
) -> None:  # type: ignore[no-untyped-def]
    """A passing outage retries the upload; a hash mismatch fails and flags (a person looks)."""
    c, clock, line, uploads = fallback_env
    uploads.fail_with = TransientError("503") if transient else HashMismatch("agency hash differs")
    _to_delivery(c, clock)
    d, _case = _delivery(c)
    assert line.sent == [] and d.document_uri is None
    assert d.status == ("pending" if transient else "failed")
