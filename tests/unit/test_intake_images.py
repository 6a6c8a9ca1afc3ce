"""Fax TIFFs (CCITT Group 3 and 4, many pages), PNG and JPEG become PDF pages at intake, one
page per frame, without loss (worker/intake_images.py). Every image is made here with Pillow."""

from __future__ import annotations

import io

import pikepdf
import pytest
from PIL import Image, ImageChops, ImageDraw

from config.settings import DocumentSettings
from tests.unit.test_packet import COVER
from worker.documents import check_document
from worker.documents_check import DocumentChecker
from worker.intake_images import ImageRejected, image_kind, image_to_pdf
from worker.packet import PacketPart, build_packet

FAX_DPI = (204, 196)  # fine-mode fax resolution


def fax_frames(count: int, size: tuple[int, int] = (1728, 2200)) -> list[Image.Image]:
    """Bilevel fax pages, each with its own marks (so a page swap would show)."""
    frames = []
    for index in range(count):
        image = Image.new("1", size, 1)
        draw = ImageDraw.Draw(image)
        draw.text((100, 120), f"Progress note page {index + 1}", fill=0)
        draw.rectangle((200, 400 + 30 * index, 900, 460 + 30 * index), fill=0)
        draw.line((0, 0, size[0] - 1, size[1] - 1), fill=0, width=3)
        frames.append(image)
    return frames


def tiff(frames: list[Image.Image], compression: str) -> bytes:
    out = io.BytesIO()
    frames[0].save(
        out,
        format="TIFF",
        save_all=True,
        append_images=frames[1:],
        compression=compression,
        dpi=FAX_DPI,
    )
    return out.getvalue()


def _page_images(pdf: bytes) -> list[tuple[str, Image.Image, pikepdf.PdfImage]]:
    out = []
    with pikepdf.open(io.BytesIO(pdf)) as doc:
        for page in doc.pages:
            [raw] = list(page.resources.XObject.values())
            image = pikepdf.PdfImage(raw)
            out.append((str(raw.get("/Filter")), image.as_pil_image(), image))
    return out


def _same_pixels(a: Image.Image, b: Image.Image) -> bool:
    return (
        a.size == b.size and ImageChops.difference(a.convert("L"), b.convert("L")).getbbox() is None
    )


@pytest.mark.parametrize("compression", ["group4", "group3"])
def test_multi_page_fax_tiff_becomes_one_pdf_page_per_frame_without_loss(compression: str) -> None:
    """A 5-page CCITT fax TIFF is accepted with 5 pages; each page holds its frame's exact pixels
    as a CCITT image, on a page sized by the fax resolution."""
    frames = fax_frames(5)
    data = tiff(frames, compression)
    check = check_document(data, "image/tiff")
    assert (check.accepted, check.pages, check.converted) == (True, 5, "tiff")
    assert check.reason is None and check.data.startswith(b"%PDF")
    pages = _page_images(check.data)
    assert len(pages) == 5
    for (filter_name, image, _), frame in zip(pages, frames, strict=True):
        assert "CCITTFaxDecode" in filter_name
        assert _same_pixels(image, frame)
    with pikepdf.open(io.BytesIO(check.data)) as doc:
        width, height = (float(v) for v in list(doc.pages[0].mediabox)[2:])
    assert width == pytest.approx(1728 / FAX_DPI[0] * 72, abs=0.5)
    assert height == pytest.approx(2200 / FAX_DPI[1] * 72, abs=0.5)


def test_fax_tiff_labelled_octet_stream_is_read_by_its_bytes() -> None:
    """Fax vendors label media application/octet-stream: the TIFF is recognized by its bytes."""
    check = check_document(tiff(fax_frames(2), "group4"), "application/octet-stream")
    assert (check.accepted, check.pages, check.converted) == (True, 2, "tiff")


@pytest.mark.parametrize("mode", ["RGB", "L", "1"])
def test_png_keeps_its_exact_pixels(mode: str) -> None:
    """A PNG becomes one page with the same pixels (Flate / CCITT, never lossy)."""
    source = Image.new("RGB", (640, 480), (250, 250, 250))
    ImageDraw.Draw(source).rectangle((50, 60, 300, 200), fill=(200, 30, 40))
    source = source.convert(mode)
    out = io.BytesIO()
    source.save(out, format="PNG")
    check = check_document(out.getvalue(), "image/png")
    assert (check.accepted, check.pages, check.converted) == (True, 1, "png")
    [(filter_name, image, _)] = _page_images(check.data)
    assert "DCT" not in filter_name
    assert image.mode == source.mode or mode == "1"
    assert ImageChops.difference(image.convert("RGB"), source.convert("RGB")).getbbox() is None


