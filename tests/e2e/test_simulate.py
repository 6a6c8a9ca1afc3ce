"""`goodfaith simulate`: the real pipeline on a virtual clock, checked against the policy."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pypdf import PdfReader

from config.jurisdictions import get_jurisdiction
from tests.conftest import notification
from worker.domain.outreach import planned_schedule
from worker.domain.types import Channel, ChannelKind, ReviewType

GOODFAITH = str(Path(sys.executable).parent / "goodfaith")
RESOLUTION = timedelta(seconds=60)  # the driver's time grid


def _provider(pid: str, fax: str, **extra: Any) -> dict[str, Any]:
    return {
        "provider_id": pid,
        "name": f"Provider {pid}",
        "npi": "1234567893",
        "role": "treating",
        "network": "in",
        "channels": [{"kind": "fax", "number": fax}],
        **extra,
    }


def _scenario(corpus_pdf: Path) -> dict[str, Any]:
    providers = [
        _provider("prov-1", "+16175550101"),
        _provider("prov-2", "+16175550102"),
        _provider(
            "prov-3",
            "+16175550103",
            designee={
                "vendor_id": "vendor-9",
                "name": "Retrieval Co",
                "channels": [{"kind": "fax", "number": "+17815550103"}],
            },
        ),
        _provider("prov-4", "+16175550104"),
        _provider("prov-5", "+16175550105"),
    ]
    return {
        "start": "2026-04-16T08:00:00-04:00",
        "notifications": [
            notification(
                notification_id="STD-1",
                received_at="2026-04-16T09:30:00-04:00",
                providers=providers,
            ),
            notification(
                notification_id="EXP-1",
                received_at="2026-04-16T10:00:00-04:00",
                review_type="expedited",
                # another member: each case's own schedule is checked here (one member's two
                # cases share one chase: tests/unit/test_coalescing.py)
                insured={"member_id": "M2002", "name": "John Doe", "birth_date": "1980-05-06"},
                providers=[
                    _provider("prov-2", "+16175550102"),
                    _provider("prov-1", "+16175550101"),
                ],
            ),
        ],
        "providers": {
            "prov-1": {"respond_after_attempts": 1, "reply_delay_minutes": 90, "pages": 12},
            "prov-2": {"respond_after_attempts": None},
            "prov-3": {"fax": "busy", "respond_after_attempts": 2, "pages": 4},
            "prov-4": {"reply": "no_records", "respond_after_attempts": 2},
            "prov-5": {"respond_after_attempts": 1, "document": str(corpus_pdf)},
            "vendor-9": {"respond_after_attempts": 1, "pages": 6},  # prov-3's designee
        },
        "until": "2026-04-24T18:00:00-04:00",
    }


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> dict[str, Any]:
    """One `goodfaith simulate` run shared by the checks below (it takes a few seconds)."""
    from tests.conftest import corpus_dir

    corpus = corpus_dir()
    if corpus is None:
        if os.environ.get("CI"):
            pytest.fail("CI needs the shared PDF corpus")
        pytest.skip("shared PDF corpus not found")
    tmp = tmp_path_factory.mktemp("simulate")
    pdf = corpus / "sample-files" / "004-pdflatex-4-pages" / "pdflatex-4-pages.pdf"
    scenario = tmp / "scenario.json"
    scenario.write_text(json.dumps(_scenario(pdf)))
    env = {k: v for k, v in os.environ.items() if not k.startswith("GOODFAITH_")}
    env["GOODFAITH_REDIS_URL"] = redis_url
    proc = subprocess.run(
        [
            GOODFAITH,
            "simulate",
            str(scenario),
            "--json",
            str(tmp / "report.json"),
            "--workdir",
            str(tmp / "run"),
            "--quiet",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((tmp / "report.json").read_text())
    return {
        "report": report,
        "pdf": pdf,
        "cases": {c["notification_id"]: c for c in report["cases"]},
    }


def _req(case: dict[str, Any], pid: str) -> dict[str, Any]:
    return next(r for r in case["requests"] if r["provider_id"] == pid)


def _t(text: str) -> datetime:
    return datetime.fromisoformat(text)


def test_both_review_types_meet_their_deadlines(run: dict[str, Any]) -> None:
    """The standard and the expedited case are each delivered before their due instant."""
    for nid in ("STD-1", "EXP-1"):
        case = run["cases"][nid]
        assert case["status"] == "delivered" and case["on_time"], nid
        assert _t(case["delivered_at"]) <= _t(case["due_at"])
    exp = run["cases"]["EXP-1"]
    assert _t(exp["due_at"]) - _t(exp["received_at"]) == timedelta(hours=24)


def test_unresponsive_provider_gets_three_spaced_attempts_as_the_policy_plans(
    run: dict[str, Any],
) -> None:
    """prov-2 never answers: ≥3 attempts before the cutoff, at the policy's planned times."""
    j = get_jurisdiction("MA")
    for nid, review in (("STD-1", ReviewType.STANDARD), ("EXP-1", ReviewType.EXPEDITED)):
        case = run["cases"][nid]
        attempts = _req(case, "prov-2")["attempts"]
        assert len(attempts) >= 3
        assert _req(case, "prov-2")["status"] == "unresponsive"
        sent = [_t(a["sent_at"]) for a in attempts]
        assert all(t < _t(case["assemble_at"]) for t in sent)
        plan = planned_schedule(
            opened_at=_t(case["received_at"]),
            cutoff=_t(case["assemble_at"]),
            review_type=review,
            channels=[Channel(ChannelKind.FAX, "+16175550102", False, "1234567893")],
            jurisdiction=j,
        )
        assert len(plan) == len(attempts)
        for planned, actual in zip(plan, sent, strict=True):
            assert timedelta(0) <= actual - planned.at <= RESOLUTION, (nid, planned.at, actual)
        assert all(b - a >= timedelta(minutes=30) for a, b in itertools.pairwise(sent))


