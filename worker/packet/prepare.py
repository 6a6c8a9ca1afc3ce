"""One document in the form a packet needs, and the trial that proves it.

A packet appends each part with :func:`add_pages` (qpdf's foreign page copy, through pikepdf)
and then stamps every page (:mod:`worker.packet.stamps`), which reads each page's box (``/CropBox`` falling back
to ``/MediaBox``), its ``/Rotate`` and adds a font to its ``/Resources``. Intake runs the same
steps on each document alone (:func:`trial`), so what would break assembly breaks at intake.

Before the trial, :func:`normalized` puts page attributes into the form the stamp reads, and
only changes what is missing, inherited or malformed (never a content stream)::

    /MediaBox, /CropBox, /Rotate, /Resources inherited from /Pages ──► set on each page
    /MediaBox missing or not 4 finite numbers with a non-empty area ──► US Letter (612 x 792)
    /CropBox malformed ──► removed (the media box applies)    inverted boxes ──► reordered
    /Rotate not a multiple of 90 ──► 0                         /Resources null ──► empty
    /Resources or its /Font neither a dictionary nor null ──► Unpackable (the page cannot be
                                                              rendered as its sender meant)
"""

from __future__ import annotations

import io
import math
import re
import zlib
from typing import Any

import pikepdf
from pikepdf import Array, Dictionary, Name
from pypdf import PdfReader, PdfWriter

from worker.packet.stamps import save_stamped

__all__ = [
    "LETTER_BOX",
    "Unpackable",
    "add_pages",
    "append_pdf",
    "normalized",
    "packable",
    "qpdf_problems",
    "rewritten",
    "trial",
]

LETTER_BOX = (0.0, 0.0, 612.0, 792.0)
"""The media box (points) given to a page whose own is missing or malformed."""

_INHERITABLE = ("/MediaBox", "/CropBox", "/Rotate", "/Resources")
_MAX_DEPTH = 64  # page-tree levels walked looking for an inherited attribute
_MAX_COORD = 14_400 * 10  # points; PDF's own limit is 14,400 user units per side


class Unpackable(Exception):
    """The document cannot go into a packet as it is; the message says why (no content)."""


def append_pdf(writer: PdfWriter, reader: PdfReader, outline_item: str | None = None) -> None:
    """Append every page of ``reader`` to ``writer`` with pypdf: intake's own copy (the
    decrypted copy of an encrypted file, the rewrite of one qpdf cannot walk). Packets copy
    pages with :func:`add_pages`.

    Annotations (filled form widgets, stamps) are kept; the source's bookmarks are not
    imported (hostile outlines are a common failure, and the packet adds its own, one per
    part, via ``outline_item``). ``/B`` (article beads) would point into the source document.
    """
    writer.append(reader, outline_item=outline_item, import_outline=False, excluded_fields=["/B"])


def packable(data: bytes) -> tuple[bytes, int]:
    """The document in the form the packet needs (a normalized copy, or ``data`` itself) and
    its page count, proven by the packet's own path on it alone. Raises :class:`Unpackable`
    (or whatever the packet path raises) when it cannot go into a packet."""
    try:
        fixed = normalized(data)
    except Unpackable:
        raise
    except Exception:  # qpdf cannot walk the original: normalize the packet's own rewrite
        data = rewritten(data)
        fixed = normalized(data)
    usable = data if fixed is None else fixed
    return usable, trial(usable)


