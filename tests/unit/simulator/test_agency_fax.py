"""Fax-only agencies in the simulator: the scenario's ``agencies`` key, the agency's fax line
(busy for its first calls) and its clerk reading the cover sheet our fax transport writes."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from config.settings import AgencySettings
from connectors.base import PacketSubmission
from connectors.delivery.fax import FaxAgencySettings, FaxPacketDeliverer
from simulator.agency_lines import AgencyLine, AgencyLines
from simulator.documents import generate_records_pdf
from simulator.scenario import ScenarioError, far_side_book, parse_scenario
from tests.conftest import at, notification
from tests.fakes import FakeFax

FAX = "+16175550199"


def _base(**extra: Any) -> dict[str, Any]:
    return {
        "start": "2026-04-16T08:00:00-04:00",
        "notifications": [notification(agency_id="agency-fax")],
        **extra,
    }


def test_the_scenario_takes_a_fax_only_agency_and_gives_our_side_its_number() -> None:
    """``transport: fax`` becomes FaxAgencySettings for our side and a line on the far side;
    an agency left out keeps HTTPS uploads to the simulator."""
    scenario = parse_scenario(
        _base(agencies={"agency-fax": {"transport": "fax", "fax_number": FAX, "busy_first": 2}})
    )
    assert scenario.agencies["agency-fax"].busy_first == 2 and scenario.warnings == []
    book = far_side_book("http://sim", scenario.notifications, scenario.agencies)
    assert book.agencies["agency-fax"] == FaxAgencySettings(
        name="External review agency agency-fax", fax_number=FAX
    )
    assert book.agency_lines["agency-fax"] == AgencyLine("agency-fax", FAX, 2)
    plain = far_side_book("http://sim", scenario.notifications)
    assert isinstance(plain.agencies["agency-fax"], AgencySettings) and not plain.agency_lines


@pytest.mark.parametrize(
    ("agency", "message"),
    [
        ({"transport": "fax"}, "fax_number"),
        ({"transport": "fax", "fax_number": "617-555"}, "agencies.agency-fax.fax_number"),
        ({"transport": "carrier-pigeon"}, "agencies.agency-fax.transport"),
        ({"transport": "fax", "fax_number": FAX, "redial": 3}, "redial: unknown key"),
        ({"busy_first": 1}, "busy_first needs a fax line"),
        ({"fax_number": FAX}, "transport 'fax' only"),
        ({"transport": "fax", "fax_number": FAX, "uploads": "refused"}, "'https' only"),
        ({"uploads": "sometimes"}, "agencies.agency-fax.uploads"),
    ],
)
def test_a_bad_agency_entry_is_refused_by_name(agency: dict[str, Any], message: str) -> None:
    """Missing or malformed numbers, unknown transports and unknown keys are refused."""
    with pytest.raises(ScenarioError, match=message):
        parse_scenario(_base(agencies={"agency-fax": agency}))


def test_an_https_agency_may_refuse_uploads_and_fall_back_to_a_fax_line() -> None:
    """Our side gets the HTTPS agency with its fallback number; the far side refuses its
    uploads and has a line (busy first, if asked) on the fallback number."""
    scenario = parse_scenario(
        _base(
            agencies={
                "agency-fax": {"uploads": "refused", "fallback_fax_number": FAX, "busy_first": 1}
            }
        )
    )
    book = far_side_book("http://sim", scenario.notifications, scenario.agencies)
    agency = book.agencies["agency-fax"]
    assert isinstance(agency, AgencySettings) and agency.fallback_fax_number == FAX
    assert book.agency_lines["agency-fax"] == AgencyLine("agency-fax", FAX, 1)
    assert book.refused_uploads == {"agency-fax"}


def test_an_agency_no_notification_names_is_warned_about() -> None:
    """Its behaviour would silently never apply: the scenario says so."""
    scenario = parse_scenario(
        _base(agencies={"agency-zzz": {"transport": "fax", "fax_number": FAX}})
    )
    assert any(w.startswith("agencies.agency-zzz:") for w in scenario.warnings)


def test_an_agency_line_is_busy_for_its_first_calls_then_answers() -> None:
    """``busy_first`` calls are busy; every later call picks up; other numbers are not lines."""
    lines = AgencyLines({"a": AgencyLine("a", FAX, busy_first=2)})
    assert lines.owns(FAX) and not lines.owns("+16175550101")
    assert [lines.answers(FAX) for _ in range(4)] == [False, False, True, True]
    assert lines.calls(FAX) == 4


def test_the_agency_clerk_reads_the_cover_sheet_our_transport_writes() -> None:
    """Contract: the simulator's own reading of our cover finds the reference, the page counts
    and the packet's SHA-256, and counts the pages printed."""
    packet = generate_records_pdf("GF-ABCDEFGH", "Example Orthopedics", "M1", 4)
    sha = hashlib.sha256(packet).hexdigest()
    submission = PacketSubmission("k", "agency-fax", "case-9", "OPP-9", packet, {}, sha)
    transport = FaxPacketDeliverer(
        FakeFax(),
        {"agency-fax": FaxAgencySettings(name="F", fax_number=FAX)},
        carrier_name="Plan",
    )
    document = transport.fax_document(submission, at("2026-04-17T09:00:00-04:00"))
    lines = AgencyLines({"agency-fax": AgencyLine("agency-fax", FAX)})
    fax = lines.receive(FAX, "fx-1", document, at("2026-04-17T09:05:00-04:00"))
    assert (fax.pages, fax.cover_pages, fax.cover_packet_pages) == (5, 5, 4)
    assert (fax.cover_sha256, fax.cover_reference, fax.agency_id) == (sha, "OPP-9", "agency-fax")
    assert lines.received == [fax] and "document" not in fax.summary()
