"""Quality rules on the text of received records: near-identical pages (duplicates and cloned
documentation), dates of service, and whether a document names the insured. Pure functions
over text; no I/O.

Pages are compared by the Jaccard similarity of their word shingles (``shingle_words``
consecutive words), estimated from MinHash signatures (``minhash_perm`` hash functions, the
same seeds everywhere, so signatures stored for one document compare with another's)::

    page text ──► normalized words ──► shingles ──► MinHash signature (stored per page)
    two signatures ──► share of equal slots ≈ Jaccard of the shingle sets

    documents whose every page matches (≥ duplicate_threshold) ──► "duplicate"
    a page matching another page (≥ clone_threshold) with a different date of service
      ──► "cloned" (copy-forwarded documentation: flagged for a person, never dropped)

A page with fewer than ``min_words`` words (a fax cover, a blank scan) has no signature.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

import numpy as np

__all__ = [
    "PDFIUM",
    "PYPDF",
    "PageSignature",
    "QASettings",
    "birth_date_forms",
    "cloned_pages",
    "dates_of_service",
    "is_duplicate",
    "mentions_insured",
    "page_signature",
    "similarity",
]

_MERSENNE = (1 << 61) - 1
_WORD = re.compile(r"[a-z0-9]+")


#: Which library read a page's text (worker/documents.py ``PageTexts.extractor``). Their
#: texts differ in spacing, line breaks and the order of pieces on a line, enough that
#: signatures of the same page made by the two agree on only ~86 % of slots (median over the
#: corpus, against 0.95 for a duplicate): signatures compare only with their own kind.
PDFIUM = "pdfium"
PYPDF = "pypdf"


@dataclass(frozen=True)
class QASettings:
    """Thresholds of the intake quality checks (``GOODFAITH_QA__*``)."""

    shingle_words: int = 5
    minhash_perm: int = 64
    min_words: int = 40  # pages with fewer words are not compared
    clone_threshold: float = 0.85  # estimated Jaccard at or above which a page is a clone
    duplicate_threshold: float = 0.95  # every page at least this similar: the same document
    #: the library that read the text signatures are made of (:data:`PDFIUM`, or
    #: :data:`PYPDF`, which read every document taken in before PDFium did): two libraries'
    #: texts of one page differ enough that only signatures of the same one compare
    text: str = PDFIUM


@dataclass(frozen=True)
class PageSignature:
    """One page: its MinHash signature (empty when the page has too few words) and the dates
    of service printed on it (ISO dates)."""

    minhash: tuple[int, ...]
    dates: tuple[str, ...]


def _words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def _seeds(count: int) -> list[tuple[int, int]]:
    out = []
    for index in range(count):
        digest = hashlib.blake2b(f"goodfaith-minhash-{index}".encode(), digest_size=16).digest()
        a = int.from_bytes(digest[:8], "big") % _MERSENNE or 1
        b = int.from_bytes(digest[8:], "big") % _MERSENNE
        out.append((a, b))
    return out


def page_signature(text: str, settings: QASettings = QASettings()) -> PageSignature:
    """The page's signature: MinHash of its word shingles, and its dates of service."""
    body, dates = _split_dates(text)
    words = _WORD.findall(body)  # _split_dates lowercased it
    k = settings.shingle_words
    if len(words) < max(settings.min_words, k):
        return PageSignature((), dates)
    encoded = [w.encode() for w in words]  # ASCII: the shingle's bytes are its text's
    blake2b, join = hashlib.blake2b, b" ".join
    shingles = {
        int.from_bytes(blake2b(join(encoded[i : i + k]), digest_size=8).digest(), "big")
        for i in range(len(words) - k + 1)
    }
    return PageSignature(_minhash(shingles, settings.minhash_perm), dates)


def _minhash(shingles: Iterable[int], perm: int) -> tuple[int, ...]:
    """For each of the ``perm`` hash functions ``(a·s + b) mod (2**61 - 1)``, its least value
    over the shingles ``s``: exactly the integers Python's arithmetic gives, computed on every
    shingle at once in 64-bit words (a 5 ms loop of ~20,000 multiplications a page in
    Python). A product of two 61-bit numbers needs 122 bits, so each is split in 31-bit
    halves (a = a₁·2³¹ + a₀) and, modulo the Mersenne prime, 2⁶¹ ≡ 1 folds the partial
    products back below 2⁶⁴ (see the comments)."""
    a, b = _seed_arrays(perm)
    s = np.fromiter((x % _MERSENNE for x in shingles), dtype=np.uint64)[None, :]
    a1, a0 = a >> _U31, a & _LOW31  # a₁ < 2³⁰, a₀ < 2³¹
    s1, s0 = s >> _U31, s & _LOW31
    mid = a1 * s0 + a0 * s1  # < 2⁶²; mid·2³¹ = (mid >> 30)·2⁶¹ + (mid mod 2³⁰)·2³¹
    x = (
        ((a1 * s1) << _U1)  # a₁s₁·2⁶² ≡ 2·a₁s₁ (< 2⁶¹)
        + (mid >> _U30)  # < 2³²
        + ((mid & _LOW30) << _U31)  # < 2⁶¹
        + a0 * s0  # < 2⁶²
        + b  # < 2⁶¹: the sum stays below 5·2⁶¹ + 2³² < 2⁶⁴
    )
    x = (x & _M61) + (x >> _U61)  # ≡ x (2⁶¹ ≡ 1), now below 2⁶¹ + 5
    x = np.where(x >= _M61, x - _M61, x)
    return tuple(int(v) for v in x.min(axis=1))


_M61 = np.uint64(_MERSENNE)
_LOW31 = np.uint64((1 << 31) - 1)
_LOW30 = np.uint64((1 << 30) - 1)
_U1, _U30, _U31, _U61 = (np.uint64(n) for n in (1, 30, 31, 61))
_SEED_ARRAYS: dict[int, tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]] = {}


