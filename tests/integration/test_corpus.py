"""Intake and packet assembly against the shared real-world PDF corpus (files nobody here made).

The corpus is found through GOODFAITH_CORPUS, else <repo>/../shared/corpus; without it these
tests skip, saying where they looked, except under CI (``CI=true``), where a missing corpus
fails the run. Corpus files are read in place, never copied.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pypdf import PdfReader

from config.jurisdictions import get_jurisdiction
from tests.qpdf import qpdf_problems
from worker.documents import DocumentCheck, check_document, extract_reference, is_no_records_reply
from worker.packet import CoverInfo, PacketPart, build_packet

pytestmark = pytest.mark.corpus

#: quarantined because qpdf's check finds a stream that does not decode (the packet would fail
#: qpdf --check): worker.packet.prepare.trial
_QPDF_REASON = "unpackable: qpdf check: "

_REPO = Path(__file__).resolve().parents[2]
CORPUS = Path(os.environ.get("GOODFAITH_CORPUS") or _REPO.parent / "shared" / "corpus")
_MANIFEST = CORPUS / "MANIFEST.json"
_ABSENT = f"PDF corpus not found at {CORPUS} (set GOODFAITH_CORPUS to the corpus folder)"


def _entries() -> list[dict[str, Any]]:
    if not _MANIFEST.is_file():
        return []
    files: list[dict[str, Any]] = json.loads(_MANIFEST.read_text("utf-8"))["files"]
    return [f for f in files if f.get("present", True)]


ENTRIES = _entries()
if not ENTRIES and os.environ.get("CI", "").lower() in ("1", "true", "yes"):
    pytest.fail(f"CI needs the shared PDF corpus: {_ABSENT}", pytrace=False)
FAILURES: frozenset[str] = (
    frozenset(
        json.loads(_MANIFEST.read_text("utf-8"))["header"]["totals"]["pypdf_default_failures"]
    )
    if _MANIFEST.is_file()
    else frozenset()
)


def _params(entries: list[dict[str, Any]]) -> list[Any]:
    if not entries:
        return [pytest.param(None, marks=pytest.mark.skip(reason=_ABSENT), id="no-corpus")]
    return [pytest.param(entry, id=entry["path"]) for entry in entries]


def _read(entry: dict[str, Any]) -> bytes:
    path: str = entry["path"]
    return (CORPUS / path).read_bytes()


def _passwords(entry: dict[str, Any]) -> list[str]:
    password = entry.get("password")
    return [password] if password else []


def _opens_without_password(entry: dict[str, Any]) -> bool:
    """Whether pypdf opened it with no password (files without one, or owner-only ones)."""
    if not entry.get("encrypted"):
        return True
    if entry.get("password") == "":
        return True
    no_password = (entry.get("pypdf") or {}).get("no_password") or {}
    return no_password.get("decrypt_result") == "OWNER_PASSWORD"


@pytest.mark.parametrize("entry", _params(ENTRIES))
def test_every_file_is_accepted_with_its_page_count_or_quarantined(entry: dict[str, Any]) -> None:
    """Without passwords: files pypdf handles are accepted with the manifest's page count;
    the rest are accepted after repair or quarantined with a reason; never an exception."""
    data = _read(entry)
    check = check_document(data)
    assert check.sha256 == hashlib.sha256(data).hexdigest() == entry["sha256"]
    assert check.accepted == (check.reason is None)
    if check.reason and check.reason.startswith(_QPDF_REASON):
        # qpdf's check found a stream that does not decode: qpdf --check on the file agrees
        assert qpdf_problems(data) is not None
    elif entry.get("pypdf_ok") and _opens_without_password(entry):
        assert check.accepted, check.reason
        assert check.pages == entry["pypdf_pages"]
        assert not check.repaired
    elif entry.get("encrypted") and not _opens_without_password(entry):
        assert check.reason == "encrypted: no password"
    elif check.accepted:
        assert check.repaired and check.pages >= 1
    else:
        assert check.reason and check.reason.startswith(("unreadable: ", "no pages", "not a PDF"))


@pytest.mark.parametrize("entry", _params([e for e in ENTRIES if e.get("encrypted")]))
def test_encrypted_files_open_with_their_password(entry: dict[str, Any]) -> None:
    """Each encrypted file is accepted with its known password, as an unencrypted copy."""
    check = check_document(_read(entry), passwords=_passwords(entry))
    assert check.accepted, check.reason
    assert check.decrypted
    assert check.pages == entry["pages"]
    reader = PdfReader(io.BytesIO(check.data))
    assert not reader.is_encrypted
    assert len(reader.pages) == check.pages


@pytest.mark.parametrize(
    "entry",
    _params([e for e in ENTRIES if e.get("encrypted") and not _opens_without_password(e)]),
)
def test_encrypted_files_refuse_a_wrong_password(entry: dict[str, Any]) -> None:
    """A wrong password quarantines a user-password file rather than opening it."""
    check = check_document(_read(entry), passwords=["qwerty"])
    assert (check.accepted, check.reason) == (False, "encrypted: none of 1 password(s) fit")


@pytest.mark.parametrize("entry", _params([e for e in ENTRIES if e["path"] in FAILURES]))
def test_files_pypdf_cannot_read_are_repaired_or_quarantined(entry: dict[str, Any]) -> None:
    """Each file pypdf alone fails on is either repaired (and then re-opens cleanly in pypdf)
    or quarantined as unreadable / without pages."""
    check = check_document(_read(entry))
    if check.accepted:
        assert check.repaired
        assert len(PdfReader(io.BytesIO(check.data)).pages) == check.pages >= 1
    else:
        assert check.reason and check.reason.startswith(("unreadable: ", "no pages", _QPDF_REASON))


@pytest.mark.parametrize("entry", _params(ENTRIES))
def test_text_checks_never_raise(entry: dict[str, Any]) -> None:
    """extract_reference and is_no_records_reply answer for every file (none of them is ours)."""
    data = _read(entry)
    assert extract_reference(data) is None
    assert is_no_records_reply(data) in (True, False)


def test_all_accepted_files_merge_into_one_packet() -> None:
    """Every accepted corpus file (encrypted ones with their password) merges into one packet
    whose page count is cover + the sum of the files' pages + attestation."""
    if not ENTRIES:
        pytest.skip(_ABSENT)
    checks: list[tuple[dict[str, Any], DocumentCheck]] = []
    for entry in ENTRIES:
        check = check_document(_read(entry), passwords=_passwords(entry))
        if check.accepted:
            checks.append((entry, check))
    # the 49 files pypdf handles, less the 3 whose streams do not decode, plus repaired ones
    assert len(checks) >= 46
    parts = [
        PacketPart("records", entry["path"], check.data, check.sha256, f"P{index}")
        for index, (entry, check) in enumerate(checks)
    ]
    now = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
    cover = CoverInfo(
        "CASE-CORPUS",
        "N-1",
        "Agency",
        "MA",
        "standard",
        "Test Insured",
        "M1",
        now + timedelta(days=3),
        now,
        "Carrier",
        get_jurisdiction("MA").citation,
        get_jurisdiction("MA").tz,
    )
    built = build_packet(cover, parts)
    body = sum(check.pages for _, check in checks)
    cover_pages = built.manifest["cover_pages"]["last_page"]
    attestation = built.manifest["attestation_pages"]
    attestation_pages = attestation["last_page"] - attestation["first_page"] + 1
    assert built.pages == cover_pages + body + attestation_pages
    reader = PdfReader(io.BytesIO(built.pdf))
    assert len(reader.pages) == built.pages
    assert [p["source_sha256"] for p in built.manifest["parts"]] == [e["sha256"] for e, _ in checks]
