"""Shared fixtures.

Services: Redis comes from ``GOODFAITH_TEST_REDIS_URL`` when set, otherwise a private server is
started for the session (never skipped). PostgreSQL tests use ``GOODFAITH_DATABASE_URL`` when it
names a PostgreSQL database; under CI (``CI=true``) its absence is a failure, not a skip.
The real-world PDF corpus is found through ``GOODFAITH_CORPUS`` or ``../shared/corpus``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

REPO = Path(__file__).resolve().parents[1]
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def os_tool(name: str, candidates: tuple[str, ...], package: str) -> str:
    """The path of the OS program ``name`` (on PATH or at one of ``candidates``); missing, the
    test fails under CI (``.ci/run`` installs Debian's ``package``) and is skipped elsewhere."""
    import shutil

    for candidate in (shutil.which(name), *candidates):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    message = f"{name} not found: apt-get install {package} (.ci/run installs it)"
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


def corpus_dir() -> Path | None:
    env = os.environ.get("GOODFAITH_CORPUS")
    for candidate in ([Path(env)] if env else []) + [REPO.parent / "shared" / "corpus"]:
        if (candidate / "MANIFEST.json").is_file():
            return candidate
    return None


@pytest.fixture(autouse=True)
def _packets_pass_qpdf_check(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every packet a test builds in this process (build_packet, directly or through the
    services) passes ``qpdf --check`` without warnings; a failure fails the test that built it.
    The check wraps the one assembly function every packet goes through; its problems are
    collected and reported at teardown, because build_packet's own guard would otherwise treat
    an assertion raised inside it as a failed part."""
    import worker.packet as packet_module
    from tests.qpdf import qpdf_problems

    original = packet_module._assemble
    problems: list[str] = []

    def checked(*args: Any, **kwargs: Any) -> Any:
        built = original(*args, **kwargs)
        try:
            problem = qpdf_problems(built.pdf)
        except Exception as exc:  # qpdf missing or hung: a failure, never a skip
            problem = f"qpdf --check could not run: {exc}"
        if problem:
            problems.append(problem)
        return built

    monkeypatch.setattr(packet_module, "_assemble", checked)
    yield
    if problems:
        pytest.fail("packet failed qpdf --check:\n" + "\n".join(problems), pytrace=False)


def postgres_url() -> str | None:
    url = os.environ.get("GOODFAITH_DATABASE_URL", "")
    return url if url.startswith("postgresql") else None


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    from worker.redis_server import ensure_redis

    with ensure_redis(os.environ.get("GOODFAITH_TEST_REDIS_URL")) as server:
        yield server.url


RABBITMQ_URL = os.environ.get("GOODFAITH_TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/")


@pytest.fixture(scope="session")
def rabbitmq_url() -> str:
    """A reachable RabbitMQ (GOODFAITH_TEST_RABBITMQ_URL, default the local guest account);
    under CI its absence is a failure (.ci/run starts rabbitmq-server), else a skip."""
    import pika

    try:
        pika.BlockingConnection(pika.URLParameters(RABBITMQ_URL)).close()
    except Exception as exc:
        if IN_CI:
            pytest.fail(f"CI needs RabbitMQ at {RABBITMQ_URL} ({type(exc).__name__})")
        pytest.skip(f"RabbitMQ is not reachable at {RABBITMQ_URL}: start rabbitmq-server")
    return RABBITMQ_URL


def _fresh_postgres(url: str) -> str:
    """A private schema-less database reset: drop and recreate the public schema."""
    from sqlalchemy import text

    from storage.db import make_engine

    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    engine.dispose()
    return url


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each database test runs on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'goodfaith.db'}"
    url = postgres_url()
    if url is None:
        if IN_CI:
            pytest.fail("CI needs GOODFAITH_DATABASE_URL naming a PostgreSQL database")
        pytest.skip("GOODFAITH_DATABASE_URL does not name a PostgreSQL database")
    return _fresh_postgres(url)


@pytest.fixture
def pg_url() -> str:
    """A fresh PostgreSQL database, for behaviour SQLite cannot show (row locks)."""
    url = postgres_url()
    if url is None:
        if IN_CI:
            pytest.fail("CI needs GOODFAITH_DATABASE_URL naming a PostgreSQL database")
        pytest.skip("GOODFAITH_DATABASE_URL does not name a PostgreSQL database")
    return _fresh_postgres(url)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'goodfaith.db'}"


@pytest.fixture
def corpus() -> Path:
    found = corpus_dir()
    if found is None:
        if IN_CI:
            pytest.fail("CI needs the shared PDF corpus (../shared/corpus or GOODFAITH_CORPUS)")
        pytest.skip("shared PDF corpus not found: set GOODFAITH_CORPUS or check out ../shared")
    return found


NY = ZoneInfo("America/New_York")


def notification(**overrides: Any) -> dict[str, Any]:
    """A valid intake document; override any top-level key."""
    doc: dict[str, Any] = {
        "notification_id": "OPP-2026-000123",
        "received_at": "2026-04-17T09:00:00-04:00",
        "jurisdiction": "MA",
        "review_type": "standard",
        "agency_id": "agency-a",
        "insured": {"member_id": "M1001", "name": "Jane Roe", "birth_date": "1971-02-03"},
        "coverage": {"plan_id": "PPO-2026"},
        "dispute": {
            "service": "Lumbar spine MRI",
            "codes": ["72148"],
            "dates_of_service": ["2026-03-02"],
        },
        "providers": [
            {
                "provider_id": "prov-1",
                "name": "Example Orthopedics",
                "npi": "1234567893",
                "role": "treating",
                "network": "in",
                "channels": [{"kind": "fax", "number": "+16175550101"}],
            }
        ],
    }
    doc.update(overrides)
    return doc


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)
