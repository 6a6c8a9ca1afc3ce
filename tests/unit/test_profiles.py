"""Provider profiles: measured from past attempts (retrieval rate, time to reply, channel
success), read by ops and exported; the outreach policy may choose the first channel by them."""

from __future__ import annotations

import csv
import io
import json
from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from config.jurisdictions import get_jurisdiction
from simulator.documents import generate_records_pdf
from storage.db import transaction
from storage.models import Attempt, RecordRequest
from tests.conftest import at, notification
from tests.fakes import api_client, fax_delivered, fax_received, make_container, run_until
from worker import services
from worker.domain.outreach import ChannelRecord, choose_channel, next_attempt
from worker.domain.types import (
    AttemptFact,
    AttemptOutcome,
    AttemptReason,
    Channel,
    ChannelKind,
    ReviewType,
)
from worker.readmodels.profiles import PROFILE_FIELDS, provider_profiles

START = at("2026-04-17T09:00:00-04:00")
FAX = Channel(ChannelKind.FAX, "+16175550101")
FHIR = Channel(ChannelKind.FHIR, "https://fhir.example.org", owner_id="1234567893")
VENDOR_FAX = Channel(ChannelKind.FAX, "+16175550199", designee=True)


def _rec(completed: int, delivered: int) -> ChannelRecord:
    return ChannelRecord(completed, delivered)


@pytest.mark.parametrize(
    ("profile", "first"),
    [
        (None, FAX),  # no profile: the listed order
        ({ChannelKind.FAX: _rec(10, 1), ChannelKind.FHIR: _rec(10, 9)}, FHIR),
        ({ChannelKind.FAX: _rec(4, 0), ChannelKind.FHIR: _rec(10, 8)}, FHIR),  # fax unknown
        ({ChannelKind.FHIR: _rec(10, 2)}, FAX),  # fhir known bad, fax unknown (0.5)
        ({ChannelKind.FAX: _rec(10, 7), ChannelKind.FHIR: _rec(10, 7)}, FAX),  # tie: listed
        ({ChannelKind.FAX: _rec(3, 3), ChannelKind.FHIR: _rec(3, 0)}, FAX),  # too little history
    ],
)
def test_the_first_channel_follows_the_measured_success(
    profile: dict[ChannelKind, ChannelRecord] | None, first: Channel
) -> None:
    """The first attempt takes the provider's own channel that succeeds best; channels with
    fewer than 5 completed attempts count as unknown (0.5); ties keep the listed order."""
    choice = choose_channel([FAX, FHIR, VENDOR_FAX], None, profile)
    assert choice == (first, AttemptReason.INITIAL)


def test_the_profile_never_moves_a_later_attempt_or_the_designee_first() -> None:
    """Follow-ups stay on the channel that was used; a designee is never made first."""
    profile = {ChannelKind.FAX: _rec(10, 0), ChannelKind.FHIR: _rec(10, 10)}
    previous = AttemptFact(1, START, START, FAX, AttemptOutcome.DELIVERED)
    assert choose_channel([FAX, FHIR], previous, profile) == (FAX, AttemptReason.FOLLOW_UP)
    assert choose_channel([FAX, VENDOR_FAX], None, profile) == (FAX, AttemptReason.INITIAL)
    planned = next_attempt(
        opened_at=START,
        cutoff=START + timedelta(days=5),
        review_type=ReviewType.STANDARD,
        channels=[FAX, FHIR],
        attempts=[],
        now=START,
        jurisdiction=get_jurisdiction("MA"),
        profile=profile,
    )
    assert planned is not None and planned.channel == FHIR


@pytest.fixture
def env(tmp_path: Path):  # type: ignore[no-untyped-def]
    c, clock, fax, deliverer = make_container(tmp_path, START)
    yield c, clock, fax, deliverer
    c.close()


