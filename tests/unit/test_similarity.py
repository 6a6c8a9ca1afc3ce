"""The pure quality rules (worker/domain/similarity.py): shingles and MinHash, dates of service,
duplicates, cloned pages and whether text names the insured."""

from __future__ import annotations

import random
import re
from datetime import date

from worker.domain.similarity import (
    QASettings,
    birth_date_forms,
    cloned_pages,
    dates_of_service,
    is_duplicate,
    mentions_insured,
    page_signature,
    similarity,
)

_VOCAB = [
    "patient",
    "reports",
    "pain",
    "improved",
    "therapy",
    "knee",
    "lumbar",
    "exam",
    "strength",
    "reflexes",
    "normal",
    "plan",
    "follow",
    "weeks",
    "imaging",
    "reviewed",
    "mild",
    "moderate",
    "severe",
    "swelling",
    "gait",
    "stable",
    "medication",
    "dose",
    "increase",
    "decrease",
    "referral",
    "surgery",
    "consult",
    "discussed",
    "options",
    "risks",
    "benefits",
    "agrees",
]


def _note(seed: int, words: int = 120) -> str:
    rng = random.Random(seed)
    return " ".join(rng.choice(_VOCAB) for _ in range(words))


def test_identical_text_has_similarity_one_and_unrelated_text_is_low() -> None:
    """The same text gives the same signature; two unrelated notes share few shingles."""
    a, b = page_signature(_note(1)), page_signature(_note(2))
    assert similarity(a.minhash, page_signature(_note(1)).minhash) == 1.0
    assert similarity(a.minhash, b.minhash) < 0.2


def test_a_few_changed_words_stay_near_identical() -> None:
    """A copy-forwarded note with two words changed out of 200 stays above the threshold."""
    words = _note(3, 200).split()
    edited = list(words)
    edited[50], edited[150] = "zebra", "quokka"
    score = similarity(
        page_signature(" ".join(words)).minhash, page_signature(" ".join(edited)).minhash
    )
    assert score >= QASettings().clone_threshold


def test_short_pages_have_no_signature() -> None:
    """A fax cover with a handful of words is never compared."""
    assert page_signature("FAX to records, 3 pages").minhash == ()


def test_dates_of_service_in_common_forms() -> None:
    """ISO and US dates after a date-of-service label are read; other dates are not."""
    text = "Date of service: 2025-03-04\nDOS 3/18/2025\nBorn 1961-04-12\nVisit date: 04-01-2025"
    assert dates_of_service(text) == ("2025-03-04", "2025-03-18", "2025-04-01")


def test_a_cloned_page_is_found_under_another_date_and_not_under_the_same() -> None:
    """The same note body under a different date of service is cloned; repeated under the
    same date (a reprint) it is not; pages without dates are not judged."""
    body = _note(4, 150)
    first = page_signature(f"Date of service: 2025-01-06\n{body}")
    copied = page_signature(f"Date of service: 2025-02-03\n{body}")
    reprint = page_signature(f"Date of service: 2025-01-06\n{body}")
    other = page_signature(f"Date of service: 2025-03-03\n{_note(5, 150)}")
    undated = page_signature(body)
    assert cloned_pages([first, other, copied], []) == [(1, "", 3), (3, "", 1)]
    assert cloned_pages([first, reprint], []) == []
    assert cloned_pages([undated], [("doc-a", [first])]) == []
    assert cloned_pages([copied], [("doc-a", [other, first])]) == [(1, "doc-a", 2)]


def test_a_duplicate_has_every_page_near_identical() -> None:
    """Two copies of a document are duplicates; one differing page or count makes them not."""
    pages = [page_signature(f"Date of service: 2025-01-0{i}\n{_note(i)}") for i in range(1, 4)]
    again = [page_signature(f"Date of service: 2025-01-0{i}\n{_note(i)}") for i in range(1, 4)]
    changed = [*again[:2], page_signature(_note(99))]
    assert is_duplicate(pages, again)
    assert not is_duplicate(pages, changed)
    assert not is_duplicate(pages, again[:2])
    blank = [page_signature(""), page_signature("")]
    assert not is_duplicate(blank, blank)  # nothing to compare: not judged a duplicate


def test_the_insured_is_recognized_by_name_birth_date_or_member_id() -> None:
    """Name in either order (with an initial), the birth date in US or ISO form, or the
    member id; another patient's chart names none of them."""
    name, born = "Jane Q. Roe", "1971-02-03"
    assert mentions_insured("Patient: ROE, JANE", name, born)
    assert mentions_insured("Pt Roe, J. seen today", name, born)
    assert mentions_insured("DOB 02/03/1971", name, born)
    assert mentions_insured("DOB 2/3/1971", name, born)
    assert mentions_insured("Member: M1001", name, born, "M1001")
    assert not mentions_insured("Patient: John Smith DOB 05/06/1980", name, born, "M1001")
    assert not mentions_insured("Janet Roebuck", name, born)
    assert birth_date_forms("not a date") == []


