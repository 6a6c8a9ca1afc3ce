"""PDFium (pypdfium2) for the document checks: one thread at a time in a process.

PDFium is not thread-safe, not even across documents: two threads in it at once corrupt its
heap (a segfault or "double free" ends the process; seen with four threads rendering
different documents). A checking process (worker/documents_check.py) is single-threaded, but
a check run in the caller's process (``DocumentSettings.isolated=False``) may run on several
worker threads at once, so every use of PDFium here holds :data:`LOCK` from opening a document
to closing it.
"""

from __future__ import annotations

import threading

__all__ = ["LOCK", "page_text"]

#: Held around every PDFium call of this process (from opening a document to closing it).
LOCK = threading.Lock()


def page_text(pdf: object, index: int) -> str:
    """The text of page ``index`` (0-based) of an open ``pypdfium2.PdfDocument``, in reading
    order, lines joined by ``\\n``. All of it, also what lies off the page (as pypdf reads
    it; a line running past the right edge is not cut). A hyphen PDFium marks at a line's
    end (U+FFFE) is written as ``-``. Call it holding :data:`LOCK`; raises
    ``pypdfium2.PdfiumError`` when the page cannot be read."""
    import pypdfium2 as pdfium

    assert isinstance(pdf, pdfium.PdfDocument)
    page = pdf[index]
    try:
        textpage = page.get_textpage()
        try:
            text = str(textpage.get_text_range())
        finally:
            textpage.close()
    finally:
        page.close()
    return text.replace("\r\n", "\n").replace("\r", "\n").replace("\ufffe", "-")