def test_jpeg_is_embedded_as_it_is() -> None:
    """A JPEG's own bytes are the page's image stream (no re-compression)."""
    source = Image.new("RGB", (800, 600), (20, 120, 220))
    out = io.BytesIO()
    source.save(out, format="JPEG", quality=80)
    data = out.getvalue()
    check = check_document(data, "image/jpeg")
    assert (check.accepted, check.pages, check.converted) == (True, 1, "jpeg")
    with pikepdf.open(io.BytesIO(check.data)) as doc:
        [raw] = list(doc.pages[0].resources.XObject.values())
        assert str(raw.get("/Filter")) == "/DCTDecode"
        assert raw.read_raw_bytes() == data


def test_converted_images_go_into_a_packet_that_passes_qpdf() -> None:
    """TIFF, PNG and JPEG pages merge and stamp like any PDF (the suite's qpdf check runs)."""
    png = io.BytesIO()
    Image.new("L", (300, 300), 128).save(png, format="PNG")
    parts = []
    for name, data in (("fax", tiff(fax_frames(3), "group4")), ("png", png.getvalue())):
        check = check_document(data)
        assert check.accepted, check.reason
        parts.append(PacketPart("records", name, check.data, check.sha256, "P-1", name))
    built = build_packet(COVER, parts)
    assert built.manifest["excluded"] == []
    assert [p["pages"] for p in built.manifest["parts"]] == [3, 1]


def test_the_original_hash_is_kept() -> None:
    """The hash is of the image as received; data is the PDF made from it."""
    import hashlib

    data = tiff(fax_frames(1), "group4")
    check = check_document(data)
    assert check.sha256 == hashlib.sha256(data).hexdigest()
    assert check.data != data


def test_too_many_frames_are_quarantined() -> None:
    """A TIFF with more frames than max_pages is quarantined like a PDF with too many pages."""
    check = check_document(tiff(fax_frames(4, (200, 200)), "group4"), max_pages=3)
    assert (check.accepted, check.reason) == (False, "too many pages: 4 > 3")


def test_a_frame_past_the_pixel_limit_is_refused() -> None:
    """A frame larger than max_pixels is refused from its header, before any decoding."""
    with pytest.raises(ImageRejected, match=r"tiff image too large: frame 1 has 1728x2200"):
        image_to_pdf(tiff(fax_frames(1), "group4"), max_pixels=1_000_000)


@pytest.mark.parametrize("kind", ["tiff", "png", "jpeg"])
def test_truncated_images_are_quarantined_with_a_reason(kind: str) -> None:
    """A damaged image is quarantined naming its kind, never an exception."""
    out = io.BytesIO()
    image = Image.new("RGB", (400, 400), (1, 2, 3))
    ImageDraw.Draw(image).ellipse((10, 10, 300, 300), fill=(200, 100, 0))
    if kind == "tiff":
        image.convert("1").save(out, format="TIFF", compression="group4")
    else:
        image.save(out, format=kind.upper())
    data = out.getvalue()
    check = check_document(data[: len(data) // 3])
    assert not check.accepted
    assert check.reason is not None and check.reason.startswith(f"{kind} image ")


def test_image_kind_reads_magic_bytes() -> None:
    """TIFF (both byte orders), PNG and JPEG are told by their first bytes; a PDF is not one."""
    assert image_kind(b"II*\x00rest") == image_kind(b"MM\x00*rest") == "tiff"
    assert image_kind(b"\x89PNG\r\n\x1a\n") == "png"
    assert image_kind(b"\xff\xd8\xff\xe0") == "jpeg"
    assert image_kind(b"%PDF-1.7") is None


def test_the_bounded_check_converts_a_fax_in_its_child_process() -> None:
    """The worker's bounded check (a child process with limits) accepts a fax TIFF too."""
    checker = DocumentChecker(DocumentSettings())
    found = checker.inspect(tiff(fax_frames(2), "group4"), "image/tiff")
    assert (found.check.accepted, found.check.pages, found.check.converted) == (True, 2, "tiff")