def _seed_arrays(perm: int) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """The ``a`` and ``b`` of the ``perm`` hash functions, as columns."""
    if perm not in _SEED_ARRAYS:
        seeds = _seeds(perm)
        _SEED_ARRAYS[perm] = (
            np.array([a for a, _ in seeds], dtype=np.uint64)[:, None],
            np.array([b for _, b in seeds], dtype=np.uint64)[:, None],
        )
    return _SEED_ARRAYS[perm]


def similarity(a: Sequence[int], b: Sequence[int]) -> float:
    """Estimated Jaccard similarity of two pages (0.0 when either has no signature)."""
    if not a or not b or len(a) != len(b):
        return 0.0
    return sum(1 for x, y in zip(a, b, strict=True) if x == y) / len(a)


def is_duplicate(
    pages: Sequence[PageSignature],
    other: Sequence[PageSignature],
    settings: QASettings = QASettings(),
) -> bool:
    """The same document received twice: as many pages, each page near-identical to the
    other's page at the same place, and at least one page with text to compare."""
    if len(pages) != len(other) or not pages:
        return False
    compared = 0
    for mine, theirs in zip(pages, other, strict=True):
        if not mine.minhash and not theirs.minhash:
            continue
        if similarity(mine.minhash, theirs.minhash) < settings.duplicate_threshold:
            return False
        compared += 1
    return compared > 0


def cloned_pages(
    pages: Sequence[PageSignature],
    others: Iterable[tuple[str, Sequence[PageSignature]]],
    settings: QASettings = QASettings(),
) -> list[tuple[int, str, int]]:
    """Pages of a document that repeat another page (of itself, or of another document of
    the same case, named by its key in ``others``) under a different date of service:
    ``(page, other document, other page)``, 1-based. Pages without dates are not judged."""
    found: list[tuple[int, str, int]] = []
    candidates = [("", pages), *others]
    for number, page in enumerate(pages, start=1):
        if not page.minhash or not page.dates:
            continue
        for key, signatures in candidates:
            hit = None
            for other_number, other in enumerate(signatures, start=1):
                if key == "" and other_number == number:
                    continue
                if not other.minhash or not other.dates or set(other.dates) == set(page.dates):
                    continue
                if similarity(page.minhash, other.minhash) >= settings.clone_threshold:
                    hit = (number, key, other_number)
                    break
            if hit:
                found.append(hit)
                break
    return found


_DATE_LABEL = r"(?:date\s+of\s+service|service\s+date|dos|visit\s+date|date\s+of\s+visit)"
#: A labelled date of service, on lowercased text (a case-insensitive pattern that opens on
#: an alternation is tried at every character: 25× slower on a page of notes), as
#: year-month-day (groups 1–3) or month/day/year (groups 4–6)
_DATES = re.compile(
    _DATE_LABEL + r"\s*[:#]?\s*(?:(\d{4})-(\d{1,2})-(\d{1,2})|(\d{1,2})[/-](\d{1,2})[/-](\d{4}))"
)


def _split_dates(text: str) -> tuple[str, tuple[str, ...]]:
    """The text lowercased with its labelled dates of service blanked out (a cloned note
    differs from its source in little more than the date, which must not make it look
    different), and those dates as ISO dates, sorted, each once."""
    lowered = text.lower()
    found: set[str] = set()
    pieces: list[str] = []
    last = 0
    for match in _DATES.finditer(lowered):
        g = match.groups()
        year, month, day = (g[0], g[1], g[2]) if g[0] is not None else (g[5], g[3], g[4])
        with contextlib.suppress(ValueError):  # "DOS 13/45/2025": no date, and no words
            found.add(date(int(year), int(month), int(day)).isoformat())
        pieces += (lowered[last : match.start()], " ")
        last = match.end()
    pieces.append(lowered[last:])
    return "".join(pieces), tuple(sorted(found))


def dates_of_service(text: str) -> tuple[str, ...]:
    """ISO dates labelled as dates of service ("Date of service: 2025-03-04", "DOS 3/4/2025")."""
    return _split_dates(text)[1]


def birth_date_forms(birth_date: str) -> list[str]:
    """How a birth date given as ISO ("1961-04-12") is printed on records: 1961-04-12,
    04/12/1961, 4/12/1961, 04-12-1961, 4-12-1961. Empty for a date that does not parse."""
    try:
        day = date.fromisoformat(birth_date)
    except ValueError:
        return []
    m, d, y = day.month, day.day, day.year
    forms = {day.isoformat(), f"{m:02d}/{d:02d}/{y}", f"{m}/{d}/{y}"}
    forms |= {f"{m:02d}-{d:02d}-{y}", f"{m}-{d}-{y}"}
    return sorted(forms)


def mentions_insured(text: str, name: str, birth_date: str, member_id: str = "") -> bool:
    """Whether ``text`` names the insured: the family name with a given name or initial, in
    either order ("Jane Roe", "ROE, JANE", "Roe, J."), or the birth date in a common form,
    or the member id. Case and spacing are ignored."""
    flat = " ".join(_words(text))
    spaced = re.sub(r"\s+", " ", text)
    if member_id and member_id.strip() and member_id.strip().lower() in spaced.lower():
        return True
    if any(form in spaced for form in birth_date_forms(birth_date)):
        return True
    names = _words(name)
    if len(names) < 2:
        return bool(names) and f" {names[0]} " in f" {flat} "
    given, family = names[0], names[-1]
    padded = f" {flat} "
    if f" {given} {family} " in padded or f" {family} {given} " in padded:
        return True
    initial = given[0]
    return f" {family} {initial} " in padded or f" {initial} {family} " in padded
