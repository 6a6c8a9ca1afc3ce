"""Quality flags on an accepted document, against the other documents of its case: what a
person should look at before the agency's reviewer does (issue "What providers really send").

::

    check.repaired ─────────────────────────────────────────────► "repaired"
    pages with no content at all ───────────────────────────────► "blank_pages"
    same SHA-256 as an accepted document of the case, or every page
      near-identical to one (worker/domain/similarity.py) ──────► "duplicate" (kept, noted,
                                                                   never repeated in a packet)
    a page repeating another page of the case under a different
      date of service ──────────────────────────────────────────► "cloned" (a QA flag only)
    pages with text, none naming the insured (name, birth date
      or member id) ────────────────────────────────────────────► "wrong_patient"

Only signatures (MinHash, dates of service) and findings are stored (``Document.qa``), never
text. The flags go to the run report, the packet's index and its manifest. Any flag but
``duplicate`` puts the document in the ops review queue (``review_status`` pending:
worker/services/review.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from storage.models import Case, Document
from worker.documents import DocumentCheck
from worker.domain.lifecycle import DocumentKind, DocumentStatus
from worker.domain.similarity import (
    PYPDF,
    PageSignature,
    QASettings,
    cloned_pages,
    is_duplicate,
    mentions_insured,
)

__all__ = [
    "DUPLICATE",
    "PENDING",
    "REJECTED",
    "RELEASED",
    "QAResult",
    "assess",
    "flags_of",
    "review_for",
    "signatures_of",
]

REPAIRED, DUPLICATE, CLONED, WRONG_PATIENT = "repaired", "duplicate", "cloned", "wrong_patient"
BLANK_PAGES = "blank_pages"
PENDING, RELEASED, REJECTED = "pending", "released", "rejected"


def review_for(flags: Sequence[str]) -> str | None:
    """``pending`` when a person must look at the document before it is sent (any flag but
    ``duplicate``: a duplicate is never sent), else None."""
    return PENDING if any(flag != DUPLICATE for flag in flags) else None


@dataclass(frozen=True)
class QAResult:
    flags: list[str]
    qa: dict[str, Any]


def flags_of(d: Document) -> list[str]:
    """The document's QA flags (none for documents taken in before flags existed)."""
    return list(d.flags or [])


def signatures_of(d: Document, text: str | None = None) -> list[PageSignature]:
    """The stored per-page signatures of a document (empty when none were stored, or when
    ``text`` names another library than the one that read the text they were made of:
    :attr:`QASettings.text`; documents stored before it was recorded were read by pypdf)."""
    qa = d.qa or {}
    if text is not None and (qa.get("settings") or {}).get("text", PYPDF) != text:
        return []
    pages = qa.get("pages") or []
    return [
        PageSignature(tuple(p.get("minhash") or ()), tuple(p.get("dates") or ())) for p in pages
    ]


def assess(
    s: Session,
    case: Case | None,
    check: DocumentCheck,
    texts: Sequence[str],
    signatures: Sequence[PageSignature],
    settings: QASettings,
    *,
    no_records: bool,
    blank_pages: Sequence[int] = (),
) -> QAResult:
    """The flags of an accepted document about to be stored for ``case`` (None: unmatched,
    only ``repaired`` and ``blank_pages`` can be told)."""
    flags: list[str] = [REPAIRED] if check.repaired else []
    if blank_pages:
        flags.append(BLANK_PAGES)
    qa: dict[str, Any] = {
        "pages": [{"minhash": list(p.minhash), "dates": list(p.dates)} for p in signatures],
        "settings": {
            "shingle_words": settings.shingle_words,
            "minhash_perm": settings.minhash_perm,
            "clone_threshold": settings.clone_threshold,
            "duplicate_threshold": settings.duplicate_threshold,
            "text": settings.text,
        },
    }
    if blank_pages:
        qa["blank_pages"] = list(blank_pages)
    if case is None or no_records:
        return QAResult(flags, qa)
    others = list(
        s.scalars(
            select(Document)
            .where(
                Document.case_id == case.id,
                Document.status == DocumentStatus.ACCEPTED,
                Document.kind == DocumentKind.RECORDS,
            )
            .order_by(Document.received_at)
        )
    )
    originals = [d for d in others if DUPLICATE not in flags_of(d)]
    text = settings.text
    same = next((d for d in originals if d.sha256 == check.sha256), None)
    if same is None:
        same = next(
            (d for d in originals if is_duplicate(signatures, signatures_of(d, text), settings)),
            None,
        )
    if same is not None:
        flags.append(DUPLICATE)
        qa["duplicate_of"] = same.id
        qa["duplicate_by"] = "sha256" if same.sha256 == check.sha256 else "text"
    else:
        others_signed = [(d.id, signatures_of(d, text)) for d in originals]
        clones = cloned_pages(signatures, others_signed, settings)
        if clones:
            flags.append(CLONED)
            qa["cloned_pages"] = [
                {"page": page, "document_id": other or None, "other_page": other_page}
                for page, other, other_page in clones
            ]
    worded = [text for text in texts if len(text.split()) >= 3]
    if worded and not any(
        mentions_insured(text, case.insured_name, case.insured_birth_date, case.insured_member_id)
        for text in worded
    ):
        flags.append(WRONG_PATIENT)
    return QAResult(flags, qa)
