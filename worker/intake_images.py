"""Images at intake: fax TIFFs (CCITT Group 3 / Group 4, one or many pages), PNG and JPEG become
PDF pages, one page per image frame, without loss.

Inbound fax arrives as TIFF (the fax's native format); providers' portals and phones send PNG
and JPEG. :func:`image_to_pdf` converts with img2pdf, which embeds the image data itself: a
JPEG's bytes go in as they are (``/DCTDecode``), a Group 4 TIFF's strip as ``/CCITTFaxDecode``,
a Group 3 TIFF or a PNG is re-encoded losslessly (Group 4 for bilevel images, Flate for the
rest). Nothing is resampled, and each page's size follows the image's resolution (fax: 204 x
196 dpi; 72 dpi when the file names none).

::

    sniffed kind (magic bytes, whatever the content type says) ──► not an image: None
    frames > max_pages, or a frame larger than max_pixels ──► ImageRejected (the reason)
    a frame does not decode (truncated, corrupt) ───────────► ImageRejected
    img2pdf cannot convert it ──────────────────────────────► ImageRejected (the reason)
    the PDF's page count != the frames ─────────────────────► ImageRejected

Reasons name sizes and limits, never image content. The conversion runs inside the bounded
document check (:mod:`worker.documents_check`): its memory and time limits hold here too.
"""

from __future__ import annotations

import io
import warnings

import img2pdf
from PIL import Image, UnidentifiedImageError

__all__ = [
    "IMAGE_CONTENT_TYPES",
    "MAX_PIXELS",
    "ImageRejected",
    "image_kind",
    "image_to_pdf",
]

IMAGE_CONTENT_TYPES = frozenset(
    {"image/tiff", "image/tif", "image/x-tiff", "image/png", "image/jpeg", "image/jpg"}
)
"""Content types read as images (a file whose bytes are an image is read as one anyway)."""

MAX_PIXELS = 120_000_000
"""Pixels (width x height) above which one frame is refused: an A4 page at 600 dpi has ~35 M."""

_MAGIC = (
    (b"II*\x00", "tiff"),
    (b"MM\x00*", "tiff"),
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"\xff\xd8\xff", "jpeg"),
)


class ImageRejected(Exception):
    """The image cannot become PDF pages; the message says why (sizes and limits only)."""


def image_kind(data: bytes) -> str | None:
    """ "tiff", "png" or "jpeg" from the file's first bytes, else None."""
    for magic, kind in _MAGIC:
        if data.startswith(magic):
            return kind
    return None


def image_to_pdf(
    data: bytes, *, max_pages: int = 5000, max_pixels: int = MAX_PIXELS
) -> tuple[bytes, int]:
    """The image file as a PDF with one page per frame, and that page count. Raises
    :class:`ImageRejected` when it cannot be converted or exceeds a limit."""
    kind = image_kind(data)
    if kind is None:
        raise ImageRejected("not an image: unknown format")
    frames = _frames(data, kind, max_pages, max_pixels)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # img2pdf warns about e.g. missing DPI: we accept it
            pdf = img2pdf.convert(data, rotation=img2pdf.Rotation.ifvalid)
    except Exception as exc:  # img2pdf raises its own and Pillow's errors
        raise ImageRejected(f"{kind} image cannot be converted: {type(exc).__name__}") from exc
    if not isinstance(pdf, bytes):  # pragma: no cover - img2pdf returns bytes without outputstream
        raise ImageRejected(f"{kind} image cannot be converted")
    pages = _pdf_pages(pdf)
    if pages != frames:
        raise ImageRejected(f"{kind} image: {frames} frame(s) became {pages} page(s)")
    return pdf, pages


def _frames(data: bytes, kind: str, max_pages: int, max_pixels: int) -> int:
    """Frames in the file, each checked against ``max_pixels`` from its header before it is
    decoded once to prove it is whole."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow's own bomb warning: our limit decides
            with Image.open(io.BytesIO(data)) as image:
                count = int(getattr(image, "n_frames", 1))
                if count > max_pages:
                    raise ImageRejected(f"too many pages: {count} > {max_pages}")
                for index in range(count):
                    image.seek(index)
                    width, height = image.size
                    if width * height > max_pixels:
                        raise ImageRejected(
                            f"{kind} image too large: frame {index + 1} has {width}x{height} "
                            f"pixels > {max_pixels}"
                        )
                    # Decode the frame: a truncated or corrupt image fails here, not in the
                    # reviewer's viewer (img2pdf embeds JPEG and Group 4 data unverified).
                    image.load()
                return count
    except ImageRejected:
        raise
    except (UnidentifiedImageError, Exception) as exc:  # Pillow: OSError, SyntaxError, ...
        raise ImageRejected(f"{kind} image unreadable: {type(exc).__name__}") from exc


def _pdf_pages(pdf: bytes) -> int:
    from pypdf import PdfReader

    return len(PdfReader(io.BytesIO(pdf)).pages)