#: Dates of service as first written: two case-insensitive patterns, each run on its own
_FIRST_LABEL = r"(?:date\s+of\s+service|service\s+date|dos|visit\s+date|date\s+of\s+visit)"
_FIRST_DATE_FORMS = (
    re.compile(_FIRST_LABEL + r"\s*[:#]?\s*(\d{4})-(\d{1,2})-(\d{1,2})", re.IGNORECASE),
    re.compile(_FIRST_LABEL + r"\s*[:#]?\s*(\d{1,2})[/-](\d{1,2})[/-](\d{4})", re.IGNORECASE),
)


def _first_dates(text: str) -> tuple[str, ...]:
    found = []
    for index, pattern in enumerate(_FIRST_DATE_FORMS):
        for match in pattern.finditer(text):
            parts = [int(g) for g in match.groups()]
            year, month, day = parts if index == 0 else (parts[2], parts[0], parts[1])
            try:
                found.append(date(year, month, day).isoformat())
            except ValueError:
                continue
    return tuple(sorted(set(found)))


def _first_words(text: str) -> list[str]:
    for pattern in _FIRST_DATE_FORMS:
        text = pattern.sub(" ", text)
    return re.findall(r"[a-z0-9]+", text.lower())


def _python_minhash(text: str, settings: QASettings) -> tuple[int, ...]:
    """The signature as first written, in Python's integers: what signatures stored before
    the vectorized arithmetic hold, and so what it must go on giving."""
    import hashlib

    from worker.domain.similarity import _MERSENNE, _seeds

    words = _first_words(text)
    k = settings.shingle_words
    shingles = {
        int.from_bytes(
            hashlib.blake2b(" ".join(words[i : i + k]).encode(), digest_size=8).digest(), "big"
        )
        for i in range(len(words) - k + 1)
    }
    seeds = _seeds(settings.minhash_perm)
    return tuple(min((a * s + b) % _MERSENNE for s in shingles) for a, b in seeds)


#: Labelled dates as records print them, some not dates at all (13/45), in any case
_DATED = [
    "Date of service: 2025-03-04",
    "DOS 3/4/2025",
    "dos: 13/45/2025",
    "Visit Date 2024-1-2",
    "DATE   OF SERVICE#2023-12-31",
    "service date - 2024-02-30",
    "Date of visit 12-31-2023",
    "DoS:2022-7-9",
]


def _page(rnd: random.Random) -> str:
    words = [rnd.choice(_VOCAB) for _ in range(rnd.randint(40, 700))]
    for _ in range(rnd.randint(0, 4)):
        words.insert(rnd.randrange(len(words) + 1), rnd.choice(_DATED))
    return " ".join(words)


def test_signatures_are_the_integers_python_s_arithmetic_gives() -> None:
    """Signatures stored for earlier documents compare with new ones only if the same text
    gives the same numbers: 64-bit arithmetic must give exactly Python's (a·s + b) mod p, and
    the one-pass date removal the words the two patterns left."""
    rnd = random.Random(7)
    for settings in (QASettings(), QASettings(shingle_words=3, minhash_perm=16)):
        for _ in range(150):
            text = _page(rnd)
            assert page_signature(text, settings).minhash == _python_minhash(text, settings)


def test_dates_of_service_are_those_the_two_patterns_found() -> None:
    """One pass over the lowercased page finds the dates that two case-insensitive passes
    over the page found, on pages that name none, one or several (valid or not)."""
    rnd = random.Random(11)
    pages = [_page(rnd) for _ in range(300)]
    assert sum(1 for p in pages if _first_dates(p)) > 100  # the pages do carry dates
    for text in pages:
        assert dates_of_service(text) == _first_dates(text)
        assert page_signature(text).dates == _first_dates(text)


def test_minhash_is_exact_at_the_edges_of_64_bit_shingles() -> None:
    """Shingle values where a carry or the reduction could go wrong: 0, around the prime,
    2**63 and the largest 64-bit value."""
    from worker.domain.similarity import _MERSENNE, _minhash, _seeds

    edges = [0, 1, 2, _MERSENNE - 1, _MERSENNE, _MERSENNE + 1, 2 * _MERSENNE, 1 << 63]
    edges += [(1 << 64) - 1, (1 << 62) + 12345, (1 << 61) + (1 << 31) - 1]
    for value in edges:
        expected = tuple((a * value + b) % _MERSENNE for a, b in _seeds(64))
        assert _minhash([value], 64) == expected, value
    assert _minhash(edges, 64) == tuple(
        min((a * s + b) % _MERSENNE for s in edges) for a, b in _seeds(64)
    )


def test_fewer_words_than_a_shingle_give_no_signature_whatever_the_settings() -> None:
    """min_words below the shingle length: a page too short for one shingle has no signature
    (it raised before)."""
    assert page_signature("two words", QASettings(min_words=0)).minhash == ()