def test_profiles_measure_retrieval_reply_time_and_channel_success(env) -> None:  # type: ignore[no-untyped-def]
    """Two reviews at one provider: one answered 2 hours after its fax, one not; the profile
    reads a 50 % retrieval rate, 2 hours to reply and the fax channel's deliveries; the API
    and the CLI export it as JSON and CSV."""
    c, clock, fax, _ = env
    services.intake(c, notification(notification_id="A"))
    other = {"member_id": "M2002", "name": "John Doe", "birth_date": "1980-05-06"}
    services.intake(c, notification(notification_id="B", insured=other))
    for fax_id in list(fax.ids.values()):
        c.dispatcher.enqueue(services.record_fax_status(c, fax_delivered(fax_id, clock.now())))
    with transaction(c.sessions) as s:
        refs = {r.case.notification_id: r.reference for r in s.scalars(select(RecordRequest))}
    clock.advance(2 * 3600)
    fax.media["m"] = generate_records_pdf(refs["A"], "Example Orthopedics", "M1001", 2)
    c.dispatcher.enqueue(
        services.record_inbound_fax(c, fax_received("in", "m", clock.now(), "+15550000"))
    )
    run_until(c, clock, at("2026-04-24T00:00:00-04:00"))
    (p,) = provider_profiles(c)
    assert p["provider_id"] == "prov-1" and p["requests"] == 2
    assert (p["fulfilled"], p["unresponsive"], p["retrieval_rate"]) == (1, 1, 0.5)
    assert (p["replies"], p["reply_hours_median"]) == (1, 2.0)
    fax_channel = p["channels"]["fax"]
    assert fax_channel["delivered"] >= 2 and fax_channel["success_rate"] is not None
    with transaction(c.sessions) as s:
        sending = [a for a in s.scalars(select(Attempt)) if a.served_by in (None, a.id)]
    assert p["attempts"] == len(sending)
    ops = api_client(c, "ops")
    body = ops.get("/v1/providers/profiles").json()
    assert body["profiles"][0]["retrieval_rate"] == 0.5
    text = ops.get("/v1/providers/profiles", params={"format": "csv"}).text
    rows = list(csv.DictReader(io.StringIO(text)))
    assert tuple(rows[0]) == PROFILE_FIELDS and rows[0]["retrieval_rate"] == "0.5"
    assert json.loads(rows[0]["channels"])["fax"]["delivered"] == fax_channel["delivered"]
    assert ops.get("/v1/providers/profiles", params={"provider_id": "x"}).json() == {"profiles": []}


def test_cli_exports_profiles(env, monkeypatch, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """`goodfaith export profiles -o FILE` writes the CSV."""
    from config.settings import get_settings
    from worker.cli import main

    c = env[0]
    services.intake(c, notification())
    monkeypatch.setenv("GOODFAITH_DATABASE_URL", str(c.engine.url))
    get_settings.cache_clear()
    out = tmp_path / "p.csv"
    try:
        result = CliRunner().invoke(main, ["export", "profiles", "-o", str(out)])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    (row,) = csv.DictReader(io.StringIO(out.read_text()))
    assert (row["provider_id"], row["requests"], row["open"]) == ("prov-1", "1", "1")


def test_a_profile_campaign_sends_its_first_attempt_over_the_best_channel(env) -> None:  # type: ignore[no-untyped-def]
    """A campaign with ``first_channel = profile``: the provider's faxes mostly failed and its
    FHIR Tasks went through, so the first attempt is a FHIR Task; a ``listed`` campaign
    faxes first."""
    c, clock, fax, _ = env
    services.intake(c, notification())
    with transaction(c.sessions) as s:
        r = s.scalars(select(RecordRequest)).one()
        for n in range(2, 12):
            kind, outcome = ("fax", "failed") if n % 2 else ("fhir", "delivered")
            s.add(
                Attempt(
                    request_id=r.id,
                    case_id=r.case_id,
                    number=n,
                    reason="follow_up",
                    planned_at=START,
                    sent_at=START,
                    channel=kind,
                    destination="x",
                    requested="history",
                    idempotency_key=f"hist-{n}",
                    outcome=outcome,
                )
            )
    header = (
        "member_id,member_name,birth_date,provider_id,provider_name,npi,fax,fhir,request,due_date"
    )
    row = (
        "M9,Pat Doe,1970-01-01,prov-1,Example Orthopedics,1234567893,+16175550101,"
        "https://fhir.example.org,Charts,2026-05-29"
    )
    fhir = c.requesters[ChannelKind.FHIR]
    for first_channel, grows in (("listed", "fax"), ("profile", "fhir")):
        before = (len(fax.sent), len(fhir.sent))  # type: ignore[attr-defined]
        doc = {"name": first_channel, "policy": {"first_channel": first_channel}}
        services.load_campaign(
            c, {**doc, "csv": f"{header}\n{row.replace('M9', first_channel)}\n"}, "t"
        )
        run_until(c, clock, clock.now() + timedelta(minutes=5))
        after = (len(fax.sent), len(fhir.sent))  # type: ignore[attr-defined]
        grew = "fax" if after[0] > before[0] else "fhir" if after[1] > before[1] else None
        assert grew == grows
