"""How the far side reads what we send it: page counts and the request reference.

A records office reads our request letter for the ``GF-XXXXXXXX`` reference and quotes it in
its answer. This is the simulator's own minimal reader (pypdf text of the first pages and a
regular expression), deliberately not ``worker.documents``: if our parser breaks, the fake
must not break with it and hide the fault.
"""

from __future__ import annotations

import io
import re

from pypdf import PdfReader

__all__ = ["page_count", "read_reference"]

# Our reference as a whole word: "GF-" and eight capitals or digits, not part of a longer token.
_REFERENCE = re.compile(r"(?<![0-9A-Za-z])GF-[0-9A-Z]{8}(?![0-9A-Za-z])")
_PAGES_READ = 2  # a letter quotes its reference on the first page; allow a cover sheet


def page_count(data: bytes) -> int | None:
    """Pages in the PDF ``data``, or None when it is not a readable PDF."""
    try:
        return len(PdfReader(io.BytesIO(data)).pages)
    except Exception:  # any unreadable PDF: the channel just does not claim a count
        return None


def read_reference(data: bytes) -> str | None:
    """The first ``GF-XXXXXXXX`` reference in the text of the first two pages, or None (no
    text layer, unreadable file). Never raises."""
    try:
        reader = PdfReader(io.BytesIO(data))
        pages = list(reader.pages[:_PAGES_READ])
    except Exception:  # unreadable: the clerk cannot quote a reference
        return None
    texts = []
    for page in pages:
        try:
            texts.append(page.extract_text() or "")
        except Exception:  # one unreadable page: read the others
            continue
    match = _REFERENCE.search("\n".join(texts))
    return match.group(0) if match else None


_PATIENT = re.compile(r"Patient:\s*(.+?)\s*(?:\n|$)")
_BIRTH = re.compile(r"Date of birth:\s*(\d{4}-\d{2}-\d{2})")


def read_patient(data: bytes) -> tuple[str, str]:
    """(patient name, birth date) as the request letter prints them, or ("", "") when they
    cannot be read. The simulated records office prints them on its reply. Never raises."""
    try:
        reader = PdfReader(io.BytesIO(data))
        text = "\n".join(page.extract_text() or "" for page in reader.pages[:_PAGES_READ])
    except Exception:
        return "", ""
    name, birth = _PATIENT.search(text), _BIRTH.search(text)
    return (name.group(1) if name else ""), (birth.group(1) if birth else "")
