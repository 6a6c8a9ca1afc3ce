"""How the far side reads what we send it: page counts and the request reference.

A records office reads our request letter for the ``GF-XXXXXXXX`` reference and quotes it in
its answer. This is the simulator's own minimal reader (pypdf text of the first pages and a
regular expression), deliberately not ``worker.documents``: if our parser breaks, the fake
must not break with it and hide the fault.

What is read is kept by the document's SHA-256 (:class:`_Readings`): a letter is parsed once,
for its page count and its first page's text together, however many times it is faxed,
redialled or asked about (pages, reference, patient); its second page is read only when the
first does not answer.

A page drawn only in the standard Latin fonts (Helvetica, Times, Courier; not embedded, in
WinAnsi or Standard encoding: what our letters and most generated letters use) is read from
its text operators directly (:func:`_plain_text`, qpdf's content-stream parser: 0.4 ms a
letter); any other page (embedded or composite fonts, custom encodings) by pypdf's text
extraction (4–5 ms a letter, the larger part of what a simulated fax cost the far side).
"""

from __future__ import annotations

import hashlib
import io
import re
import threading
from collections import OrderedDict
from typing import Any

import pikepdf
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
    (None: that page could not be read); None when the file cannot be opened. Pages in the
    standard fonts are read by :func:`_plain_text`, the others by pypdf."""
    try:
        with pikepdf.open(io.BytesIO(data)) as pdf:
            count = len(pdf.pages)
            plain = [_plain_text(page) for page in pdf.pages[:pages]]
    except Exception:  # qpdf cannot open it: pypdf may (it is laxer about some damage)
        return _read_pypdf(data, pages)
    if all(text is not None for text in plain):
        return count, tuple(plain)
    read = _read_pypdf(data, pages)
    if read is None:
        return None
    return count, tuple(p if p is not None else t for p, t in zip(plain, read[1], strict=False))


def _read_pypdf(data: bytes, pages: int) -> tuple[int, tuple[str | None, ...]] | None:
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


#: The standard fonts with Latin text (the 14 less Symbol and ZapfDingbats, whose codes are
#: their own): every reader has them, so their codes mean what the encoding says.
_STANDARD_FONTS = frozenset(
    f"/{family}{style}"
    for family, styles in (
        ("Helvetica", ("", "-Bold", "-Oblique", "-BoldOblique")),
        ("Times", ("-Roman", "-Bold", "-Italic", "-BoldItalic")),
        ("Courier", ("", "-Bold", "-Oblique", "-BoldOblique")),
    )
    for style in styles
)
#: simple encodings read as a Python codec (StandardEncoding agrees with Latin-1 on letters,
#: digits and the punctuation a reference or a date uses)
_ENCODINGS = {None: "cp1252", "/WinAnsiEncoding": "cp1252", "/StandardEncoding": "latin-1"}
_TEXT_OPERATORS = "BT Tf TL Td TD Tm T* Tj TJ ' \""
_TJ_SPACE = -200  # a TJ adjustment wider than this (thousandths of an em) reads as a space


def _plain_text(page: pikepdf.Page) -> str | None:
    """The text a page draws in the standard fonts, a line per baseline from the top (pieces on
    one line left to right, joined by a space); None when the page uses any other font (its
    codes need the font program or a ToUnicode map to read: pypdf does that). Positions are
    the text matrices' own: a page that scales or moves text with ``cm`` may order its lines
    differently, never lose words."""
    codecs: dict[str, str] = {}
    fonts = page.resources.get("/Font") if "/Resources" in page.obj else None
    for name, font in fonts.items() if fonts is not None else ():
        declared = font.get("/Encoding")
        encoding = str(declared) if isinstance(declared, pikepdf.Name) else declared
        if (
            font.get("/Subtype") != pikepdf.Name.Type1
            or str(font.get("/BaseFont")) not in _STANDARD_FONTS
            or "/FontDescriptor" in font
            or "/ToUnicode" in font
            or not isinstance(encoding, str | None)  # a dictionary: custom differences
            or encoding not in _ENCODINGS
        ):
            return None
        codecs[name] = _ENCODINGS[encoding]
    pieces: list[tuple[float, float, str]] = []
    x = y = leading = 0.0
    codec: str | None = None
    for instruction in pikepdf.parse_content_stream(page, _TEXT_OPERATORS):
        if not isinstance(instruction, pikepdf.ContentStreamInstruction):
            continue  # an inline image
        operands, op = instruction.operands, str(instruction.operator)
        if op == "BT":
            x = y = 0.0
        elif op == "Tf":
            codec = codecs.get(str(operands[0]))
            if codec is None:
                return None  # a font the page does not declare
        elif op == "TL":
            leading = float(operands[0])
        elif op in ("Td", "TD"):
            x, y = x + float(operands[0]), y + float(operands[1])
            leading = -float(operands[1]) if op == "TD" else leading
        elif op == "Tm":
            x, y = float(operands[4]), float(operands[5])
        elif op in ("T*", "'", '"'):
            y -= leading
        if op in ("Tj", "'", '"', "TJ"):
            if codec is None:
                return None  # text shown before any font is set: not a page we can read
            shown = operands[-1]
            pieces.append((-round(y, 1), x, _shown(shown if op == "TJ" else [shown], codec)))
    lines: dict[float, list[tuple[float, str]]] = {}  # by baseline, from the top
    for top, left, text in sorted(pieces):
        lines.setdefault(top, []).append((left, text))
    return "\n".join(" ".join(text for _, text in line) for line in lines.values())


def _shown(parts: Any, codec: str) -> str:
    """The text of a ``Tj`` string or a ``TJ`` array: strings decoded, a wide adjustment a space."""
    return "".join(
        bytes(part).decode(codec, "replace")
        if isinstance(part, pikepdf.String)
        else (" " if float(part) < _TJ_SPACE else "")
        for part in parts
    )


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
    """Pages by qpdf (a tenth of pypdf's time on a generated reply), by pypdf where qpdf
    cannot open the file, None where neither can."""
    try:
        with pikepdf.open(io.BytesIO(data)) as pdf:
            return len(pdf.pages)
    except Exception:
        pass
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
