"""Intake checks of inbound documents: is it a PDF we can put in a packet, which request does it
answer, and is it a provider's written "no records" reply?

Inbound files come from fax carriers, FHIR servers and vendors, and some are broken, encrypted
or hostile. pypdf raises plain ``AssertionError``/``UnicodeDecodeError``/``RecursionError`` as
well as its own errors on such files, so every step here catches *every* exception per document
and turns it into a quarantine reason; nothing in this module raises on bad input.

Decision path of :func:`check_document`::

    too many bytes ─────────────────────────────────────────────► quarantine "too large"
    a TIFF, PNG or JPEG (by its first bytes) ──► converted to PDF pages, one per
      frame, without loss (worker/intake_images.py), then checked as the PDF below;
      data = that PDF, converted = the image kind; or quarantine with the conversion's reason
    content type not a PDF ─────────────────────────────────────► quarantine "not a PDF"
    pypdf opens, decrypts ("" then the given passwords), counts pages and appends to a
    PdfWriter ──► packable? ──► accept (data = original, or a decrypted copy when it was
      │                          encrypted, or the normalized copy of either)
      │ encrypted, no password fits ────────────────────────────► quarantine "encrypted: ..."
      │ any other failure
      ▼
    pikepdf (qpdf) open + save, streams left compressed ──► the same pypdf check on the copy
      ──► packable? ──► accept (repaired=True, data = the repaired copy)
                        or quarantine "unreadable: ..." / "unpackable: ..."

"Packable" puts the document into exactly the form the packet needs and proves it: page
attributes the footer stamp reads (boxes, /Rotate, /Resources) are normalized
(:func:`worker.packet.prepare.normalized`: inherited ones set on each page, malformed ones
fixed; ``normalized=True`` and ``data`` is that copy) and the packet's own append + stamp path
runs on the document alone (:func:`worker.packet.prepare.trial`). What would break assembly
breaks here, and the document is quarantined "unpackable: ..." with the reason.

Bounded work (decompression bombs): the check never decodes a content or image stream. It
parses the object structure, walks the page tree (bounded by the file size and ``max_pages``),
copies page objects into a writer and, only for encrypted or repaired files, writes a copy with
the streams still compressed. Text extraction (:func:`page_texts`, by PDFium;
:func:`extract_reference`, :func:`is_no_records_reply`) reads at most the first pages asked for
and skips any page whose content streams use an image codec or are larger than
:data:`MAX_TEXT_STREAM_BYTES` compressed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import re
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import pikepdf
from pypdf import PasswordType, PdfReader, PdfWriter
from pypdf.errors import FileNotDecryptedError, WrongPasswordError

from worker.domain.similarity import PDFIUM, PYPDF
from worker.intake_images import ImageRejected, image_kind, image_to_pdf
from worker.packet.prepare import Unpackable, append_pdf, packable
from worker.pdfium import LOCK as pdfium_lock
from worker.pdfium import page_text

__all__ = [
    "MAX_TEXT_STREAM_BYTES",
    "PDFIUM",
    "PYPDF",
    "REFERENCE_RE",
    "DocumentCheck",
    "PageTexts",
    "append_pdf",
    "check_document",
    "extract_reference",
    "first_pages",
    "is_no_records_reply",
    "no_records_in",
    "page_texts",
    "reference_in",
]

REFERENCE_RE = re.compile(r"GF-[0-9A-Z]{8}")
"""Our request reference, as printed on request letters and quoted by providers."""

# The reference as a whole word inside extracted text (not a piece of a longer token).
_REFERENCE_IN_TEXT = re.compile(r"(?<![0-9A-Za-z])GF-[0-9A-Z]{8}(?![0-9A-Za-z])")

MAX_TEXT_STREAM_BYTES = 2 * 1024 * 1024
"""Compressed size (bytes) above which a page's content is not text-extracted."""

