"""Intake checks of inbound documents (worker/documents.py) on generated and hand-made PDFs."""

from __future__ import annotations

import hashlib
import io
import re

import pikepdf
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pypdf import PdfReader, PdfWriter
from reportlab.pdfgen.canvas import Canvas

from simulator.documents import (
    generate_authorization_pdf,
    generate_eoc_pdf,
    generate_no_records_letter,
    generate_records_pdf,
)
from worker.documents import (
    MAX_TEXT_STREAM_BYTES,
    REFERENCE_RE,
    check_document,
    extract_reference,
    is_no_records_reply,
)

REF = "GF-7K3M9Q2P"


def _text_pdf(lines_per_page: list[list[str]]) -> bytes:
    buffer = io.BytesIO()
    canvas = Canvas(buffer, invariant=True)
    for lines in lines_per_page:
        y = 760.0
        for line in lines:
            canvas.drawString(72, y, line)
            y -= 14
        canvas.showPage()
    canvas.save()
    return buffer.getvalue()


def _encrypted(user_password: str, owner_password: str) -> bytes:
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(generate_records_pdf(REF, "A", "M", 3))))
    writer.encrypt(user_password=user_password, owner_password=owner_password, algorithm="AES-256")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


@pytest.fixture(scope="module")
def records() -> bytes:
    return generate_records_pdf(REF, "Acme Clinic", "M0001", 5)


# --- simulator documents ---------------------------------------------------------------------


def test_generated_documents_have_the_requested_page_counts() -> None:
    """The simulator's generators produce exactly the page counts asked for."""
    counts = {
        "records": len(PdfReader(io.BytesIO(generate_records_pdf(REF, "A", "M", 7))).pages),
        "cover only": len(PdfReader(io.BytesIO(generate_records_pdf(REF, "A", "M", 1))).pages),
        "no records": len(PdfReader(io.BytesIO(generate_no_records_letter(REF, "A"))).pages),
        "eoc": len(PdfReader(io.BytesIO(generate_eoc_pdf("PLAN-1", pages=4))).pages),
        "auth": len(PdfReader(io.BytesIO(generate_authorization_pdf("M", "Jane Doe"))).pages),
    }
    assert counts == {"records": 7, "cover only": 1, "no records": 1, "eoc": 4, "auth": 1}


def test_generated_records_are_deterministic() -> None:
    """Same arguments give byte-identical PDFs; another reference gives different bytes."""
    assert generate_records_pdf(REF, "A", "M", 4) == generate_records_pdf(REF, "A", "M", 4)
    assert generate_records_pdf(REF, "A", "M", 4) != generate_records_pdf(
        "GF-00000000", "A", "M", 4
    )


def test_generated_records_contain_progress_notes(records: bytes) -> None:
    """Pages after the fax cover are progress notes with a date of service."""
    text = PdfReader(io.BytesIO(records)).pages[1].extract_text()
    assert "Progress note" in text
    assert "Date of service:" in text


# --- extract_reference -----------------------------------------------------------------------


def test_reference_pattern_is_gf_and_eight_characters() -> None:
    """REFERENCE_RE matches GF- plus 8 digits/capitals and nothing shorter."""
    assert REFERENCE_RE.fullmatch(REF)
    assert not REFERENCE_RE.fullmatch("GF-7K3M9Q2")
    assert not REFERENCE_RE.fullmatch("gf-7k3m9q2p")


def test_extract_reference_reads_the_fax_cover(records: bytes) -> None:
    """The reference printed on a records reply's fax cover is found."""
    assert extract_reference(records) == REF


def test_extract_reference_reads_page_two_but_not_page_three() -> None:
    """Only the first two pages are searched."""
    on_two = _text_pdf([["fax cover"], [f"Re: {REF}"], ["notes"]])
    on_three = _text_pdf([["fax cover"], ["notes"], [f"Re: {REF}"]])
    assert extract_reference(on_two) == REF
    assert extract_reference(on_three) is None


def _padded_content(data: bytes, stored_bytes: int) -> bytes:
    """``data`` with a comment-only content stream of ``stored_bytes`` (stored unfiltered)
    appended to its first page."""
    out = io.BytesIO()
    with pikepdf.open(io.BytesIO(data)) as pdf:
        pdf.pages[0].contents_add(b"%" + b"x" * (stored_bytes - 2) + b"\n")
        pdf.save(out, compress_streams=False)
    return out.getvalue()


def test_text_of_a_page_with_oversized_content_streams_is_not_read() -> None:
    """A page whose content streams, as stored, exceed MAX_TEXT_STREAM_BYTES gives no text; just
    under the limit it is read."""
    page = _text_pdf([[f"Re: {REF}"]])
    assert extract_reference(_padded_content(page, MAX_TEXT_STREAM_BYTES - 4096)) == REF
    assert extract_reference(_padded_content(page, MAX_TEXT_STREAM_BYTES + 1)) is None