def rewritten(data: bytes) -> bytes:
    """The document as the packet's append writes it (pypdf): a clean page tree and xref."""
    writer = PdfWriter()
    append_pdf(writer, PdfReader(io.BytesIO(data), strict=False))
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def add_pages(target: pikepdf.Pdf, source: pikepdf.Pdf) -> int:
    """Append every page of ``source`` to ``target`` the one way packets do: qpdf's copy of
    foreign objects (the machinery of ``qpdf --pages``), streams copied as stored, each copied
    page added to the end of ``target``'s flat /Kids array. Inherited page attributes are set
    on each (in-memory) source page first, article beads (``/B``) dropped (they would point
    into the source), forms flattened and actions and attachments removed
    (:func:`_flatten_page`). The source's outline, forms catalog, JavaScript and embedded
    files are document-level and never copied. ``source`` must stay open until ``target`` is saved.

    ``target`` must be a new document whose page list nothing has read yet (qpdf caches it):
    pikepdf's own page insert refreshes that cache on every page, which made merging grow
    with the square of the pages. Returns the pages added; raises :class:`Unpackable` when
    that is not every page."""
    tree = target.Root.Pages
    kids = tree.Kids
    before = len(kids)
    pages = source.pages
    parents: dict[tuple[int, int], Any] = {}
    for page in pages:
        obj = page.obj
        for key in _INHERITABLE:
            if key not in obj:
                value = _inherited(obj, key, parents)
                if value is not None:
                    obj[key] = value
        if Name.B in obj:
            del obj[Name.B]
        _flatten_page(page, source)
        copied = target.copy_foreign(obj)
        copied.Parent = tree
        kids.append(copied)
    tree.Count = len(kids)
    added = len(kids) - before
    if added != len(pages):
        raise Unpackable(f"append copied {added} of {len(pages)} pages")
    return added


_HIDDEN = 2 | 32  # annotation flags Hidden, NoView
_SAVE = b"q\n"


def _flatten_page(page: pikepdf.Page, pdf: pikepdf.Pdf) -> None:
    """Forms flattened and nothing active left on the (in-memory) source page: each visible
    form widget's appearance is drawn into the page (a new content stream after the page's
    own, which stays as stored) and the widget removed; file attachments are removed; page
    and annotation actions (``/AA``, JavaScript ``/A``) are dropped. Links and comments keep
    their appearance."""
    obj = page.obj
    if Name.AA in obj:
        del obj[Name.AA]
    annots = obj.get(Name.Annots)
    if annots is None:
        return
    if not isinstance(annots, Array):
        del obj[Name.Annots]
        return
    kept: list[Any] = []
    drawn: list[bytes] = []
    changed = False
    for annot in annots:
        if not isinstance(annot, Dictionary):
            changed = True
            continue
        subtype = annot.get(Name.Subtype)
        if subtype == Name.FileAttachment:
            changed = True
            continue
        if subtype == Name.Widget:
            changed = True
            placed = _widget_appearance(page, annot)
            if placed:
                drawn.append(placed)
            continue
        if Name.AA in annot:
            del annot[Name.AA]
        action = annot.get(Name.A)
        if isinstance(action, Dictionary) and action.get(Name.S) in (Name.JavaScript, Name.Launch):
            del annot[Name.A]
        kept.append(annot)
    if changed:
        obj[Name.Annots] = Array(kept)
    if drawn:
        # The page's own content may leave the graphics state changed: wrap it in q ... Q.
        page.contents_add(pikepdf.Stream(pdf, _SAVE), prepend=True)
        page.contents_add(pikepdf.Stream(pdf, b"\nQ\n" + b"\n".join(drawn) + b"\n"))


def _widget_appearance(page: pikepdf.Page, annot: Any) -> bytes | None:
    """Content that draws a widget's normal appearance at its /Rect, or None (hidden, no
    appearance, or one that cannot be placed)."""
    try:
        if int(annot.get(Name.F, 0)) & _HIDDEN:
            return None
        appearance = annot.get(Name.AP)
        normal = appearance.get(Name.N) if isinstance(appearance, Dictionary) else None
        if isinstance(normal, Dictionary) and not isinstance(normal, pikepdf.Stream):
            state = annot.get(Name.AS)
            normal = normal.get(state) if state is not None else None
        if not isinstance(normal, pikepdf.Stream) or Name.BBox not in normal:
            return None
        rect = pikepdf.Rectangle(annot.Rect)
        name = Name(page.add_resource(normal, Name.XObject, prefix="GFForm"))
        placed = page.calc_form_xobject_placement(
            normal, name, rect, invert_transformations=False, allow_expand=True
        )
        return b"q\n" + placed + b"\nQ"
    except Exception:  # a malformed widget: it is dropped, not drawn
        return None


