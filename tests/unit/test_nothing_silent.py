"""Nothing silent, and an attestation that stands on its own: intake warnings, quarantined
replies, short windows and late receipts flag the case and appear in the report; the
attestation is exported per case as PDF and JSON (CLI and API)."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog
from click.testing import CliRunner
from pypdf import PdfReader
from sqlalchemy import select

from config.settings import get_settings
from simulator.documents import generate_records_pdf
from simulator.scenario import parse_scenario
from storage.db import transaction
from storage.models import AuditEvent, Case, RecordRequest
from tests.conftest import at, notification
from tests.fakes import api_client, fax_received, make_container, run_until
from worker import services
from worker.cli import main
from worker.notification import IntakeError
from worker.readmodels.attestation import attestation_json, case_attestation
from worker.readmodels.report import build_report

START = at("2026-04-17T09:00:00-04:00")
LONG_URL = "https://fhir.partners-healthcare-example.org/api/r4/records/tasks"


@pytest.fixture
def env(tmp_path: Path):  # type: ignore[no-untyped-def]
    c, clock, fax, deliverer = make_container(tmp_path, START)
    yield c, clock, fax, deliverer
    c.close()


def _case(c) -> Case:  # type: ignore[no-untyped-def]
    with transaction(c.sessions) as s:
        case = s.scalars(select(Case)).one()
        for r in case.requests:
            _ = r.attempts
        return case


def _designee_notification(**overrides: Any) -> dict[str, Any]:
    doc = notification(**overrides)
    doc["providers"][0]["designee"] = {
        "vendor_id": "vendor-1",
        "name": "Records Retrieval Co.",
        "channels": [{"kind": "fhir", "base_url": LONG_URL}],
    }
    return doc


def test_intake_counts_business_windows_per_request(env) -> None:  # type: ignore[no-untyped-def]
    """A standard MA case received Fri 09:00 has three business windows (Fri, Tue, Wed before
    the reserve); nothing to warn about."""
    c, _, _, _ = env
    result = services.intake(c, notification())
    assert result.warnings == []
    case = _case(c)
    assert [r.business_windows for r in case.requests] == [3]
    assert case.attention is None or "business window" not in case.attention


def test_case_received_past_due_is_flagged_at_intake_and_in_the_report(env) -> None:  # type: ignore[no-untyped-def]
    """A notification received a week before now is past its due time: intake warns, the case
    is flagged for ops, the report says so."""
    c, _, _, _ = env
    result = services.intake(c, notification(received_at="2026-04-08T09:00:00-04:00"))
    assert result.warnings == ["received past its due time: deliver at once"]
    case = _case(c)
    assert case.attention and "received past its due time" in case.attention
    report = build_report(c)
    assert report["cases"][0]["warnings"] == ["received past its due time: deliver at once"]
    assert report["summary"]["cases_with_warnings"] == 1
    with transaction(c.sessions) as s:
        kinds = [e.kind for e in s.scalars(select(AuditEvent))]
    assert "case.attention" in kinds


def test_provider_hours_too_short_for_three_windows_flag_the_request(env) -> None:  # type: ignore[no-untyped-def]
    """A provider open only 08:00-09:00 has openings too short to count: the window allows no
    business windows, the request says so and the case is flagged."""
    c, _, _, _ = env
    doc = notification()
    doc["providers"][0]["business_hours"] = ["08:00", "08:30"]
    result = services.intake(c, doc)
    assert result.warnings == ["window allowed 0 business windows for prov-1"]
    case = _case(c)
    assert case.requests[0].business_hours == ["08:00", "08:30"]
    assert case.requests[0].business_windows == 0
    assert case.attention and "window allowed 0 business windows for prov-1" in case.attention
    request = build_report(c)["cases"][0]["requests"][0]
    assert request["business_windows"] == 0


def test_malformed_provider_hours_are_an_intake_error(env) -> None:  # type: ignore[no-untyped-def]
    """Provider hours must be two HH:MM times, opening first; the error names the field."""
    c, _, _, _ = env
    doc = notification()
    doc["providers"][0]["business_hours"] = ["17:00", "08:00"]
    with pytest.raises(IntakeError) as info:
        services.intake(c, doc)
    assert info.value.errors[0][0] == "providers.0"
    assert "business_hours" in info.value.errors[0][1]


def test_provider_hours_time_the_attempts(env) -> None:  # type: ignore[no-untyped-def]
    """A provider open 10:00-15:00 (received Fri 09:00) gets attempt 1 at its opening."""
    c, clock, fax, _ = env
    doc = notification()
    doc["providers"][0]["business_hours"] = ["10:00", "15:00"]
    services.intake(c, doc)
    assert fax.sent == []
    run_until(c, clock, at("2026-04-17T10:30:00-04:00"))
    case = _case(c)
    assert [a.sent_at for a in case.requests[0].attempts] == [at("2026-04-17T10:00:00-04:00")]


def test_quarantined_reply_flags_the_case_and_shows_on_the_attestation(env) -> None:  # type: ignore[no-untyped-def]
    """A corrupt reply from the provider's number is quarantined; the case is flagged, the
    report has a line, and the attestation lists the reply with the reason."""
    c, clock, fax, _ = env
    services.intake(c, notification())
    clock.advance(3600)
    fax.media["bad"] = b"%PDF-1.4 truncated"
    c.dispatcher.enqueue(
        services.record_inbound_fax(c, fax_received("in-1", "bad", clock.now(), "+16175550101"))
    )
    case = _case(c)
    assert case.attention and "reply from prov-1 quarantined" in case.attention
    report = build_report(c)["cases"][0]
    assert "reply from prov-1 quarantined: see documents" in report["warnings"]
    found = case_attestation(c, case.id)
    assert found is not None
    replies = attestation_json(found)["providers"][0]["replies"]
    assert [(r["status"], bool(r["reason"])) for r in replies] == [("quarantined", True)]


def test_report_requests_carry_business_windows_and_standard_met(env) -> None:  # type: ignore[no-untyped-def]
    """An unresponsive provider gets three attempts before the cutoff: standard met; sent_at
    keeps its offset."""
    c, clock, _, _ = env
    services.intake(c, notification())
    run_until(c, clock, at("2026-04-24T00:00:00-04:00"))
    request = build_report(c)["cases"][0]["requests"][0]
    assert request["status"] == "unresponsive"
    assert request["business_windows"] == 3
    assert request["attempts_before_cutoff"] == 3
    assert request["standard_met"] is True
    for attempt in request["attempts"]:
        assert attempt["sent_at"].endswith("+00:00") and attempt["channel"] == "fax"


def test_standard_not_met_when_fewer_attempts_fit(env) -> None:  # type: ignore[no-untyped-def]
    """Received after its assembly cutoff (but before due): no attempt fits; standard not met,
    and the case says there was no time for outreach."""
    c, clock, _, _ = env
    clock.advance_to(at("2026-04-23T14:00:00-04:00"))
    result = services.intake(c, notification(received_at="2026-04-17T09:00:00-04:00"))
    assert result.warnings == ["received after the assembly cutoff: no time for outreach"]
    request = build_report(c)["cases"][0]["requests"][0]
    assert request["standard_met"] is False and request["attempts_before_cutoff"] == 0


def test_attestation_json_names_designee_destination_and_local_times(env) -> None:  # type: ignore[no-untyped-def]
    """The JSON export carries the citation, responsible role, the designee and local times."""
    c, clock, fax, _ = env
    services.intake(c, _designee_notification())
    case = _case(c)
    clock.advance(3600)
    fax.media["m1"] = generate_records_pdf(case.requests[0].reference, "Example", "M1001", 2)
    c.dispatcher.enqueue(
        services.record_inbound_fax(c, fax_received("in-1", "m1", clock.now(), "+16175550101"))
    )
    found = case_attestation(c, case.id)
    assert found is not None
    doc = attestation_json(found)
    assert doc["citation"].startswith("958 CMR 3.409")
    assert doc["responsible"] == "Director, Appeals and Grievances"  # the default role
    assert doc["generated_at"].endswith("-04:00")
    provider = doc["providers"][0]
    assert provider["designee"] == "Records Retrieval Co. (vendor-1)"
    assert provider["status"] == "fulfilled" and provider["standard_met"] is True
    assert provider["attempts"][0]["sent_at"] == "2026-04-17T09:00:00-04:00"
    assert provider["replies"][0]["status"] == "accepted"


def test_api_serves_the_attestation_as_pdf_and_json(env) -> None:  # type: ignore[no-untyped-def]
    """GET /v1/cases/{id}/attestation?format=pdf|json (compliance); unknown case 404, bad
    format 422."""
    c, _, _, _ = env
    services.intake(c, notification())
    case_id = _case(c).id
    http = api_client(c, "compliance")
    try:
        assert api_client(c, "ops").get(f"/v1/cases/{case_id}/attestation").status_code == 403
        pdf = http.get(f"/v1/cases/{case_id}/attestation")
        assert pdf.status_code == 200 and pdf.headers["content-type"] == "application/pdf"
        text = " ".join(PdfReader(io.BytesIO(pdf.content)).pages[0].extract_text().split())
        assert "Example Orthopedics" in text and f"{case_id} · page 1 of 1" in text
        body = http.get(f"/v1/cases/{case_id}/attestation", params={"format": "json"}).json()
        assert body["case_id"] == case_id and body["providers"][0]["provider_id"] == "prov-1"
        assert http.get("/v1/cases/nope/attestation").status_code == 404
        bad = http.get(f"/v1/cases/{case_id}/attestation", params={"format": "docx"})
        assert bad.status_code == 422
        intake = api_client(c, "intake").post(
            "/v1/notifications",
            json=notification(notification_id="N-late", received_at="2026-04-01T09:00:00Z"),
        )
        assert intake.json()["warnings"] == ["received past its due time: deliver at once"]
    finally:
        http.close()


@pytest.fixture
def cli_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    url = f"sqlite:///{tmp_path / 'gf.db'}"
    monkeypatch.setenv("GOODFAITH_DATABASE_URL", url)
    monkeypatch.setenv("GOODFAITH_OBJECT_STORE", f"file://{tmp_path / 'objects'}")
    monkeypatch.setenv("GOODFAITH_ATTESTATION_RESPONSIBLE", "Jordan Lee, Appeals Manager")
    saved_structlog = structlog.get_config()
    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    get_settings.cache_clear()
    c, _, _, _ = make_container(tmp_path, START, url)
    try:
        yield c
    finally:
        c.close()
        get_settings.cache_clear()
        structlog.configure(**saved_structlog)
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)


def test_cli_exports_the_attestation_as_pdf_and_json(cli_env, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """goodfaith export attestation --case ID [--format pdf|json]: the responsible person from
    config is printed; an unknown case is an error naming it."""
    c = cli_env
    services.intake(c, notification())
    case_id = _case(c).id
    out = tmp_path / "a.pdf"
    result = CliRunner().invoke(main, ["export", "attestation", "--case", case_id, "-o", str(out)])
    assert result.exit_code == 0, result.output
    text = " ".join(PdfReader(str(out)).pages[0].extract_text().split())
    assert "Responsible for this statement: Jordan Lee, Appeals Manager" in text
    result = CliRunner().invoke(
        main, ["export", "attestation", "--case", case_id, "--format", "json"]
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["responsible"] == "Jordan Lee, Appeals Manager"
    result = CliRunner().invoke(main, ["export", "attestation", "--case", "nope"])
    assert result.exit_code != 0 and "no case 'nope'" in result.output


def test_scenario_key_matching_no_provider_is_a_warning() -> None:
    """A scenario's provider key that names no provider or designee is reported, not ignored."""
    scenario = parse_scenario(
        {
            "start": "2026-04-16T08:00:00-04:00",
            "notifications": [_designee_notification()],
            "providers": {"prov-1": {}, "vendor-1": {}, "prov-typo": {}},
        }
    )
    assert len(scenario.warnings) == 1
    assert scenario.warnings[0].startswith("providers.prov-typo: matches no provider_id")


