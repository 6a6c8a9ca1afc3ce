"""Damaged variants of shared-corpus files, generated here with pikepdf (tests/damage.py):
each one is accepted and packable, or quarantined with a reason; never a failed packet."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest

from tests.damage import DAMAGES, damaged
from tests.integration.test_corpus import CORPUS, ENTRIES, _params, _read
from tests.unit.test_packet import COVER
from worker.documents import check_document
from worker.packet import PacketPart, build_packet

pytestmark = pytest.mark.corpus

# A few small, unencrypted files from different producers (pdfTeX, LibreOffice, ImageMagick).
_SOURCES = [
    e
    for e in ENTRIES
    if e.get("pypdf_ok") and not e.get("encrypted") and e["path"].startswith("sample-files/")
][:4]
_REASONS = ("unpackable: ", "unreadable: ", "no pages", "not a PDF")


@pytest.mark.parametrize("entry", _params(_SOURCES))
@pytest.mark.parametrize("damage", sorted(DAMAGES))
def test_damaged_variant_is_packable_or_quarantined(entry: dict[str, Any], damage: str) -> None:
    """Given a corpus file with one damaged page attribute, intake either accepts it (and the
    packet holds it with its page count, nothing excluded) or quarantines it with a reason."""
    data = damaged(_read(entry), damage)
    if data is None:
        pytest.skip(f"pikepdf cannot write the {damage} variant")
    check = check_document(data)
    assert check.sha256 == hashlib.sha256(data).hexdigest()
    if not check.accepted:
        assert check.reason is not None and check.reason.startswith(_REASONS), check.reason
        return
    part = PacketPart("records", damage, check.data, check.sha256, "P-1", "doc-1")
    built = build_packet(COVER, [part])
    assert built.manifest["excluded"] == []
    [listed] = built.manifest["parts"]
    assert listed["pages"] == check.pages


def test_every_damage_is_exercised() -> None:
    """The variants really are made (pikepdf writes every damage) for the corpus sources."""
    if not _SOURCES:
        pytest.skip(f"corpus not found at {CORPUS}")
    made = [name for name in DAMAGES if damaged(_read(_SOURCES[0]), name) is not None]
    assert made == list(DAMAGES), json.dumps(sorted(set(DAMAGES) - set(made)))
