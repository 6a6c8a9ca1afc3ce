"""PHI stays out of logs and queue payloads: the redaction processor, and what the code emits."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dramatiq
import pytest
from dramatiq.brokers.stub import StubBroker
from structlog.testing import capture_logs

from config.logging import REDACTED, redact_phi
from tests.conftest import at, notification
from tests.fakes import make_container
from worker import services
from worker.actors import queue_name, register_actors
from worker.domain.lanes import Lane
from worker.wiring import Container

QUEUE = queue_name(Lane.STANDARD)  # the notifications here are standard reviews
START = at("2026-04-17T09:00:00-04:00")
PHI = ("Jane Roe", "M1001", "1971-02-03")


def _redact(**event: Any) -> dict[str, Any]:
    return dict(redact_phi(None, "info", dict(event)))


# --- the processor, called directly ------------------------------------------------------------


def test_phi_keys_are_redacted() -> None:
    """member_id, name and birth_date values are replaced wherever they are top-level keys."""
    out = _redact(event="x", member_id="M1001", name="Jane Roe", birth_date="1971-02-03")
    assert out == {"event": "x", "member_id": REDACTED, "name": REDACTED, "birth_date": REDACTED}


def test_insured_dict_is_redacted_whole() -> None:
    """An 'insured' value is PHI as a whole, whatever it contains."""
    out = _redact(event="x", insured={"member_id": "M1001", "name": "Jane Roe"})
    assert out["insured"] == REDACTED


def test_phi_keys_nested_in_other_values_are_redacted() -> None:
    """PHI keys inside nested dicts and lists are redacted; their siblings are kept."""
    out = _redact(
        event="x",
        detail={"case_id": "c1", "patient": {"name": "Jane Roe"}, "rows": [{"dob": "x"}]},
    )
    assert out["detail"] == {"case_id": "c1", "patient": REDACTED, "rows": [{"dob": REDACTED}]}


def test_bare_date_in_string_is_scrubbed() -> None:
    """A birth date mentioned in free text is blanked out of the string."""
    out = _redact(event="member born 1971-02-03 requested records")
    assert out["event"] == f"member born {REDACTED} requested records"
    assert "1971" not in out["event"]


def test_ssn_in_string_is_scrubbed() -> None:
    """A social security number in free text is blanked out."""
    out = _redact(event="x", error="lookup failed for 123-45-6789")
    assert out["error"] == f"lookup failed for {REDACTED}"


def test_iso_timestamp_with_time_is_kept() -> None:
    """Instants (a date followed by a time) are not mistaken for birth dates."""
    out = _redact(event="x", due_at="2026-04-23T17:00:00-04:00", timestamp="2026-04-17T13:00:00Z")
    assert out["due_at"] == "2026-04-23T17:00:00-04:00"
    assert out["timestamp"] == "2026-04-17T13:00:00Z"


def test_ids_pass_through() -> None:
    """Ids, numbers and references are left as they are."""
    event = {
        "event": "attempt.sent",
        "case_id": "9f1c2a7e4b3d4c21a0e5f6b7c8d9e0f1",
        "attempt_id": "0123456789abcdef0123456789abcdef",
        "reference": "GF-7K3M9QXA",
        "number": 2,
        "channel": "fax",
    }
    assert _redact(**event) == event


# --- what the services actually log ------------------------------------------------------------


@pytest.fixture
def container(tmp_path: Path) -> Iterator[Container]:
    c, _clock, _fax, _deliverer = make_container(tmp_path, START)
    try:
        yield c
    finally:
        c.close()


def _flatten(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for k, v in value.items():
            yield str(k)
            yield from _flatten(v)
    elif isinstance(value, list | tuple | set | frozenset):
        for v in value:
            yield from _flatten(v)
    else:
        yield str(value)


def test_intake_logs_no_phi(container: Container) -> None:
    """Opening a case (and its inline follow-ups up to the first fax) logs no name, id or DOB."""
    with capture_logs() as logs:
        services.intake(container, notification())
    assert {e["event"] for e in logs} >= {"case.opened", "attempt.sent"}
    for entry in logs:
        text = " ".join(_flatten(entry))
        for secret in PHI:
            assert secret not in text, (secret, entry)


# --- what goes on the queue --------------------------------------------------------------------


@pytest.fixture
def broker() -> Iterator[StubBroker]:
    b = StubBroker()
    try:
        yield b
    finally:
        b.close()


def _drain(broker: StubBroker, limit: int = 50) -> list[tuple[dramatiq.Message[Any], bytes]]:
    """Pop each queued message and run its actor's function in this thread (no worker)."""
    seen: list[tuple[dramatiq.Message[Any], bytes]] = []
    queue = broker.queues[QUEUE]
    while not queue.empty() and len(seen) < limit:
        raw = queue.get_nowait()
        message = dramatiq.Message.decode(raw)
        seen.append((message, raw))
        broker.get_actor(message.actor_name).fn(*message.args, **message.kwargs)
    return seen


def test_queued_messages_carry_only_ids(container: Container, broker: StubBroker) -> None:
    """Intake over dramatiq enqueues open_case with the case id as its one argument."""
    container.dispatcher = register_actors(broker, lambda: container)
    result = services.intake(container, notification())
    raw = list(broker.queues[QUEUE].queue)
    messages = [dramatiq.Message.decode(data) for data in raw]
    assert [(m.actor_name, m.args, m.kwargs) for m in messages] == [
        ("open_case", (result.case_id,), {})
    ]


def test_every_message_down_to_the_fax_carries_only_an_id(
    container: Container, broker: StubBroker
) -> None:
    """Following the chain through the queue, each message is one 32-hex id and no PHI."""
    container.dispatcher = register_actors(broker, lambda: container)
    services.intake(container, notification())
    seen = _drain(broker)
    # send_attempt hands back to plan_outreach, which sets the follow-up timer and stops
    actors = [m.actor_name for m, _ in seen]
    assert actors == ["open_case", "plan_outreach", "send_attempt", "plan_outreach"]
    assert broker.queues[QUEUE].empty()
    for message, raw in seen:
        assert len(message.args) == 1 and message.kwargs == {}
        assert re.fullmatch(r"[0-9a-f]{32}", message.args[0]), message
        for secret in PHI:
            assert secret.encode() not in raw
