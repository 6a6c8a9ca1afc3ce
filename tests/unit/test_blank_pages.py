"""Pages that show nothing: nothing to draw (no content), or drawn but rendered white by
PDFium (a scan of a white sheet, content painted white). Generated documents, no corpus."""

from __future__ import annotations

import io

from PIL import Image
from reportlab.pdfgen.canvas import Canvas

from worker.documents_check import blank_pages, renders_blank, structurally_blank


def _text_pages(*pages: list[str]) -> bytes:
    buffer = io.BytesIO()
    canvas = Canvas(buffer, invariant=True)
    for lines in pages:
        for n, line in enumerate(lines):
            canvas.drawString(72, 720 - 14 * n, line)
        canvas.showPage()
    canvas.save()
    return buffer.getvalue()


def _painted_white() -> bytes:
    """A page whose content draws a white rectangle over white: content, nothing visible."""
    buffer = io.BytesIO()
    canvas = Canvas(buffer, invariant=True)
    canvas.setFillColorRGB(1, 1, 1)
    canvas.rect(50, 50, 500, 700, fill=1, stroke=0)
    canvas.showPage()
    canvas.save()
    return buffer.getvalue()


def _scan(specks: int) -> bytes:
    """A 200 dpi greyscale scan of a white sheet with ``specks`` black dust pixels."""
    image = Image.new("L", (1700, 2200), 255)
    for n in range(specks):
        image.putpixel((100 + 37 * n % 1500, 100 + 53 * n % 2000), 0)
    buffer = io.BytesIO()
    image.save(buffer, "PDF", resolution=200)
    return buffer.getvalue()


def test_pages_of_text_are_not_blank_even_a_single_short_line() -> None:
    data = _text_pages(["Progress note: patient seen, lumbar pain."], ["Page two."])
    assert blank_pages(data) == ()


def test_content_that_draws_nothing_visible_is_blank() -> None:
    """It has a content stream (structurally not blank) but renders white."""
    data = _painted_white()
    assert structurally_blank(data) == ()
    assert blank_pages(data) == (1,)


def test_a_scan_of_a_white_sheet_is_blank_dust_and_all() -> None:
    assert blank_pages(_scan(specks=40)) == (1,)


def test_only_the_blank_page_of_a_document_is_named() -> None:
    """A records document with a white scan in the middle: that page alone, 1-based."""
    import pikepdf

    merged = pikepdf.Pdf.new()
    for part in (_text_pages(["Visit 1"]), _scan(specks=3), _text_pages(["Visit 2"])):
        with pikepdf.open(io.BytesIO(part)) as src:
            merged.pages.extend(src.pages)
    out = io.BytesIO()
    merged.save(out)
    assert blank_pages(out.getvalue()) == (2,)


def test_rendering_is_bounded_by_pages_and_time() -> None:
    """Only the first ``max_pages`` are rendered; a spent budget renders none; pages already
    known blank are skipped; a file PDFium cannot open is not called blank."""
    white = _painted_white()
    assert renders_blank(white, set(), max_pages=0, budget_seconds=10) == []
    assert renders_blank(white, set(), max_pages=1, budget_seconds=-1) == []
    assert renders_blank(white, {1}, max_pages=1, budget_seconds=10) == []
    assert renders_blank(b"%PDF-1.4 not really", set(), max_pages=5, budget_seconds=5) == []
