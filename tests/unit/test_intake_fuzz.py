"""Intake under hypothesis: any JSON sent to POST /v1/notifications opens a case (201) or is
refused with a 422 problem naming the field, and a refusal stores nothing, in any table."""

from __future__ import annotations

import copy
import itertools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from storage.db import transaction
from storage.models import Base, Case, RecordRequest
from tests.conftest import at, notification
from tests.fakes import api_client, make_container
from worker.wiring import Container

START = at("2026-04-17T09:00:00-04:00")
EXAMPLES = 60
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    database=None,
)

#: Text, with what databases refuse drawn often: NUL (PostgreSQL text cannot hold it) and
#: lone surrogates (``\ud800`` is valid JSON, but no UTF-8 encodes it)
TEXT = st.text(max_size=20) | st.sampled_from(["\x00", "M1\x00", "\ud800", "x\udfff", "é"])
#: Any JSON value: what a sender can put in a body.
JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | TEXT,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=12,
)
_serial = itertools.count()


@pytest.fixture
def world(tmp_path: Path, database_url: str) -> Iterator[tuple[Container, httpx.Client]]:
    """On SQLite and on PostgreSQL (which refuses what SQLite stores: NUL in text)."""
    c, _clock, _fax, _d = make_container(tmp_path, START, database_url=database_url)
    c.settings.rate_limits.intake_per_s = 0  # hypothesis sends faster than a sender would
    with api_client(c, "intake") as http:
        yield c, http
    c.close()


def _rows(c: Container) -> dict[str, int]:
    with transaction(c.sessions) as s:
        return {
            t.name: int(s.scalar(select(func.count()).select_from(t)) or 0)
            for t in Base.metadata.sorted_tables
        }


def _paths(doc: Any, prefix: tuple[str | int, ...] = ()) -> list[tuple[str | int, ...]]:
    """Every path into ``doc`` (keys and list indexes), the document's own first."""
    found: list[tuple[str | int, ...]] = [prefix]
    if isinstance(doc, dict):
        for k, v in doc.items():
            found += _paths(v, (*prefix, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            found += _paths(v, (*prefix, i))
    return found


def _dotted(path: tuple[str | int, ...]) -> str:
    return ".".join(str(p) for p in path)


def _post(http: httpx.Client, body: Any) -> httpx.Response:
    """POST ``body`` as JSON escaped to ASCII (``\\ud800`` travels as an escape, as it may)."""
    content = json.dumps(body).encode()
    return http.post("/v1/notifications", content=content, headers=JSON_TYPE)


JSON_TYPE = {"content-type": "application/json"}


def _check_answer(c: Container, answer: httpx.Response, before: dict[str, int]) -> None:
    assert answer.status_code in (200, 201, 422), answer.text
    if answer.status_code == 422:
        problem = answer.json()
        assert answer.headers["content-type"] == "application/problem+json"
        assert problem["type"] == "/problems/invalid-notification"
        assert problem["errors"], "a 422 names at least one field"
        assert all(e["field"] and e["message"] for e in problem["errors"])
        assert _rows(c) == before, "a refused notification stored something"
        return
    case_id = answer.json()["case_id"]
    with transaction(c.sessions) as s:
        case = s.get(Case, case_id)
        assert case is not None
        requests = s.scalar(
            select(func.count()).select_from(RecordRequest).where(RecordRequest.case_id == case_id)
        )
    assert requests, "a case opens with its record requests"


@FUZZ
@given(body=JSON)
def test_any_json_is_a_case_or_a_422_naming_a_field(
    world: tuple[Container, httpx.Client], body: Any
) -> None:
    """Any JSON document at all: a 422 problem with ``errors`` and not one row written."""
    c, http = world
    before = _rows(c)
    _check_answer(c, _post(http, body), before)


@FUZZ
@given(data=st.data())
def test_a_notification_with_one_part_changed_is_a_case_or_a_422_naming_that_part(
    world: tuple[Container, httpx.Client], data: st.DataObject
) -> None:
    """A valid notification with one member replaced by any JSON, removed, or joined by an
    unknown one: a new case, or a 422 whose ``errors`` name that member, a member around it,
    or a rule about the whole document; nothing stored half-way."""
    c, http = world
    doc = notification(notification_id=f"FUZZ-{next(_serial)}")
    paths = [p for p in _paths(doc) if p]
    path = data.draw(st.sampled_from(paths), label="path")
    action = data.draw(st.sampled_from(["replace", "remove", "add"]), label="action")
    changed = copy.deepcopy(doc)
    parent: Any = changed
    for part in path[:-1]:
        parent = parent[part]
    last = path[-1]
    where = _dotted(path)
    if action == "add" and not isinstance(parent[last], dict) and not isinstance(parent, dict):
        action = "replace"  # an item of a list of text: nowhere to add a member
    if action == "replace":
        parent[last] = data.draw(JSON, label="value")
    elif action == "remove":
        del parent[last]
    else:  # a member unknown to the model, in the object at path (or around it)
        inside = isinstance(parent[last], dict)
        target = parent[last] if inside else parent
        key = "unexpected_" + data.draw(st.text(max_size=5), label="key")
        target[key] = 1
        where = _dotted((*(path if inside else path[:-1]), key))
    before = _rows(c)
    answer = _post(http, changed)
    _check_answer(c, answer, before)
    if answer.status_code == 422:
        named = [e["field"] for e in answer.json()["errors"]]
        assert any(
            where.startswith(f) or f.startswith(where) or f in _DOCUMENT_RULES for f in named
        ) or any(
            # a rule of an enclosing object names that object (e.g. providers.0.channels.0)
            where.startswith(f.rsplit(".", 1)[0])
            for f in named
        ), (where, named)


#: Fields a rule about the whole document names, whatever member changed (the agency must be
#: configured, providers unique, the received instant inside the jurisdiction's calendar).
_DOCUMENT_RULES = {"(document)", "agency_id", "jurisdiction", "received_at", "providers"}
