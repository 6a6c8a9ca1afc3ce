"""Damaged variants of a PDF, made with pikepdf in the test (never stored): malformed page
boxes, rotations, inherited page attributes on /Pages, broken /Resources and /Font entries,
truncated or odd content streams. Each name maps to a function that damages an open Pdf."""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import pikepdf
from pikepdf import Array, Dictionary, Name

# pikepdf will not write a null value into a dictionary: write this name, then swap in "null"
# padded to the same length (so the cross-reference offsets stay right).
_NULL = Name("/GfNullMark")
_NULL_BYTES = (b"/GfNullMark", b"null       ")
_TEXT = pikepdf.String("abc")


def _on_pages(key: str, value: Any) -> Callable[[pikepdf.Pdf], None]:
    def damage(pdf: pikepdf.Pdf) -> None:
        for page in pdf.pages:
            page.obj[key] = value

    return damage


def _on_tree(key: str, value: Any = None) -> Callable[[pikepdf.Pdf], None]:
    """Move ``key`` from every page up to /Pages (or put ``value`` there instead)."""

    def damage(pdf: pikepdf.Pdf) -> None:
        first = pdf.pages[0].obj.get(key)
        for page in pdf.pages:
            if key in page.obj:
                del page.obj[key]
        chosen = value if value is not None else first
        if chosen is not None:
            pdf.Root.Pages[key] = chosen

    return damage


def _no_boxes(pdf: pikepdf.Pdf) -> None:
    for page in pdf.pages:
        for key in ("/MediaBox", "/CropBox"):
            if key in page.obj:
                del page.obj[key]
    if "/MediaBox" in pdf.Root.Pages:
        del pdf.Root.Pages["/MediaBox"]


def _fonts(value: Any) -> Callable[[pikepdf.Pdf], None]:
    def damage(pdf: pikepdf.Pdf) -> None:
        for page in pdf.pages:
            resources = page.obj.get("/Resources")
            if isinstance(resources, Dictionary):
                resources["/Font"] = value
            else:
                page.obj["/Resources"] = Dictionary(Font=value)

    return damage


def _truncated_contents(pdf: pikepdf.Pdf) -> None:
    for page in pdf.pages:
        contents = page.obj.get("/Contents")
        for stream in list(contents) if isinstance(contents, Array) else [contents]:
            if isinstance(stream, pikepdf.Stream):
                raw = stream.read_raw_bytes()
                stream.write(raw[: len(raw) // 2], filter=stream.get("/Filter"), type_check=False)


def _drop_type(pdf: pikepdf.Pdf) -> None:
    for page in pdf.pages:
        if "/Type" in page.obj:
            del page.obj["/Type"]


DAMAGES: dict[str, Callable[[pikepdf.Pdf], None]] = {
    "mediabox-missing": _no_boxes,
    "mediabox-null": _on_pages("/MediaBox", _NULL),
    "mediabox-inverted": _on_pages("/MediaBox", Array([612, 792, 0, 0])),
    "mediabox-non-numeric": _on_pages("/MediaBox", Array([Name.a, Name.b, Name.c, Name.d])),
    "mediabox-string": _on_pages("/MediaBox", _TEXT),
    "mediabox-short": _on_pages("/MediaBox", Array([0, 0, 612])),
    "mediabox-empty-area": _on_pages("/MediaBox", Array([0, 0, 0, 0])),
    "cropbox-null": _on_pages("/CropBox", _NULL),
    "cropbox-non-numeric": _on_pages("/CropBox", Array([Name.a, 0, 1, 1])),
    "cropbox-inverted": _on_pages("/CropBox", Array([612, 792, 0, 0])),
    "cropbox-short": _on_pages("/CropBox", Array([0])),
    "rotate-name": _on_pages("/Rotate", Name.ninety),
    "rotate-null": _on_pages("/Rotate", _NULL),
    "rotate-45": _on_pages("/Rotate", 45),
    "rotate-negative": _on_pages("/Rotate", -90),
    "rotate-real": _on_pages("/Rotate", 90.5),
    "rotate-huge": _on_pages("/Rotate", 2**62),
    "rotate-string": _on_pages("/Rotate", _TEXT),
    "inherited-mediabox": _on_tree("/MediaBox"),
    "inherited-rotate": _on_tree("/Rotate", 90),
    "inherited-resources": _on_tree("/Resources"),
    "inherited-bad-mediabox": _on_tree("/MediaBox", _TEXT),
    "inherited-bad-cropbox": _on_tree("/CropBox", Array([Name.x])),
    "inherited-bad-rotate": _on_tree("/Rotate", Name.x),
    "inherited-bad-resources": _on_tree("/Resources", Array([1, 2])),
    "resources-array": _on_pages("/Resources", Array([1, 2])),
    "resources-integer": _on_pages("/Resources", 7),
    "resources-null": _on_pages("/Resources", _NULL),
    "font-integer": _fonts(3),
    "font-array": _fonts(Array([1])),
    "font-string": _fonts(_TEXT),
    "font-null": _fonts(_NULL),
    "contents-truncated": _truncated_contents,
    "contents-integer": _on_pages("/Contents", 5),
    "contents-dictionary": _on_pages("/Contents", Dictionary(A=1)),
    "contents-junk-array": _on_pages("/Contents", Array([1, Name.x])),
    "annots-integer": _on_pages("/Annots", 5),
    "page-type-missing": _drop_type,
}


def damaged(data: bytes, name: str) -> bytes | None:
    """``data`` with the damage ``name`` applied, or None when pikepdf cannot open or write it."""
    try:
        with pikepdf.open(io.BytesIO(data)) as pdf:
            DAMAGES[name](pdf)
            out = io.BytesIO()
            pdf.save(
                out,
                stream_decode_level=pikepdf.StreamDecodeLevel.none,
                object_stream_mode=pikepdf.ObjectStreamMode.disable,
                fix_metadata_version=False,
            )
            return out.getvalue().replace(*_NULL_BYTES)
    except Exception:
        return None