def test_extract_reference_ignores_longer_tokens() -> None:
    """A reference-like piece of a longer token (GF-XXXXXXXXX9) is not a reference."""
    assert extract_reference(_text_pdf([[f"Account {REF}9 and X{REF}"]])) is None


@pytest.mark.parametrize(
    "data",
    [b"", b"not a pdf at all", b"%PDF-1.7\n garbage", b"\x00" * 300],
    ids=["empty", "text", "header-only", "zeros"],
)
def test_extract_reference_returns_none_for_junk(data: bytes) -> None:
    """Unreadable input gives None, not an exception."""
    assert extract_reference(data) is None


def test_extract_reference_finds_reference_in_repairable_file(records: bytes) -> None:
    """A truncated reply that pikepdf can repair still yields its reference."""
    cut = records[: int(len(records) * 0.97)]
    assert extract_reference(cut) == REF


# --- is_no_records_reply ---------------------------------------------------------------------


def test_no_records_letter_is_recognised() -> None:
    """The simulator's one-page "No records" letter is a no-records reply."""
    assert is_no_records_reply(generate_no_records_letter(REF, "Acme Clinic"))


@pytest.mark.parametrize(
    "sentence",
    [
        "We do not have any medical records for this patient.",
        "Our office does not maintain records for the individual named.",
        "After a search we were unable to locate any records.",
        "There is no record of this patient at our practice.",
    ],
)
def test_no_records_phrasings_are_recognised(sentence: str) -> None:
    """Common ways of saying "we hold no records" in a short letter are recognised."""
    assert is_no_records_reply(_text_pdf([[f"Re: {REF}", sentence]]))


def test_records_reply_is_not_a_no_records_reply(records: bytes) -> None:
    """A records reply is not mistaken for a no-records letter."""
    assert not is_no_records_reply(records)


def test_long_document_mentioning_no_records_is_not_a_reply() -> None:
    """More than 3 pages is a records document even when it says "no records" somewhere."""
    pages = [["No records of allergies."], ["note"], ["note"], ["note"]]
    assert is_no_records_reply(_text_pdf(pages[:1]))
    assert not is_no_records_reply(_text_pdf(pages))


@pytest.mark.parametrize("data", [b"", b"No records", b"%PDF-1.4 broken"], ids=["e", "t", "h"])
def test_no_records_reply_is_false_for_junk(data: bytes) -> None:
    """Unreadable input (even bare text saying "No records") gives False, not an exception."""
    assert is_no_records_reply(data) is False


# --- check_document --------------------------------------------------------------------------


def test_readable_pdf_is_accepted_unchanged(records: bytes) -> None:
    """A readable PDF is accepted as is, with its page count and the SHA-256 of its bytes."""
    check = check_document(records)
    assert check.accepted and check.reason is None
    assert check.pages == 5
    assert check.data is records
    assert not check.repaired and not check.decrypted
    assert check.sha256 == hashlib.sha256(records).hexdigest()


def test_truncated_pdf_is_repaired(records: bytes) -> None:
    """A PDF cut short (pypdf fails) is repaired by pikepdf; sha256 stays that of the original."""
    cut = records[: len(records) - 400]
    with pytest.raises(Exception):  # noqa: B017 - pins that pypdf alone fails here
        len(PdfReader(io.BytesIO(cut)).pages)
    check = check_document(cut)
    assert check.accepted, check.reason
    assert check.repaired
    assert check.sha256 == hashlib.sha256(cut).hexdigest()
    assert check.data != cut
    assert len(PdfReader(io.BytesIO(check.data)).pages) == check.pages == 5


def test_encrypted_without_password_is_quarantined() -> None:
    """A file with a user password and none given is quarantined as encrypted."""
    check = check_document(_encrypted("secret", "owner"))
    assert not check.accepted
    assert check.reason == "encrypted: no password"


def test_encrypted_with_wrong_password_is_quarantined() -> None:
    """Wrong passwords are tried and the file is quarantined, naming how many were tried."""
    check = check_document(_encrypted("secret", "owner"), passwords=["nope", "also-no"])
    assert not check.accepted
    assert check.reason == "encrypted: none of 2 password(s) fit"


def test_encrypted_with_right_password_gives_decrypted_copy() -> None:
    """With the right password the file is accepted and ``data`` is an unencrypted copy."""
    original = _encrypted("secret", "owner")
    check = check_document(original, passwords=["wrong", "secret"])
    assert check.accepted, check.reason
    assert check.decrypted and check.pages == 3
    assert check.sha256 == hashlib.sha256(original).hexdigest()
    reader = PdfReader(io.BytesIO(check.data))
    assert not reader.is_encrypted
    assert extract_reference(check.data) == REF


