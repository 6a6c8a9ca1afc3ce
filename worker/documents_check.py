"""Bounded work per inbound document: every check of one document (structure, packability,
decompressed stream sizes, text) runs in a child process with resource limits, so one file
can never hold a worker for long (decompression bombs, pathological files).

::

    bytes > max_bytes ──────────────────────────────► quarantine (no child used)
    checking process (forkserver, modules preloaded, kept between documents):
        RLIMIT_AS = max_memory_bytes; per document RLIMIT_CPU = what it used + max_seconds (+1)
      check_document (pages > max_pages ──► quarantine)
      any stream decompressing past max_stream_bytes ──► quarantine
      request reference, "no records" wording
    parent waits max_seconds of wall time ──► no answer: process killed, quarantine
    process out of memory or CPU, or dead ──► quarantine naming the limit (never reused)

A process that answered checks the next document (up to :data:`TASKS_PER_PROCESS`); one that
did not is killed and replaced, so a hang or a crash costs only its own document, as when
each document had a process of its own (which cost a fork and, worse, an import of the main
module per document). Reasons name the limit and its setting (``GOODFAITH_DOCUMENTS__*``),
never document text. ``DocumentSettings.isolated=False`` runs the same checks in the calling
process (tests, benchmarks).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import math
import multiprocessing
import multiprocessing.process
import os
import resource
import signal
import sys
import threading
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from multiprocessing import spawn
from typing import Any

import pikepdf

from config.settings import DocumentSettings
from worker.documents import (
    DocumentCheck,
    check_document,
    first_pages,
    no_records_in,
    page_texts,
    reference_in,
)
from worker.domain.similarity import PageSignature, QASettings, page_signature
from worker.pdfium import LOCK as pdfium_lock

__all__ = [
    "DocumentChecker",
    "Inspection",
    "blank_pages",
    "inspect_document",
    "oversized_stream",
    "renders_blank",
    "structurally_blank",
]

_FLATE = frozenset({"/FlateDecode", "/Fl"})
_CHUNK = 1 << 20  # bytes inflated per step while measuring a stream
_COMPONENTS = {"/DeviceGray": 1, "/CalGray": 1, "/DeviceRGB": 3, "/CalRGB": 3, "/Lab": 3}
_COMPONENTS |= {"/DeviceCMYK": 4}


@dataclass(frozen=True)
class Inspection:
    """The verdict on one document and, when accepted, what its text says: per page its text
    ("" for scanned pages and pages whose text is not read) and its QA signature (MinHash
    and dates of service, worker/domain/similarity.py), with the thresholds they were made
    with. The text stays in memory (the identity check); only signatures are stored."""

    check: DocumentCheck
    reference: str | None = None
    no_records: bool = False
    texts: tuple[str, ...] = ()
    signatures: tuple[PageSignature, ...] = ()
    qa: QASettings = field(default_factory=QASettings)
    blank_pages: tuple[int, ...] = ()  # 1-based pages that draw nothing


Target = Callable[[bytes, str, Sequence[str], DocumentSettings], Inspection]


def inspect_document(
    data: bytes, content_type: str, passwords: Sequence[str], limits: DocumentSettings
) -> Inspection:
    """Every intake check of one document, in the calling process."""
    check = check_document(
        data,
        content_type,
        passwords=passwords,
        max_pages=limits.max_pages,
        max_bytes=limits.max_bytes,
    )
    if not check.accepted:
        return Inspection(_named(check, limits))
    too_big = oversized_stream(check.data, limits.max_stream_bytes)
    if too_big is not None:
        return Inspection(_quarantined(data, check.sha256, too_big))
    qa = limits.qa()
    # Text of every page (up to qa_max_pages, within a third of the time limit).
    found = page_texts(check.data, limits.qa_max_pages, budget_seconds=limits.max_seconds / 3)
    texts = tuple(found.texts) if found else ()
    if found is not None:  # the signatures say which library read the text they were made of
        qa = dataclasses.replace(qa, text=found.extractor)
    first = first_pages(check.data, found)  # one extraction serves the reference and reply
    return Inspection(
        check,
        reference_in(first),
        no_records_in(first),
        texts,
        tuple(page_signature(text, qa) for text in texts),
        qa,
        blank_pages(check.data, limits.qa_max_pages, budget_seconds=limits.max_seconds / 3),
    )


#: A page is rendered at this scale (36 dpi) to see whether it shows anything.
RENDER_SCALE = 0.5
#: Pixels darker than this (0 black .. 255 white) are ink; a sheet's grey noise is not.
INK_LEVEL = 230
#: A rendered page with less than this share of ink pixels shows nothing a reader can see.
INK_SHARE = 0.0002


def blank_pages(
    data: bytes, max_pages: int = 2000, budget_seconds: float = 20.0
) -> tuple[int, ...]:
    """Pages that show nothing (1-based): those with nothing to draw
    (:func:`structurally_blank`), and those that draw but render white — a scan of a white
    sheet, content painted white or off the page (:func:`renders_blank`, on at most
    ``max_pages`` pages within ``budget_seconds``)."""
    empty = set(structurally_blank(data))
    return tuple(sorted(empty | set(renders_blank(data, empty, max_pages, budget_seconds))))


def renders_blank(data: bytes, skip: set[int], max_pages: int, budget_seconds: float) -> list[int]:
    """Pages (1-based, not in ``skip``) that PDFium renders with less than
    :data:`INK_SHARE` of their pixels darker than :data:`INK_LEVEL`, annotations drawn.
    A page that cannot be rendered is not called blank (its check would have refused it).
    One thread at a time in this process (:data:`worker.pdfium.LOCK`)."""
    with pdfium_lock:
        return _renders_blank(data, skip, max_pages, budget_seconds)


def _renders_blank(data: bytes, skip: set[int], max_pages: int, budget_seconds: float) -> list[int]:
    import pypdfium2 as pdfium

    found: list[int] = []
    deadline = time.monotonic() + budget_seconds
    try:
        pdf = pdfium.PdfDocument(data)
    except pdfium.PdfiumError:
        return found
    try:
        for index in range(min(len(pdf), max_pages)):
            if index + 1 in skip:
                continue
            if time.monotonic() > deadline:
                break
            try:
                page = pdf[index]
                image = page.render(scale=RENDER_SCALE, grayscale=True, may_draw_forms=True)
                histogram = image.to_pil().convert("L").histogram()
                page.close()
            except pdfium.PdfiumError:
                continue
            if sum(histogram[:INK_LEVEL]) <= INK_SHARE * sum(histogram):
                found.append(index + 1)
    finally:
        pdf.close()
    return found


def structurally_blank(data: bytes) -> tuple[int, ...]:
    """Pages with nothing to draw (1-based): no content stream, or content streams holding
    nothing but white space, and no annotation that could draw. (A repair that rebuilt a page
    tree around lost content gives such pages.)"""
    found = []
    with pikepdf.open(io.BytesIO(data)) as pdf:
        for number, page in enumerate(pdf.pages, start=1):
            if page.obj.get("/Annots"):
                continue
            contents = page.obj.get("/Contents")
            streams = (
                []
                if contents is None
                else list(contents)
                if isinstance(contents, pikepdf.Array)
                else [contents]
            )
            try:
                drawn = any(
                    isinstance(stream, pikepdf.Stream) and stream.read_bytes().strip()
                    for stream in streams
                )
            except Exception:  # undecodable content is not blank: trial would have refused it
                drawn = True
            if not drawn:
                found.append(number)
    return tuple(found)


def oversized_stream(data: bytes, limit: int) -> str | None:
    """A reason when a stream decodes to more than ``limit`` bytes: Flate streams are inflated
    in 1 MiB steps up to the limit (never held whole); images are sized by their declared
    width x height x components x bits. Streams in other codecs are never decoded here or
    in the packet, and are not measured."""
    with pikepdf.open(io.BytesIO(data)) as pdf:
        for obj in pdf.objects:
            if not isinstance(obj, pikepdf.Stream):
                continue
            declared = _declared_image_bytes(obj)
            if declared > limit:
                return _stream_reason(f"an image declares {declared} bytes", limit)
            filters = obj.get("/Filter")
            first = filters[0] if isinstance(filters, pikepdf.Array) and len(filters) else filters
            if str(first) in _FLATE and _inflates_past(obj.read_raw_bytes(), limit):
                return _stream_reason("a stream decompresses", limit)
    return None


def _stream_reason(what: str, limit: int) -> str:
    return f"stream too large: {what} > {limit} (GOODFAITH_DOCUMENTS__MAX_STREAM_BYTES)"


def _inflates_past(raw: bytes, limit: int) -> bool:
    inflater = zlib.decompressobj()
    total, pending = 0, raw
    try:
        while pending:
            total += len(inflater.decompress(pending, _CHUNK))
            if total > limit:
                return True
            pending = inflater.unconsumed_tail
    except zlib.error:
        pass  # a damaged stream: what inflated so far is its size
    return False


def _declared_image_bytes(stream: pikepdf.Stream) -> int:
    try:
        if stream.get("/Subtype") != pikepdf.Name.Image:
            return 0
        width, height = int(stream.get("/Width", 0)), int(stream.get("/Height", 0))
        bits = int(stream.get("/BitsPerComponent", 8))
        space = stream.get("/ColorSpace")
        components = _COMPONENTS.get(str(space), 3) if space is not None else 1
        return max(0, width) * max(0, height) * components * max(1, bits) // 8
    except Exception:
        return 0


def _quarantined(data: bytes, sha: str, reason: str) -> DocumentCheck:
    return DocumentCheck(False, 0, reason, data, False, sha)


def _named(check: DocumentCheck, limits: DocumentSettings) -> DocumentCheck:
    """Quarantine reasons from check_document, with the setting that set the limit."""
    reason = check.reason or ""
    for prefix, setting in (("too large", "MAX_BYTES"), ("too many pages", "MAX_PAGES")):
        if reason.startswith(prefix):
            reason = f"{reason} (GOODFAITH_DOCUMENTS__{setting})"
            return DocumentCheck(False, check.pages, reason, check.data, False, check.sha256)
    return check


# --- the child processes ----------------------------------------------------------------------

_lock = threading.Lock()
_ctx: Any = None

#: Documents one checking process checks before it is replaced (bounds what a long-lived
#: process could accumulate: heap fragmentation counted against RLIMIT_AS, library caches).
TASKS_PER_PROCESS = 200


#: How the forkserver learns the main script to import once (see :func:`_context`):
#: ``<pid of the process starting it>:<path>``.
_MAIN_ENV = "GOODFAITH_FORKSERVER_MAIN"


def _context() -> Any:
    """A forkserver context whose server has the PDF libraries and the main script imported
    (started on first use, never at import): a checking process forks from it in a few
    milliseconds. Python 3.11 never passes the main script's path to its forkserver, so each
    child would run the main script again as ``__mp_main__`` before its first check (for
    ``goodfaith`` or a benchmark, an import of the whole application: most of a child's CPU);
    the path travels in :data:`_MAIN_ENV` instead, and :func:`_adopt_main` imports it in the
    server, once."""
    global _ctx
    with _lock:
        if _ctx is None:
            methods = multiprocessing.get_all_start_methods()
            ctx = multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
            if ctx.get_start_method() == "forkserver":
                main_path = spawn.get_preparation_data("check").get("init_main_from_path")
                if main_path:
                    os.environ[_MAIN_ENV] = f"{os.getpid()}:{main_path}"
                ctx.set_forkserver_preload(["__main__", "worker.documents_check"])
            _ctx = ctx
        return _ctx


def _adopt_main() -> None:
    """In the forkserver (started by the process :data:`_MAIN_ENV` names, run by ``-c`` so its
    ``__main__`` has no file): import that process's main script as multiprocessing's own
    children would, so they find it imported and skip it."""
    parent, _, path = os.environ.get(_MAIN_ENV, "").partition(":")
    main = sys.modules.get("__main__")
    if not path or parent != str(os.getppid()) or getattr(main, "__file__", None) is not None:
        return
    current = multiprocessing.process.current_process()
    current._inheriting = True  # type: ignore[attr-defined]  # as multiprocessing does
    try:
        spawn.import_main_path(path)
    except BaseException:  # a script that fails as __mp_main__ (no main guard):
        pass  # the server keeps serving; each child then imports it as before, and fails alone
    finally:
        del current._inheriting  # type: ignore[attr-defined]


def _serve(conn: Any, limits: Any) -> None:
    """A checking process: RLIMIT_AS once, then per document a CPU limit of ``max_seconds``
    (+1) past what it has used so far, the check, and its answer. It ends when the pipe
    closes (its parent is gone) and after an answer other than "ok" (a process that ran out
    of memory is not trusted with the next document); an exception in a check ends it too
    (the parent names the exit code)."""
    settings = DocumentSettings.model_validate(limits)
    memory = settings.max_memory_bytes
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    budget = math.ceil(settings.max_seconds) + 1
    _, hard = resource.getrlimit(resource.RLIMIT_CPU)
    while True:
        try:
            target, data, ct, pw = conn.recv()
        except (EOFError, OSError):
            return
        usage = resource.getrusage(resource.RUSAGE_SELF)
        soft = math.ceil(usage.ru_utime + usage.ru_stime) + budget
        if hard != resource.RLIM_INFINITY:
            soft = min(soft, hard)
        resource.setrlimit(resource.RLIMIT_CPU, (soft, hard))  # SIGXCPU past it: the process ends
        try:
            result: tuple[str, Any] = ("ok", target(data, ct, pw, settings))
        except MemoryError:
            result = ("memory", None)
        conn.send(result)
        if result[0] != "ok":
            conn.close()
            return


@dataclass
class _Process:
    """One checking process and the parent's end of its pipe."""

    proc: Any
    conn: Any
    tasks: int = 0

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            self.conn.close()
        if self.proc.is_alive():
            self.proc.kill()
        self.proc.join()


class _Pool:
    """Checking processes kept between documents, one per concurrent caller: a caller takes
    an idle process (or starts one), sends it the document and waits at most ``max_seconds``;
    a process that answered goes back to the idle list, one that did not is killed and
    forgotten, so a hang or crash only ever costs its own document."""

    def __init__(self, limits: DocumentSettings, max_idle: int) -> None:
        self.limits = limits
        self.max_idle = max_idle
        self._idle: list[_Process] = []
        self._lock = threading.Lock()
        self._closed = False

    def take(self) -> _Process:
        with self._lock:
            while self._idle:
                found = self._idle.pop()
                if found.proc.is_alive():
                    return found
                found.stop()
        ctx = _context()
        mine, theirs = ctx.Pipe(duplex=True)
        proc = ctx.Process(target=_serve, args=(theirs, self.limits.model_dump()), daemon=True)
        proc.start()
        theirs.close()
        return _Process(proc, mine)

    def give_back(self, worker: _Process) -> None:
        worker.tasks += 1
        with self._lock:
            if (
                not self._closed
                and worker.tasks < TASKS_PER_PROCESS
                and (len(self._idle) < self.max_idle)
            ):
                self._idle.append(worker)
                return
        worker.stop()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for worker in idle:
            worker.stop()


class DocumentChecker:
    """Checks inbound documents within :class:`DocumentSettings`' limits. ``target`` is the
    check to run (a module-level function; tests pass a hook that hangs).

    Isolated checks run in checking processes kept between documents (at most ``max_idle``
    of them wait idle; :meth:`close` stops them)."""

    def __init__(
        self, limits: DocumentSettings, target: Target = inspect_document, max_idle: int = 8
    ) -> None:
        self.limits = limits
        self.target = target
        self._pool = _Pool(limits, max_idle)

    def close(self) -> None:
        """Stop the idle checking processes (a later check starts new ones)."""
        self._pool.close()

    def inspect(self, data: bytes, content_type: str, passwords: Sequence[str] = ()) -> Inspection:
        """The verdict on one document; never raises on bad input, never runs past
        ``max_seconds`` (plus process start-up) when isolated."""
        limits = self.limits
        if len(data) > limits.max_bytes:
            sha = hashlib.sha256(data).hexdigest()
            reason = f"too large: {len(data)} bytes > {limits.max_bytes}"
            return Inspection(_quarantined(data, sha, f"{reason} (GOODFAITH_DOCUMENTS__MAX_BYTES)"))
        if not limits.isolated:
            return self.target(data, content_type, passwords, limits)
        return self._isolated(data, content_type, passwords)

    def _isolated(self, data: bytes, content_type: str, passwords: Sequence[str]) -> Inspection:
        worker = self._pool.take()
        deadline = time.monotonic() + self.limits.max_seconds
        outcome: tuple[str, Any] = ("timeout", None)
        try:
            worker.conn.send((self.target, data, content_type, list(passwords)))
            if worker.conn.poll(max(0.0, deadline - time.monotonic())):
                outcome = worker.conn.recv()
        except (EOFError, OSError):
            outcome = ("died", None)
        kind, value = outcome
        if kind == "ok":
            self._pool.give_back(worker)
            assert isinstance(value, Inspection)
            return value
        worker.stop()  # killed when it is still running (the time limit), reaped when not
        sha = hashlib.sha256(data).hexdigest()
        return Inspection(_quarantined(data, sha, self._reason(kind, worker.proc.exitcode)))

    def _reason(self, kind: str, exitcode: int | None) -> str:
        limits = self.limits
        if kind == "timeout":
            return (
                f"check exceeded the time limit: {limits.max_seconds:g} s "
                "(GOODFAITH_DOCUMENTS__MAX_SECONDS)"
            )
        if kind == "memory" or exitcode == -signal.SIGSEGV:
            return (
                f"check exceeded the memory limit: {limits.max_memory_bytes} bytes "
                "(GOODFAITH_DOCUMENTS__MAX_MEMORY_BYTES)"
            )
        if exitcode in (-signal.SIGXCPU, -signal.SIGKILL):
            return (
                f"check exceeded the CPU time limit: {limits.max_seconds:g} s "
                "(GOODFAITH_DOCUMENTS__MAX_SECONDS)"
            )
        return f"check failed: the checking process exited with code {exitcode}"


_adopt_main()  # a no-op but in the forkserver (see _context)