def trial(data: bytes) -> int:
    """Run the packet's own path on one document alone (read, append, write, stamp, save),
    then qpdf's own check on the result (:func:`qpdf_problems`), and return its page count.
    Raises whatever that path raises, and :class:`Unpackable` when qpdf finds a problem the
    packet would carry (a content stream that does not decode or parse): every packet must
    pass ``qpdf --check`` without a warning."""
    with pikepdf.open(io.BytesIO(data)) as source, pikepdf.new() as target:
        count = len(source.pages)
        if count == 0:
            raise Unpackable("no pages")
        add_pages(target, source)
        packet = save_stamped(target, "GF-TRIAL")
    problems = qpdf_problems(packet)
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise Unpackable(f"qpdf check: {problems[0]}{more}")
    return count


# qpdf prefixes each message with the input's name ("stream <_io.BytesIO object at 0x...>" or a
# file path) and sometimes an offset: noise in a reason, and different on every run.
_QPDF_PREFIX = re.compile(
    r"^(?:WARNING|ERROR)?:?\s*(?:stream <[^>]*>|[^:]*\.pdf)?\s*(?:\([^)]*\))?:?\s*"
)


_GENERALIZED = frozenset(
    {"/FlateDecode", "/Fl", "/LZWDecode", "/LZW", "/ASCII85Decode", "/A85", "/ASCIIHexDecode"}
    | {"/AHx", "/RunLengthDecode", "/RL"}
)
MAX_CHECKED_STREAM_BYTES = 256 * 1024 * 1024
"""Decoded size (bytes) past which :func:`qpdf_problems` does not decode a Flate stream (intake
bounds stream sizes before: ``GOODFAITH_DOCUMENTS__MAX_STREAM_BYTES``)."""


class _Discard(pikepdf.StreamParser):
    def handle_object(self, obj: Any, offset: int, length: int) -> None:
        pass

    def handle_eof(self) -> None:
        pass


def qpdf_problems(data: bytes) -> list[str]:
    """What ``qpdf --check`` would report on ``data``, found through pikepdf the way qpdf's
    check does it (QPDFJob::doCheck): warnings from reading the structure, every stream in
    a generalized filter (Flate, LZW, ASCII85, ASCIIHex, RunLength) decoded, every page's
    content parsed. Image codecs (DCT, JPX, JBIG2, CCITT) are not decoded, as qpdf does not;
    a *content* stream in one cannot be parsed and is a problem. Bounded: a Flate stream is
    first inflated in steps and left undecoded past :data:`MAX_CHECKED_STREAM_BYTES`. Each
    message names objects and offsets only, never text of the document."""
    problems: list[str] = []
    with pikepdf.open(io.BytesIO(data)) as pdf:
        problems += pdf.get_warnings()
        for obj in pdf.objects:
            if not isinstance(obj, pikepdf.Stream):
                continue
            filters = obj.get("/Filter")
            names = [str(f) for f in filters] if isinstance(filters, Array) else [str(filters)]
            if filters is None or not all(name in _GENERALIZED for name in names):
                continue
            if names[0] in ("/FlateDecode", "/Fl") and _inflates_past(
                obj.read_raw_bytes(), MAX_CHECKED_STREAM_BYTES
            ):
                continue
            try:
                obj.read_bytes()
            except Exception as exc:  # PdfError: the data does not decode
                if "unfilterable" not in str(exc):  # parameters qpdf does not decode either
                    problems.append(f"object {obj.objgen[0]} {obj.objgen[1]}: {_clean(str(exc))}")
            problems += pdf.get_warnings()
        parser = _Discard()
        for number, page in enumerate(pdf.pages, start=1):
            try:
                page.parse_contents(parser)
            except pikepdf.DependencyError:  # JBIG2: a content stream in an image codec
                problems.append(f"page {number}: content stream is encoded with an image codec")
            except Exception as exc:  # PdfError: it does not decode or parse
                problems += pdf.get_warnings()
                problems.append(f"page {number}: {_clean(str(exc))}")
        problems += pdf.get_warnings()
    return [_clean(str(problem))[:160] for problem in problems]


def _clean(message: str) -> str:
    return _QPDF_PREFIX.sub("", message.replace("\n", " ")).strip()


def _inflates_past(raw: bytes, limit: int) -> bool:
    inflater = zlib.decompressobj()
    total, pending = 0, raw
    try:
        while pending:
            total += len(inflater.decompress(pending, 1 << 20))
            if total > limit:
                return True
            pending = inflater.unconsumed_tail
    except zlib.error:
        pass  # damaged: read_bytes reports it
    return False