_NO_RECORDS_MAX_PAGES = 3
_TEXT_PAGES = 2
_FIRST_PAGES = max(_TEXT_PAGES, _NO_RECORDS_MAX_PAGES)  # the pages either of them reads
_PDF_CONTENT_TYPES = frozenset(
    {"application/pdf", "application/x-pdf", "application/octet-stream", "binary/octet-stream"}
)
# Filters whose decoding is bounded by pypdf's own output limits and needs no external codec.
_TEXT_SAFE_FILTERS = frozenset(
    {"/FlateDecode", "/Fl", "/ASCII85Decode", "/A85", "/ASCIIHexDecode", "/AHx", "/LZWDecode"}
    | {"/LZW", "/RunLengthDecode", "/RL"}
)

_NO_RECORDS_PATTERNS = (
    re.compile(r"\bno\s+(?:medical\s+|treatment\s+|patient\s+)?records?\b"),
    re.compile(
        r"\b(?:do|does|did)\s+not\s+(?:hold|have|maintain|possess)\s+(?:any\s+)?"
        r"(?:medical\s+|treatment\s+)?records?\b"
    ),
    re.compile(r"\bunable\s+to\s+locate\s+(?:any\s+)?(?:medical\s+)?records?\b"),
    re.compile(r"\bno\s+record\s+of\s+(?:this|the)\s+patient\b"),
    re.compile(r"\bnot\s+(?:a\s+)?(?:our\s+)?patient\s+(?:of|at)\s+(?:this|our)\b"),
)


@dataclass(frozen=True)
class DocumentCheck:
    """The verdict on one inbound document.

    ``sha256`` is of the ORIGINAL bytes (what was received); ``data`` is what a packet should
    use: the original, or the decrypted / repaired copy. ``pages`` counts ``data``'s pages
    (0 when quarantined before it could be counted). ``reason`` is set exactly when
    ``accepted`` is False; it never contains document text.
    """

    accepted: bool
    pages: int
    reason: str | None
    data: bytes
    repaired: bool
    sha256: str
    decrypted: bool = False  # data is a decrypted copy of an encrypted original
    normalized: bool = False  # data is a copy with page attributes normalized for the packet
    #: "tiff", "png" or "jpeg": the original was that image and ``data`` is the PDF made from it
    #: (one page per frame, image data embedded without loss: worker/intake_images.py)
    converted: str | None = None


class _Quarantine(Exception):
    """A definitive reason to quarantine: do not try the repair path."""


class _NoPages(Exception):
    """pypdf found no pages: the repair path may still find some."""