def test_responsive_provider_gets_no_attempt_after_its_records(run: dict[str, Any]) -> None:
    """prov-1 answers the first request in each case: one attempt each, request fulfilled."""
    for nid in ("STD-1", "EXP-1"):
        r = _req(run["cases"][nid], "prov-1")
        assert r["status"] == "fulfilled" and len(r["attempts"]) == 1, nid
        assert [(d["status"], d["pages"]) for d in r["documents"]] == [("accepted", 12)]


def test_busy_fax_line_escalates_to_the_designee(run: dict[str, Any]) -> None:
    """prov-3's line is always busy: redialled within attempt 1, then the vendor is tried."""
    r = _req(run["cases"]["STD-1"], "prov-3")
    first, second = r["attempts"][0], r["attempts"][1]
    assert first["outcome"] == "failed" and first["transmissions"] == 3
    assert first["destination"] == "+16175550103"
    assert second["destination"] == "+17815550103" and second["reason"] == "escalation"
    assert second["designee"] is True
    assert r["status"] == "fulfilled"


def test_written_no_records_reply_closes_the_request(run: dict[str, Any]) -> None:
    """prov-4 answers the second request in writing that it holds no records."""
    r = _req(run["cases"]["STD-1"], "prov-4")
    assert r["status"] == "no_records" and len(r["attempts"]) == 2


def test_real_world_pdf_reply_lands_in_the_packet(run: dict[str, Any]) -> None:
    """prov-5 faxes back a real PDF: accepted with its page count and merged into the packet."""
    case = run["cases"]["STD-1"]
    r = _req(case, "prov-5")
    expected = len(PdfReader(run["pdf"]).pages)
    assert r["status"] == "fulfilled"
    assert [(d["status"], d["pages"]) for d in r["documents"]] == [("accepted", expected)]
    packet = Path(case["packet"]["local_path"])
    reader = PdfReader(packet)
    assert len(reader.pages) == case["packet"]["pages"]
    manifest = json.loads(Path(case["packet"]["manifest_uri"].removeprefix("file://")).read_text())
    pages = {p.get("provider_id"): p["pages"] for p in manifest["parts"] if p["kind"] == "records"}
    assert pages == {"prov-1": 12, "prov-3": 6, "prov-5": expected}  # prov-3's via its vendor


def test_attestation_page_documents_every_attempt(run: dict[str, Any]) -> None:
    """The packet's good-faith attestation names each provider and lists its attempts."""
    case = run["cases"]["STD-1"]
    reader = PdfReader(case["packet"]["local_path"])
    text = "".join(page.extract_text() or "" for page in reader.pages[-3:])
    for pid in ("prov-1", "prov-2", "prov-3", "prov-4", "prov-5"):
        assert f"Provider {pid}" in text
    assert "+16175550102" in text and "+17815550103" in text


def test_malformed_scenario_is_refused_naming_the_key(tmp_path: Path) -> None:
    """An unknown provider key in a scenario is an error that names it; nothing runs."""
    from simulator.scenario import ScenarioError, parse_scenario

    bad = {
        "start": "2026-04-16T08:00:00-04:00",
        "notifications": [notification()],
        "providers": {"prov-1": {"respond_after": 1}},
    }
    with pytest.raises(ScenarioError, match=r"providers\.prov-1\.respond_after: unknown key"):
        parse_scenario(bad)
    with pytest.raises(ScenarioError, match="start"):
        parse_scenario({"notifications": [notification()]})
