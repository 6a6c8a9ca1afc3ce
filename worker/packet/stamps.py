"""Footer stamps: ``<case_id> · page N of M`` on every page of a packet, added with pikepdf's
public API without decoding any original content stream."""

from __future__ import annotations

import io

import pikepdf
from pikepdf import Dictionary, Name
from reportlab.pdfbase.pdfmetrics import stringWidth

_STAMP_FONT = Name("/GFStampHelv")
_STAMP_SIZE = 8.0  # points
_STAMP_INSET = 18.0  # points from the visible bottom and right edges


def _pdf_string(text: str) -> bytes:
    raw = text.encode("cp1252", errors="replace")
    return b"(" + raw.replace(b"\\", b"\\\\").replace(b"(", b"\\(").replace(b")", b"\\)") + b")"


def _num(value: float) -> bytes:
    return f"{value:.2f}".rstrip("0").rstrip(".").encode()


def _stamp_pages(pdf: pikepdf.Pdf, case_id: str) -> None:
    """Add ``<case_id> · page N of M`` at the visible bottom right of every page, honouring
    /Rotate and the crop box, without touching the original content streams: a ``q`` stream is
    put before them and the stamp (which opens with the matching ``Q``) after them."""
    font = pdf.make_indirect(
        Dictionary(
            Type=Name.Font,
            Subtype=Name.Type1,
            BaseFont=Name.Helvetica,
            Encoding=Name.WinAnsiEncoding,
        )
    )
    save_state = pikepdf.Stream(pdf, b"q\n")  # one stream object, shared by every page
    total = len(pdf.pages)
    for number, page in enumerate(pdf.pages, start=1):
        box = page.cropbox  # falls back to the media box, inherited values included
        x0, y0, x1, y1 = (float(box[i]) for i in range(4))
        rotation = int(page.obj.get(Name.Rotate, 0)) % 360
        # Map a visually upright coordinate system (origin at the visible bottom left) onto
        # the page's user space.
        if rotation == 90:
            matrix, width = (0.0, 1.0, -1.0, 0.0, x1, y0), y1 - y0
        elif rotation == 180:
            matrix, width = (-1.0, 0.0, 0.0, -1.0, x1, y1), x1 - x0
        elif rotation == 270:
            matrix, width = (0.0, -1.0, 1.0, 0.0, x0, y1), y1 - y0
        else:
            matrix, width = (1.0, 0.0, 0.0, 1.0, x0, y0), x1 - x0
        text = f"{case_id} \u00b7 page {number} of {total}"
        text_width = stringWidth(text, "Helvetica", _STAMP_SIZE)
        x = max(_STAMP_INSET, width - _STAMP_INSET - text_width)
        stamp = (
            b"\nQ\nq "
            + b" ".join(_num(v) for v in matrix)
            + b" cm 0 g BT "
            + str(_STAMP_FONT).encode()
            + b" "
            + _num(_STAMP_SIZE)
            + b" Tf "
            + _num(x)
            + b" "
            + _num(_STAMP_INSET)
            + b" Td "
            + _pdf_string(text)
            + b" Tj ET Q\n"
        )
        # contents_add only rewrites the /Contents array; no stream is parsed or decoded.
        page.contents_add(save_state, prepend=True)
        page.contents_add(stamp)
        page.add_resource(font, Name.Font, _STAMP_FONT)


def save_stamped(pdf: pikepdf.Pdf, case_id: str) -> bytes:
    """``pdf`` with every page stamped, saved by qpdf with every stream kept as it is (never
    decoded nor recompressed: a bomb stays a small compressed stream). Changes ``pdf``."""
    _stamp_pages(pdf, case_id)
    out = io.BytesIO()
    pdf.save(
        out,
        stream_decode_level=pikepdf.StreamDecodeLevel.none,
        compress_streams=False,
        fix_metadata_version=False,
        deterministic_id=True,
    )
    return out.getvalue()


def stamped(merged: io.BytesIO, case_id: str) -> bytes:
    """The PDF in ``merged`` with every page stamped (:func:`save_stamped`)."""
    merged.seek(0)
    with pikepdf.open(merged) as pdf:
        return save_stamped(pdf, case_id)
