"""How the far side reads what we send it: page counts and the request reference.

A records office reads our request letter for the ``GF-XXXXXXXX`` reference and quotes it in
its answer. This is the simulator's own minimal reader (pypdf text of the first pages and a
regular expression), deliberately not ``worker.documents``: if our parser breaks, the fake
must not break with it and hide the fault.

What is read is kept by the document's SHA-256 (:class:`_Readings`): a letter is parsed once,
for its page count and its first page's text together, however many times it is faxed,
redialled or asked about (pages, reference, patient); its second page is read only when the
first does not answer.
"""

from __future__ import annotations

import hashlib
import io
import re
import threading
from collections import OrderedDict
from typing import Any

from pypdf import PdfReader

__all__ = ["page_count", "read_patient", "read_reference"]

# Our reference as a whole word: "GF-" and eight capitals or digits, not part of a longer token.
_REFERENCE = re.compile(r"(?<![0-9A-Za-z])GF-[0-9A-Z]{8}(?![0-9A-Za-z])")
_PAGES_READ = 2  # a letter quotes its reference on the first page; allow a cover sheet
_UNREAD = object()


class _Readings:
    """What was read from documents, by their SHA-256, the most recently used ``size`` kept.
    Thread-safe; a document read twice at once is read twice (same answer)."""

    def __init__(self, size: int = 4096) -> None:
        self.size = size
        self._found: OrderedDict[tuple[str, bytes], Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, kind: str, data: bytes, read: Any) -> Any:
        key = (kind, hashlib.sha256(data).digest())
        with self._lock:
            found = self._found.get(key, _UNREAD)
            if found is not _UNREAD:
                self._found.move_to_end(key)
                return found
        found = read(data)
        with self._lock:
            self._found[key] = found
            while len(self._found) > self.size:
                self._found.popitem(last=False)
        return found


_readings = _Readings()


def _read(data: bytes, pages: int = 1) -> tuple[int, tuple[str | None, ...]] | None:
    """One parse of ``data``: its page count and the text of each of its first ``pages`` pages
    (None: that page could not be read); None when the file cannot be opened."""
    try:
        reader = PdfReader(io.BytesIO(data))
        count = len(reader.pages)
        first = list(reader.pages[:pages])
    except Exception:  # any unreadable PDF: no count, no reference
        return None
    texts: list[str | None] = []
    for page in first:
        try:
            texts.append(page.extract_text() or "")
        except Exception:
            texts.append(None)
    return count, tuple(texts)


def _read_two(data: bytes) -> tuple[int, tuple[str | None, ...]] | None:
    return _read(data, _PAGES_READ)


def _first_texts(data: bytes, *, both: bool = False) -> tuple[str | None, ...] | None:
    """The text of the first page (``both``: of the first two) of ``data``. A clerk reads the
    second page only when the first does not answer: extracting text is most of the CPU a
    simulated fax costs, and our letter says everything on its first page."""
    read: tuple[int, tuple[str | None, ...]] | None = (
        _readings.get("pdf2", data, _read_two) if both else _readings.get("pdf", data, _read)
    )
    return None if read is None else read[1]


def _count(data: bytes) -> int | None:
    try:
        return len(PdfReader(io.BytesIO(data)).pages)
    except Exception:  # any unreadable PDF: the channel just does not claim a count
        return None


def page_count(data: bytes, *, letter: bool = False) -> int | None:
    """Pages in the PDF ``data``, or None when it is not a readable PDF. ``letter``: its text
    will be read too (a request letter), so it is parsed once for both."""
    if not letter:
        counted: int | None = _readings.get("pages", data, _count)
        return counted
    read: tuple[int, tuple[str | None, ...]] | None = _readings.get("pdf", data, _read)
    return None if read is None else read[0]


def read_reference(data: bytes) -> str | None:
    """The first ``GF-XXXXXXXX`` reference in the text of the first page, else of the first
    two, or None (no text layer, unreadable file). Never raises. (An unreadable page is
    skipped.)"""
    for both in (False, True):
        texts = _first_texts(data, both=both)
        if texts is None:  # unreadable: the clerk cannot quote a reference
            return None
        match = _REFERENCE.search("\n".join(t for t in texts if t is not None))
        if match:
            return match.group(0)
    return None


_PATIENT = re.compile(r"Patient:\s*(.+?)\s*(?:\n|$)")
_BIRTH = re.compile(r"Date of birth:\s*(\d{4}-\d{2}-\d{2})")


def read_patient(data: bytes) -> tuple[str, str]:
    """(patient name, birth date) as the request letter prints them (on its first page, else
    on its first two), or ("", "") when they cannot be read (the file, or a page that had to
    be read). The simulated records office prints them on its reply. Never raises."""
    for both in (False, True):
        texts = _first_texts(data, both=both)
        if texts is None or any(t is None for t in texts):
            return "", ""
        text = "\n".join(t for t in texts if t is not None)
        name, birth = _PATIENT.search(text), _BIRTH.search(text)
        if (name and birth) or both:
            return (name.group(1) if name else ""), (birth.group(1) if birth else "")
    return "", ""