def check_document(
    data: bytes,
    content_type: str = "application/pdf",
    *,
    passwords: Sequence[str] = (),
    max_pages: int = 5000,
    max_bytes: int = 200 * 1024 * 1024,
) -> DocumentCheck:
    """Accept a readable PDF or quarantine it with a reason. Never raises on bad input.

    ``passwords`` are tried after the empty password (owner-password-only files open with "").
    ``max_bytes`` is in bytes; ``max_pages`` caps the page count.
    """
    sha = hashlib.sha256(data).hexdigest()

    def quarantine(reason: str, pages: int = 0) -> DocumentCheck:
        return DocumentCheck(False, pages, reason, data, False, sha)

    if len(data) > max_bytes:
        return quarantine(f"too large: {len(data)} bytes > {max_bytes}")
    media_type = content_type.split(";", 1)[0].strip().lower()
    kind = image_kind(data)  # by the bytes: fax vendors label TIFFs application/octet-stream
    if kind is not None:
        # A fax TIFF, PNG or JPEG: its PDF pages go through every check a PDF does.
        try:
            pdf, _ = image_to_pdf(data, max_pages=max_pages)
        except ImageRejected as exc:
            return quarantine(str(exc))
        inner = check_document(pdf, max_pages=max_pages, max_bytes=max_bytes)
        if not inner.accepted:
            return quarantine(inner.reason or "unpackable", inner.pages)
        return dataclasses.replace(inner, sha256=sha, normalized=True, converted=kind)
    if media_type and media_type not in _PDF_CONTENT_TYPES:
        return quarantine(f"not a PDF: content type {media_type[:60]}")
    if not data:
        return quarantine("not a PDF: empty")

    try:
        pages, decrypted_copy = _check_with_pypdf(data, passwords, max_pages)
    except _Quarantine as exc:
        return quarantine(str(exc))
    except _NoPages:
        first_error = "no pages"
    except Exception as first:  # pypdf raises plain AssertionError, UnicodeDecodeError, ...
        first_error = _describe(first)
    else:
        candidate = data if decrypted_copy is None else decrypted_copy
        try:
            usable, pages = packable(candidate)
        except Unpackable as exc:
            return quarantine(f"unpackable: {exc}")
        except Exception as exc:  # the packet path fails: qpdf's rebuild may still help
            first_error = f"unpackable: {_describe(exc)}"
        else:
            return DocumentCheck(
                True,
                pages,
                None,
                usable,
                False,
                sha,
                decrypted=decrypted_copy is not None,
                normalized=usable is not candidate,
            )

    # pypdf cannot read it: let qpdf rebuild the structure, then check the copy with pypdf.
    try:
        repaired = _repair_with_pikepdf(data, passwords)
        pages, _ = _check_with_pypdf(repaired, (), max_pages)
    except _Quarantine as exc:
        return quarantine(str(exc))
    except _NoPages:
        return quarantine("no pages")
    except Exception as second:
        if first_error == "no pages":
            return quarantine("no pages")
        if b"%PDF" not in data[:1024] and b"obj" not in data[:65536]:
            return quarantine("not a PDF: no PDF header or objects")
        if first_error.startswith("unpackable: "):
            return quarantine(first_error)
        return quarantine(f"unreadable: {first_error}; repair failed: {_describe(second)}")
    try:
        usable, pages = packable(repaired)
    except Unpackable as exc:
        return quarantine(f"unpackable: {exc}")
    except Exception as exc:
        return quarantine(f"unpackable: {_describe(exc)}")
    return DocumentCheck(True, pages, None, usable, True, sha, normalized=usable is not repaired)


def _describe(exc: BaseException) -> str:
    """Exception class and a short message; pypdf/qpdf messages name structure, not content."""
    message = str(exc).replace("\n", " ")
    # qpdf prefixes messages with the stream's repr, which is noise.
    message = re.sub(r"^stream <[^>]*>(?: \([^)]*\))?:\s*", "", message)
    text = f"{type(exc).__name__}: {message}" if message else type(exc).__name__
    return text[:200]


def _check_with_pypdf(
    data: bytes, passwords: Sequence[str], max_pages: int
) -> tuple[int, bytes | None]:
    """Open, decrypt, count pages and append to a writer; return the page count and, when the
    original was encrypted, a decrypted copy. Raises _Quarantine for definitive verdicts and
    anything else for "try the repair path"."""
    reader = PdfReader(io.BytesIO(data), strict=False)
    encrypted = reader.is_encrypted
    if encrypted:
        _decrypt(reader, passwords)
        declared = None
    else:
        declared = _declared_page_count(reader)
    if declared is not None and declared > max_pages:
        raise _Quarantine(f"too many pages: {declared} > {max_pages}")
    pages = len(reader.pages)
    if pages == 0:
        raise _NoPages
    if pages > max_pages:
        raise _Quarantine(f"too many pages: {pages} > {max_pages}")

    # What packets do: append to a PdfWriter. Copies objects; decodes no stream.
    writer = PdfWriter()
    append_pdf(writer, reader)
    if len(writer.pages) != pages:
        raise ValueError(f"append copied {len(writer.pages)} of {pages} pages")
    if not encrypted:
        return pages, None
    out = io.BytesIO()
    writer.write(out)
    copy = out.getvalue()
    # The decrypted copy is what packets will read: it must open with the same page count.
    if len(PdfReader(io.BytesIO(copy), strict=False).pages) != pages:
        raise ValueError("decrypted copy lost pages")
    return pages, copy


def _decrypt(reader: PdfReader, passwords: Sequence[str]) -> None:
    # PdfReader already tried "" on open; decrypt() again to learn whether it worked: it
    # returns which password fitted (user or owner), or NOT_DECRYPTED.
    for password in ("", *passwords):
        try:
            if reader.decrypt(password) != PasswordType.NOT_DECRYPTED:
                return
        except (FileNotDecryptedError, WrongPasswordError):
            continue
    if passwords:
        raise _Quarantine(f"encrypted: none of {len(passwords)} password(s) fit")
    raise _Quarantine("encrypted: no password")


