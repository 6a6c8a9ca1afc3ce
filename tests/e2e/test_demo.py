"""The whole pipeline: `goodfaith demo` as a user runs it, and the same run on PostgreSQL and S3."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from pypdf import PdfReader

from simulator.demo import demo_scenario
from simulator.driver import run_simulation
from tests.conftest import postgres_url

GOODFAITH = str(Path(sys.executable).parent / "goodfaith")


def _env(redis_url: str) -> dict[str, str]:
    """A newcomer's environment: no GOODFAITH_* settings but Redis (every default in ./var)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GOODFAITH_")}
    env["GOODFAITH_REDIS_URL"] = redis_url
    return env


def _check_packets(report: dict) -> None:  # type: ignore[type-arg]
    for case in report["cases"]:
        packet = case["packet"]
        assert packet is not None, case["notification_id"]
        pdf = Path(packet["local_path"])
        assert len(PdfReader(pdf).pages) == packet["pages"]
        import hashlib

        assert hashlib.sha256(pdf.read_bytes()).hexdigest() == packet["sha256"]
        manifest = json.loads(Path(packet["manifest_uri"].removeprefix("file://")).read_text())
        assert manifest["packet_sha256"] == packet["sha256"]


def test_demo_delivers_every_case_on_time_and_exports_every_attempt(
    redis_url: str, tmp_path: Path
) -> None:
    """`goodfaith demo --cases 12 --json` exits 0; packets are valid PDFs; then `goodfaith
    export attempts`, run as a newcomer would (same folder, no settings), lists every attempt;
    a second demo runs too, and the export then lists both runs' attempts."""
    workdir = tmp_path / "run"
    out = tmp_path / "out.json"
    env = _env(redis_url)
    proc = subprocess.run(
        [GOODFAITH, "demo", "--cases", "12", "--json", str(out), "--workdir", str(workdir)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["summary"]["cases"] == 12
    assert report["summary"]["on_time"] == 12 and report["summary"]["late"] == 0
    assert {c["status"] for c in report["cases"]} == {"delivered"}
    assert {c["review_type"] for c in report["cases"]} == {"standard", "expedited"}
    _check_packets(report)
    statuses = {r["status"] for c in report["cases"] for r in c["requests"]}
    assert {"fulfilled", "unresponsive", "no_records"} <= statuses
    for case in report["cases"]:
        for r in case["requests"]:
            if r["status"] == "unresponsive":
                assert len(r["attempts"]) >= 3
    exported = subprocess.run(
        [GOODFAITH, "export", "attempts", "--format", "json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
        cwd=tmp_path,
    )
    rows = json.loads(exported.stdout)["attempts"]
    assert len(rows) == report["summary"]["attempts"]
    reported = {
        (r["provider_id"], a["number"], a["external_id"])
        for c in report["cases"]
        for r in c["requests"]
        for a in r["attempts"]
    }
    assert {(x["provider_id"], x["attempt_number"], x["external_id"]) for x in rows} == reported
    csv_out = subprocess.run(
        [GOODFAITH, "export", "attempts", "--format", "csv"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
        cwd=tmp_path,
    )
    assert len(csv_out.stdout.strip().splitlines()) == len(rows) + 1
    assert (tmp_path / "var" / "goodfaith.db").is_file()  # the default database, not the run's

    out2 = tmp_path / "out2.json"
    again = subprocess.run(
        [GOODFAITH, "demo", "--cases", "2", "--json", str(out2), "--quiet"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
    )
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    second = json.loads(out2.read_text())
    assert second["summary"]["cases"] == second["summary"]["on_time"] == 2  # this run's only
    assert not {c["notification_id"] for c in second["cases"]} & {
        c["notification_id"] for c in report["cases"]
    }
    both = subprocess.run(
        [GOODFAITH, "export", "attempts", "--format", "csv"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
        cwd=tmp_path,
    )
    assert len(both.stdout.strip().splitlines()) == 1 + len(rows) + second["summary"]["attempts"]


@pytest.mark.postgres
def test_pipeline_runs_on_postgresql(redis_url: str, tmp_path: Path) -> None:
    """The same pipeline with PostgreSQL as the system of record."""
    url = postgres_url()
    if url is None:
        if os.environ.get("CI"):
            pytest.fail("CI must set GOODFAITH_DATABASE_URL to PostgreSQL")
        pytest.skip("GOODFAITH_DATABASE_URL does not name PostgreSQL")
    from tests.conftest import _fresh_postgres

    result = run_simulation(
        demo_scenario(4), workdir=tmp_path, redis_url=redis_url, database_url=_fresh_postgres(url)
    )
    s = result.report["summary"]
    assert (s["cases"], s["on_time"]) == (4, 4)
    _check_packets(result.report)


def test_pipeline_stores_objects_in_s3(redis_url: str, tmp_path: Path) -> None:
    """With an s3:// object store, documents and packets land in the bucket, encrypted."""
    import boto3
    from moto import mock_aws

    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="goodfaith-test")
        result = run_simulation(
            demo_scenario(2),
            workdir=tmp_path,
            redis_url=redis_url,
            object_store="s3://goodfaith-test/records",
            s3_client=s3,
        )
        report = result.report
        assert report["summary"]["on_time"] == 2
        for case in report["cases"]:
            uri = case["packet"]["uri"]
            assert uri.startswith("s3://goodfaith-test/records/cases/")
            assert case["packet"]["local_path"] is None
            key = uri.removeprefix("s3://goodfaith-test/")
            head = s3.head_object(Bucket="goodfaith-test", Key=key)
            assert head["ServerSideEncryption"] == "AES256"
            body = s3.get_object(Bucket="goodfaith-test", Key=key)["Body"].read()
            import io

            assert len(PdfReader(io.BytesIO(body)).pages) == case["packet"]["pages"]
