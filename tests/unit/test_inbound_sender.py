"""An inbound fax quoting no reference is matched by its sender's number (services/inbound.py):
one look-up in ``request_numbers`` by the normalised number, never a read of every open
request. It matches as before: the one open request of that number, or one of the one chase
they share; several unrelated ones leave the fax in the inbox. Any spelling of the number
matches, and a designee's fax number counts for its request."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, select

from simulator.documents import generate_records_pdf
from storage.db import transaction
from storage.models import Document, RecordRequest, RequestNumber
from tests.conftest import at, notification
from tests.fakes import FakeFax, fax_received, make_container
from worker import services
from worker.domain.faxnumbers import normalized, request_fax_numbers
from worker.wiring import Container

START = at("2026-04-17T09:00:00-04:00")
CAMPAIGN_ROWS = 300
HEADER = "member_id,member_name,birth_date,provider_id,provider_name,npi,fax,fhir,request,due_date"


@pytest.mark.parametrize(
    ("spelled", "e164"),
    [
        ("+16175550101", "+16175550101"),
        ("16175550101", "+16175550101"),
        ("6175550101", "+16175550101"),
        ("(617) 555-0101", "+16175550101"),
        ("+1 617-555-0101", "+16175550101"),
        ("+1.617.555.0101", "+16175550101"),
        ("0044 20 7946 0958", "+442079460958"),
        ("+442079460958", "+442079460958"),
    ],
)
def test_a_number_has_one_spelling(spelled: str, e164: str) -> None:
    assert normalized(spelled) == e164


@pytest.mark.parametrize("text", ["", None, "anonymous", "+0123456", "12345", "+1617555010199999"])
def test_what_is_not_a_number_is_none(text: str | None) -> None:
    assert normalized(text) is None


def test_a_requests_numbers_are_its_fax_channels_once_each() -> None:
    channels = [
        {"kind": "fax", "destination": "+16175550101"},
        {"kind": "fhir", "destination": "https://ehr.example/fhir"},
        {"kind": "vendor", "destination": "ciox"},
        {"kind": "fax", "destination": "+16175550101", "designee": True},
        {"kind": "fax", "destination": "+18005550123", "designee": True},
    ]
    assert request_fax_numbers(channels) == {"+16175550101", "+18005550123"}


def _campaign_csv(rows: int) -> str:
    lines = [HEADER]
    for i in range(rows):
        lines.append(
            f"C{i:04d},Member {i},1970-01-01,clinic-{i},Clinic {i},,+1508555{i:04d},,"
            "Office notes,2026-05-29"
        )
    return "\n".join(lines) + "\n"


@pytest.fixture
def env(tmp_path: Path, database_url: str) -> Iterator[tuple[Container, Any, FakeFax]]:
    """A review (provider fax +16175550101, its designee's +18005550123) beside a campaign
    of CAMPAIGN_ROWS open requests, each at its own number; on SQLite and PostgreSQL."""
    c, clock, fax, _d = make_container(tmp_path, START, database_url)
    provider = dict(notification()["providers"][0])
    provider["designee"] = {
        "vendor_id": "ciox",
        "name": "Ciox Health",
        "channels": [{"kind": "fax", "number": "+18005550123"}],
    }
    services.intake(c, notification(providers=[provider]))
    services.load_campaign(c, {"name": "charts", "csv": _campaign_csv(CAMPAIGN_ROWS)}, "test")
    try:
        yield c, clock, fax
    finally:
        c.close()


def _reply(c: Container, fax: FakeFax, fax_id: str, sender: str) -> Document:
    """An unreferenced reply from ``sender`` (records quoting no GF- reference), processed."""
    fax.media[fax_id] = generate_records_pdf("see attached", "Clinic", "M1001", 2)
    c.dispatcher.enqueue(
        services.record_inbound_fax(c, fax_received(fax_id, fax_id, c.clock.now(), sender))
    )
    with transaction(c.sessions) as s:
        d = s.scalars(select(Document).where(Document.external_id == fax_id)).one()
        s.expunge(d)
        return d


def _request_of(c: Container, number: str) -> RecordRequest:
    with transaction(c.sessions) as s:
        r = s.scalars(
            select(RecordRequest)
            .join(RequestNumber, RequestNumber.request_id == RecordRequest.id)
            .where(RequestNumber.number == number)
        ).one()
        s.expunge(r)
        return r


class Loads:
    """Counts RecordRequest rows loaded into sessions while it is entered."""

    def __init__(self) -> None:
        self.count = 0

    def _loaded(self, *_args: Any) -> None:
        self.count += 1

    def __enter__(self) -> Loads:
        event.listen(RecordRequest, "load", self._loaded)
        return self

    def __exit__(self, *_exc: Any) -> None:
        event.remove(RecordRequest, "load", self._loaded)


def test_every_request_has_its_numbers_rows(env: tuple[Container, Any, FakeFax]) -> None:
    """Intake writes the provider's and the designee's numbers; a campaign load its rows'."""
    c, _clock, _fax = env
    with transaction(c.sessions) as s:
        review = s.scalars(select(RecordRequest).where(RecordRequest.npi.is_not(None))).first()
        assert review is not None
        assert {n.number for n in review.numbers} == {"+16175550101", "+18005550123"}
        assert len(s.scalars(select(RequestNumber)).all()) == 2 + CAMPAIGN_ROWS


def test_a_reply_in_any_spelling_finds_its_request_without_reading_every_open_request(
    env: tuple[Container, Any, FakeFax],
) -> None:
    """A reply from the review's provider, its number spelled otherwise, closes that request;
    matching it read a handful of requests, not the campaign's hundreds."""
    c, _clock, fax = env
    review = _request_of(c, "+18005550123")  # the designee's number: the same request
    with Loads() as loads:
        d = _reply(c, fax, "from-provider", "1 (617) 555-0101")
    assert d.request_id == review.id
    assert loads.count < 10 < CAMPAIGN_ROWS  # the whole open set was CAMPAIGN_ROWS + 1
    with transaction(c.sessions) as s:
        assert s.get(RecordRequest, review.id).status == "fulfilled"  # type: ignore[union-attr]


def test_a_reply_from_a_designee_or_a_campaign_clinic_finds_its_request(
    env: tuple[Container, Any, FakeFax],
) -> None:
    """The designee's number is the request's too; a campaign's request (bulk-inserted at
    load) is found by its row's number, given without the country code."""
    c, _clock, fax = env
    review = _request_of(c, "+16175550101")
    assert _reply(c, fax, "from-designee", "+18005550123").request_id == review.id
    clinic = _request_of(c, "+15085550123")
    assert _reply(c, fax, "from-clinic", "5085550123").request_id == clinic.id


def test_a_closed_request_or_a_stranger_leaves_the_reply_in_the_inbox(
    env: tuple[Container, Any, FakeFax],
) -> None:
    """Only open requests match: a second unreferenced reply after the request closed, and a
    reply from a number no request uses, wait for a person, as before."""
    c, _clock, fax = env
    review = _request_of(c, "+16175550101")
    assert _reply(c, fax, "first", "+16175550101").request_id == review.id
    assert _reply(c, fax, "second", "+16175550101").request_id is None
    assert _reply(c, fax, "stranger", "+19785550199").request_id is None
    assert _reply(c, fax, "anonymous", "anonymous").request_id is None