def _declared_page_count(reader: PdfReader) -> int | None:
    """The page tree's claimed /Count, read without walking the tree (may lie; cheap guard)."""
    try:
        root: Any = reader.trailer["/Root"]
        return int(root["/Pages"]["/Count"])
    except Exception:
        return None


def _repair_with_pikepdf(data: bytes, passwords: Sequence[str] = ()) -> bytes:
    """qpdf's recovery (rebuilds xref, page tree); the copy is written unencrypted. Streams
    stay compressed, so a bomb stays small; fix_metadata_version=False because broken XMP must
    not fail the repair."""
    candidates = ["", *passwords]
    for index, password in enumerate(candidates):
        try:
            pdf = pikepdf.open(io.BytesIO(data), password=password)
        except pikepdf.PasswordError:
            if index == len(candidates) - 1:
                raise
            continue
        with pdf:
            out = io.BytesIO()
            pdf.save(
                out,
                stream_decode_level=pikepdf.StreamDecodeLevel.none,
                fix_metadata_version=False,
            )
        return out.getvalue()
    raise AssertionError("unreachable")


# --- text -------------------------------------------------------------------------------------


class PageTexts(NamedTuple):
    """What :func:`page_texts` read: the document's page count, the text of each page read
    (in order from the first) and the library that read it (:data:`PDFIUM`, or
    :data:`PYPDF` for a file PDFium cannot open)."""

    pages: int
    texts: list[str]
    extractor: str = PDFIUM


def page_texts(
    data: bytes, max_pages: int, budget_seconds: float | None = None
) -> PageTexts | None:
    """The text of each of the first ``max_pages`` pages, or None when unreadable. A page
    whose content could be a bomb or needs an image codec (a scan), or that fails to
    extract, has the text "". Extraction stops after ``budget_seconds`` (the pages not
    reached have no entry).

    PDFium reads the text (3-4x faster than pypdf: ~0.3 ms against ~2.4 ms a page of
    records), pypdf only a file PDFium cannot open; qpdf, over the same bytes, tells each
    page's content streams' stored (still compressed) size and filters without decoding
    them (:func:`_text_safe`)."""
    raw: pikepdf.Pdf | None = None
    blob = data
    for candidate in (data, None):
        try:
            blob = candidate if candidate is not None else _repair_with_pikepdf(data)
            raw = pikepdf.open(io.BytesIO(blob))
            break
        except Exception:
            raw = None
    if raw is None:
        return None
    try:
        stop = None if budget_seconds is None else time.monotonic() + budget_seconds
        count = len(raw.pages)
        wanted = min(count, max_pages)
        repaired: list[bytes] = []

        def copies() -> Iterator[bytes]:
            """The bytes qpdf opened, then (only when asked for) qpdf's repair of them:
            qpdf opens more damaged files than PDFium and pypdf do."""
            yield blob
            if blob is data:
                if not repaired:
                    with contextlib.suppress(Exception):
                        repaired.append(_repair_with_pikepdf(data))
                yield from repaired

        for copy in copies():
            safe = (_text_safe(raw.pages[index]) for index in range(wanted))
            read = _pdfium_texts(copy, safe, stop)
            if read is not None:
                return PageTexts(count, read, PDFIUM)
        for copy in copies():
            found = _pypdf_texts(copy, count, wanted, raw, stop)
            if found is not None:
                return found
        return None
    finally:
        raw.close()


def _pdfium_texts(blob: bytes, safe: Iterator[bool], stop: float | None) -> list[str] | None:
    """Each page's text by PDFium while ``safe`` says it may be read (None: PDFium cannot
    open ``blob``)."""
    import pypdfium2 as pdfium

    texts: list[str] = []
    with pdfium_lock:
        try:
            pdf = pdfium.PdfDocument(blob)
        except pdfium.PdfiumError:
            return None
        try:
            for index, readable in enumerate(safe):
                if stop is not None and time.monotonic() > stop:
                    break
                if not readable or index >= len(pdf):
                    texts.append("")
                    continue
                try:
                    texts.append(page_text(pdf, index))
                except pdfium.PdfiumError:
                    texts.append("")
        finally:
            pdf.close()
    return texts


