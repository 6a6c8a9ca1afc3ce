"""The example notification the README documents is valid for intake."""

from __future__ import annotations

import json
from pathlib import Path

from worker.notification import parse_notification

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "notification.json"


def test_the_readme_example_notification_parses() -> None:
    """examples/notification.json passes intake validation, both provider channel kinds."""
    n = parse_notification(json.loads(EXAMPLE.read_text()))
    assert [p.provider_id for p in n.providers] == ["prov-1", "prov-2"]
    assert {ch.kind for p in n.providers for ch in p.channels} == {"fax", "fhir"}
