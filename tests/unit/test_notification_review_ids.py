"""The notification's optional review identifiers (``dispute.claim_id``,
``coverage.coverage_id``): accepted when well formed, absent from existing documents, and
everything else in the schema as strict as before (unknown keys still refused)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import notification
from worker.notification import IntakeError, parse_notification


def _with(dispute: dict[str, Any] | None = None, coverage: dict[str, Any] | None = None) -> Any:
    doc = notification()
    doc["dispute"] = {**doc["dispute"], **(dispute or {})}
    doc["coverage"] = {**doc["coverage"], **(coverage or {})}
    return doc


def test_existing_notifications_stay_valid_without_the_new_fields() -> None:
    """A document without claim_id / coverage_id parses; both read None."""
    n = parse_notification(notification())
    assert n.dispute.claim_id is None and n.coverage.coverage_id is None


def test_the_claim_and_coverage_identifiers_are_read() -> None:
    """claim_id and coverage_id are kept as given."""
    n = parse_notification(_with({"claim_id": "CLM-2026/0042"}, {"coverage_id": "COV:9"}))
    assert (n.dispute.claim_id, n.coverage.coverage_id) == ("CLM-2026/0042", "COV:9")


@pytest.mark.parametrize(
    ("doc", "field"),
    [
        (_with({"claim_id": ""}), "dispute.claim_id"),
        (_with({"claim_id": "CLM 42"}), "dispute.claim_id"),
        (_with({"claim_id": "x" * 65}), "dispute.claim_id"),
        (_with(coverage={"coverage_id": "é"}), "coverage.coverage_id"),
        (_with({"claim": "CLM-1"}), "dispute.claim"),
        (_with(coverage={"policy_id": "P-1"}), "coverage.policy_id"),
    ],
)
def test_bad_identifiers_and_unknown_keys_are_refused_by_name(doc: Any, field: str) -> None:
    """Empty, spaced, too long or non-ASCII ids, and keys the schema does not know, are 422s
    naming the field."""
    with pytest.raises(IntakeError) as caught:
        parse_notification(doc)
    assert [loc for loc, _ in caught.value.errors] == [field]