def _pypdf_texts(
    blob: bytes, count: int, wanted: int, raw: pikepdf.Pdf, stop: float | None
) -> PageTexts | None:
    try:
        reader = PdfReader(io.BytesIO(blob), strict=False)
        pages = len(reader.pages)
    except Exception:
        return None
    texts: list[str] = []
    for index in range(min(wanted, pages)):
        if stop is not None and time.monotonic() > stop:
            break
        try:
            texts.append(reader.pages[index].extract_text() if _text_safe(raw.pages[index]) else "")
        except Exception:
            texts.append("")
    return PageTexts(count, texts, PYPDF)


def _text_safe(page: pikepdf.Page) -> bool:
    """True when every content stream of ``page`` is small and uses only bounded, built-in
    filters (sizes compressed, :data:`MAX_TEXT_STREAM_BYTES`; nothing is decoded)."""
    try:
        contents = page.obj.get("/Contents")
        if contents is None:
            return True
        streams = list(contents) if isinstance(contents, pikepdf.Array) else [contents]
        total = 0
        for stream in streams:
            if not isinstance(stream, pikepdf.Stream):
                return False
            filters = stream.get("/Filter")
            names = (
                [str(f) for f in filters]
                if isinstance(filters, pikepdf.Array)
                else []
                if filters is None
                else [str(filters)]
            )
            if any(name not in _TEXT_SAFE_FILTERS for name in names):
                return False
            total += len(stream.read_raw_bytes())
            if total > MAX_TEXT_STREAM_BYTES:
                return False
        return True
    except Exception:  # a damaged page dictionary: not read
        return False


def extract_reference(data: bytes) -> str | None:
    """The first request reference ("GF-XXXXXXXX") in the text of the first 2 pages, or None
    (no text layer, e.g. a scanned fax, or an unreadable file). Never raises."""
    try:
        return reference_in(page_texts(data, _TEXT_PAGES))
    except Exception:
        return None


def is_no_records_reply(data: bytes) -> bool:
    """True for a short document (at most 3 pages) whose text says the sender holds no records
    for the patient ("No records", "we do not have any records", ...). Never raises."""
    try:
        return no_records_in(page_texts(data, _NO_RECORDS_MAX_PAGES))
    except Exception:
        return False


def reference_in(found: PageTexts | None) -> str | None:
    """:func:`extract_reference` on texts already read by :func:`page_texts` (with at least
    the first 2 pages, or all of a shorter document): one extraction serves every check."""
    if found is None:
        return None
    match = _REFERENCE_IN_TEXT.search(_joined(found.texts, _TEXT_PAGES))
    return match.group(0) if match else None


def no_records_in(found: PageTexts | None) -> bool:
    """:func:`is_no_records_reply` on texts already read by :func:`page_texts` (with at least
    the first 3 pages, or all of a shorter document)."""
    if found is None or found.pages > _NO_RECORDS_MAX_PAGES:
        return False
    normalized = re.sub(r"\s+", " ", _joined(found.texts, _NO_RECORDS_MAX_PAGES).lower())
    return any(pattern.search(normalized) for pattern in _NO_RECORDS_PATTERNS)


def first_pages(data: bytes, found: PageTexts | None) -> PageTexts | None:
    """Texts for :func:`reference_in` and :func:`no_records_in`: ``found`` (what
    :func:`page_texts` read of ``data``) when it holds every page they read, else those pages
    read again on their own (an extraction stopped by its time budget, or by fewer pages
    asked for, may not hold them)."""
    if found is None:
        return None  # unreadable: both answer "nothing", as on the document itself
    if len(found.texts) >= min(found.pages, _FIRST_PAGES):
        return found
    return page_texts(data, _FIRST_PAGES)


def _joined(texts: list[str], pages: int) -> str:
    return "\n".join(text for text in texts[:pages] if text)