def test_owner_password_only_file_opens_without_password() -> None:
    """Permissions-only encryption (empty user password) is accepted with no password given."""
    check = check_document(_encrypted("", "owner-only"))
    assert check.accepted, check.reason
    assert check.decrypted
    assert not PdfReader(io.BytesIO(check.data)).is_encrypted


@pytest.mark.parametrize(
    ("data", "content_type", "reason"),
    [
        (b"hello, this is a text file", "application/pdf", "not a PDF: no PDF header or objects"),
        (b"%PDF-1.4 whatever", "image/tiff", "not a PDF: content type image/tiff"),
        (b"", "application/pdf", "not a PDF: empty"),
    ],
    ids=["text", "tiff", "empty"],
)
def test_non_pdfs_are_quarantined(data: bytes, content_type: str, reason: str) -> None:
    """Inputs that are not PDFs are quarantined with a "not a PDF" reason."""
    check = check_document(data, content_type)
    assert (check.accepted, check.reason) == (False, reason)


def test_content_type_parameters_are_ignored(records: bytes) -> None:
    """ "application/pdf; name=x.pdf" counts as a PDF content type."""
    assert check_document(records, "Application/PDF; name=reply.pdf").accepted


def test_oversized_input_is_quarantined(records: bytes) -> None:
    """More than max_bytes is quarantined as too large before any parsing."""
    check = check_document(records, max_bytes=1000)
    assert not check.accepted
    assert check.reason is not None and check.reason.startswith("too large")


def test_too_many_pages_is_quarantined(records: bytes) -> None:
    """More than max_pages is quarantined."""
    check = check_document(records, max_pages=4)
    assert not check.accepted
    assert check.reason == "too many pages: 5 > 4"


def test_pdf_without_pages_is_quarantined() -> None:
    """A structurally valid PDF with an empty page tree is quarantined as "no pages"."""
    out = io.BytesIO()
    PdfWriter().write(out)
    check = check_document(out.getvalue())
    assert (check.accepted, check.reason) == (False, "no pages")


def test_garbage_after_header_is_unreadable() -> None:
    """A PDF header followed by garbage is quarantined as unreadable, naming both failures."""
    check = check_document(b"%PDF-1.7\n" + bytes(range(256)) * 4)
    assert not check.accepted
    assert check.reason is not None
    assert check.reason.startswith("unreadable: ") and "repair failed" in check.reason


def test_quarantine_keeps_original_bytes_and_hash() -> None:
    """A quarantined check carries the original bytes and their SHA-256 for the audit trail."""
    data = b"%PDF-1.7\n junk"
    check = check_document(data)
    assert check.data == data
    assert check.sha256 == hashlib.sha256(data).hexdigest()
    assert check.pages == 0


def test_accepted_document_appends_to_a_writer(records: bytes) -> None:
    """What check_document accepts appends to a PdfWriter with its page count."""
    check = check_document(records[:-300])
    assert check.accepted and check.repaired
    writer = PdfWriter()
    writer.append(PdfReader(io.BytesIO(check.data)))
    assert len(writer.pages) == check.pages


_SMALL = generate_records_pdf(REF, "A", "M", 2)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(st.integers(0, len(_SMALL) - 1), st.integers(0, 255)), min_size=1, max_size=12
    ),
    st.integers(100, len(_SMALL)),
)
def test_corrupted_pdfs_never_raise(flips: list[tuple[int, int]], keep: int) -> None:
    """Randomly corrupted and truncated PDFs give a verdict from every intake function, never an
    exception, and an accepted one always appends to a writer."""
    data = bytearray(_SMALL[:keep])
    for position, value in flips:
        if position < len(data):
            data[position] = value
    blob = bytes(data)
    check = check_document(blob)
    assert check.accepted == (check.reason is None)
    if check.accepted:
        writer = PdfWriter()
        writer.append(PdfReader(io.BytesIO(check.data)))
        assert len(writer.pages) == check.pages > 0
    # A flip inside the (uncompressed) reference text makes another well-formed reference.
    spans = [
        (m.start(), m.start() + len(REF)) for m in re.finditer(re.escape(REF.encode()), _SMALL)
    ]
    touched = any(a <= p < b for p, _ in flips for a, b in spans)
    found = extract_reference(blob)
    assert found in (None, REF) or (touched and REFERENCE_RE.fullmatch(found))
    assert is_no_records_reply(blob) in (True, False)


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=2000))
def test_random_bytes_never_raise(blob: bytes) -> None:
    """Arbitrary bytes are quarantined or accepted, never an exception."""
    check = check_document(blob)
    assert check.accepted == (check.reason is None)
    assert extract_reference(blob) is None or REFERENCE_RE.fullmatch(extract_reference(blob) or "")
    assert is_no_records_reply(blob) in (True, False)