def test_request_rows_keep_designee_identity(env) -> None:  # type: ignore[no-untyped-def]
    """The designee's vendor id and name are kept with its channels (for the attestation)."""
    c, _, _, _ = env
    services.intake(c, _designee_notification())
    with transaction(c.sessions) as s:
        r = s.scalars(select(RecordRequest)).one()
        designee = [ch for ch in r.channels if ch["designee"]]
    assert designee == [
        {
            "kind": "fhir",
            "destination": LONG_URL,
            "designee": True,
            "owner_id": "1234567893",
            "designee_id": "vendor-1",
            "designee_name": "Records Retrieval Co.",
        }
    ]


def test_what_opening_finds_missing_joins_what_intake_flagged(tmp_path: Path) -> None:
    """Received past its due time (intake's flag), then opened with no EOC in the library and
    no authorization: the case keeps all three reasons, intake's first (opening replaced it)."""
    c, _, _, _ = make_container(tmp_path, START, eoc_fallback=None, authorization_fallback=None)
    try:
        services.intake(c, notification(received_at="2026-04-08T09:00:00-04:00"))
        reasons = (_case(c).attention or "").split("; ")
        assert reasons[0] == "received past its due time: deliver at once"
        assert reasons[1].startswith("evidence of coverage not found")
        assert reasons[2] == "no authorization for release with the notification"
    finally:
        c.close()
