"""Letters and packets follow the case's jurisdiction: its rule and its local time.

Given a Texas case and a Massachusetts case opened through the real service path (fake
connectors, virtual clock), when the first request letter is built and the packet delivered,
then each document cites its own jurisdiction's rule and prints instants in that jurisdiction's
local time with the zone abbreviation and the UTC offset, never as bare UTC.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from pypdf import PdfReader
from sqlalchemy import select

from storage.db import transaction
from storage.models import Attempt, Case
from tests.conftest import at, notification
from tests.fakes import make_container
from worker import services
from worker.scheduler import next_due, tick

START = at("2026-04-17T09:00:00-04:00")  # Friday; both zones are on daylight time


@dataclass(frozen=True)
class Expected:
    code: str
    citation: str
    other_citation: str  # the other jurisdiction's rule, which must not appear
    zone: str
    abbreviation: str
    offset: str


CASES = [
    Expected("TX", "Tex. Ins. Code 4201.402", "958 CMR", "America/Chicago", "CDT", "(-05:00)"),
    Expected("MA", "958 CMR 3.409", "Tex. Ins. Code", "America/New_York", "EDT", "(-04:00)"),
]


@dataclass(frozen=True)
class Documents:
    letter: str
    cover: str
    attestation: str
    assemble_at: datetime
    due_at: datetime
    first_attempt_at: datetime


def _flat(text: str) -> str:
    return " ".join(text.split())


def _local(instant: datetime, zone: str) -> str:
    return instant.astimezone(ZoneInfo(zone)).strftime("%Y-%m-%d %H:%M")


def _open_and_run(tmp_path: Path, code: str) -> Iterator[Documents]:
    c, clock, _fax, deliverer = make_container(tmp_path, START)
    try:
        services.intake(c, notification(jurisdiction=code))
        until = at("2026-04-25T00:00:00-04:00")
        while (nxt := next_due(c)) is not None and nxt <= until:
            clock.advance_to(nxt)
            tick(c)
        with transaction(c.sessions) as s:
            case = s.scalars(select(Case)).one()
            first = s.scalars(select(Attempt).where(Attempt.number == 1)).one()
            assert first.letter_uri is not None and first.sent_at is not None
            letter_uri, sent_at = first.letter_uri, first.sent_at
            assemble_at, due_at = case.assemble_at, case.due_at
        assert len(deliverer.submissions) == 1
        packet = PdfReader(io.BytesIO(deliverer.submissions[0].packet_pdf))
        letter = PdfReader(io.BytesIO(c.store.get(letter_uri)))
        yield Documents(
            letter=_flat(letter.pages[0].extract_text()),
            cover=_flat(packet.pages[0].extract_text()),
            attestation=_flat(packet.pages[-1].extract_text()),
            assemble_at=assemble_at,
            due_at=due_at,
            first_attempt_at=sent_at,
        )
    finally:
        c.close()


@pytest.fixture(params=CASES, ids=[e.code for e in CASES])
def case(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Expected, Documents]]:
    expected: Expected = request.param
    for documents in _open_and_run(tmp_path, expected.code):
        yield expected, documents


def test_letter_cites_its_own_jurisdiction_and_prints_local_time(
    case: tuple[Expected, Documents],
) -> None:
    """The request letter cites the case's rule and its deadline in local time with offset."""
    expected, docs = case
    assert expected.citation in docs.letter
    assert expected.other_citation not in docs.letter
    deadline = (
        f"{_local(docs.assemble_at, expected.zone)} {expected.abbreviation} {expected.offset}"
    )
    assert f"Please respond by: {deadline}" in docs.letter
    assert "+00:00" not in docs.letter


def test_packet_cites_its_own_jurisdiction_and_prints_local_time(
    case: tuple[Expected, Documents],
) -> None:
    """The packet cover and attestation cite the case's rule and print local times with the
    offset: due time on the cover, each attempt's time on the attestation."""
    expected, docs = case
    suffix = f"{expected.abbreviation} {expected.offset}"
    assert f"Jurisdiction: {expected.code}" in docs.cover
    assert f"Rule: {expected.citation}" in docs.cover
    assert f"Due: {_local(docs.due_at, expected.zone)} {suffix}" in docs.cover
    assert f"Records duty under {expected.citation}" in docs.attestation
    assert (
        f"Attempt 1: {_local(docs.first_attempt_at, expected.zone)} {suffix}; fax"
        in docs.attestation
    )
    for text in (docs.cover, docs.attestation):
        assert expected.other_citation not in text
        assert "+00:00" not in text and "UTC" not in text