def normalized(data: bytes) -> bytes | None:
    """A copy with every page's attributes in the form the stamp reads, or None when the
    document already is in that form. Raises :class:`Unpackable` naming the page and the
    attribute when a page cannot be made packable; streams are copied as stored."""
    with pikepdf.open(io.BytesIO(data)) as pdf:
        changed = False
        parents: dict[tuple[int, int], Any] = {}
        for number, page in enumerate(pdf.pages, start=1):
            changed |= _normalize_page(page.obj, number, parents)
        for node in parents.values():
            for key in _INHERITABLE:
                if key in node:
                    del node[key]
                    changed = True
        if not changed:
            return None
        out = io.BytesIO()
        pdf.save(
            out, stream_decode_level=pikepdf.StreamDecodeLevel.none, fix_metadata_version=False
        )
        return out.getvalue()


def _normalize_page(page: Any, number: int, parents: dict[tuple[int, int], Any]) -> bool:
    """Set the page's own box, rotation and resources; collect its page-tree ancestors."""
    changed = False
    own = {key: key in page for key in _INHERITABLE}
    values = {key: _inherited(page, key, parents) for key in _INHERITABLE}

    media = _box(values["/MediaBox"])
    if media is None:
        page["/MediaBox"] = Array(list(LETTER_BOX))
        changed = True
    elif not own["/MediaBox"] or _differs(values["/MediaBox"], media):
        page["/MediaBox"] = Array(list(media))
        changed = True

    if own["/CropBox"] or values["/CropBox"] is not None:
        crop = _box(values["/CropBox"])
        if crop is None:
            if own["/CropBox"]:
                del page["/CropBox"]
                changed = True
        elif not own["/CropBox"] or _differs(values["/CropBox"], crop):
            page["/CropBox"] = Array(list(crop))
            changed = True

    if own["/Rotate"] or values["/Rotate"] is not None:
        rotate = _rotation(values["/Rotate"])
        if not own["/Rotate"] or not _same_number(values["/Rotate"], rotate):
            page["/Rotate"] = rotate
            changed = True

    resources = values["/Resources"]
    if resources is None:
        if own["/Resources"]:  # /Resources null: the same as none
            page["/Resources"] = Dictionary()
            changed = True
        return changed
    if not isinstance(resources, Dictionary):
        raise Unpackable(f"page {number}: /Resources is not a dictionary")
    if "/Font" in resources:
        font = resources.get("/Font")
        if font is None:
            del resources["/Font"]
            changed = True
        elif not isinstance(font, Dictionary):
            raise Unpackable(f"page {number}: /Resources /Font is not a dictionary")
    if not own["/Resources"]:
        page["/Resources"] = resources
        changed = True
    return changed


def _differs(value: Any, box: tuple[float, float, float, float]) -> bool:
    try:
        return tuple(float(v) for v in value) != box
    except Exception:
        return True


def _same_number(value: Any, number: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value == number


def _inherited(page: Any, key: str, parents: dict[tuple[int, int], Any]) -> Any:
    """The page's value for ``key``, looked up through its /Parent chain (bounded)."""
    node = page
    for _ in range(_MAX_DEPTH):
        if key in node:
            return node.get(key)
        parent = node.get("/Parent")
        if not isinstance(parent, Dictionary):
            return None
        if parent.is_indirect:
            parents.setdefault(parent.objgen, parent)
        node = parent
    return None


def _box(value: Any) -> tuple[float, float, float, float] | None:
    """Four finite numbers with a non-empty area, ordered (llx, lly, urx, ury); else None."""
    if not isinstance(value, Array) or len(value) != 4:
        return None
    try:
        numbers = [float(v) for v in value]
    except Exception:
        return None
    if not all(math.isfinite(n) and abs(n) <= _MAX_COORD for n in numbers):
        return None
    x0, y0, x1, y1 = numbers
    box = (min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1))
    if box[2] - box[0] < 1 or box[3] - box[1] < 1:
        return None
    return box


def _rotation(value: Any) -> int:
    """/Rotate as 0, 90, 180 or 270; anything that is not a multiple of 90 is 0."""
    if isinstance(value, bool) or value is None:
        return 0
    try:
        number = float(value)
    except Exception:
        return 0
    if not math.isfinite(number) or number != int(number) or int(number) % 90:
        return 0
    return int(number) % 360
