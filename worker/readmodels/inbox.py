"""The unmatched inbox as ops read it: inbound documents filed with no request, newest first,
one bounded page; one document's details and its bytes as received."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from storage.models import Document
from worker.readmodels.report import iso
from worker.wiring import Container

#: Most rows one page lists.
MAX_PAGE = 500


def _row(d: Document) -> dict[str, Any]:
    return {
        "id": d.id,
        "source": d.source,
        "sender": d.sender,
        "received_at": iso(d.received_at),
        "pages": d.pages,
        "size": d.size,
        "sha256": d.sha256,
        "status": d.status,
        "reason": d.reason,
        "kind": d.kind,
    }


def unmatched_documents(c: Container, *, limit: int = 100, offset: int = 0) -> dict[str, Any]:
    """One page of the documents no request owns; ``total`` counts them all. ``limit`` is
    capped at :data:`MAX_PAGE`."""
    limit = max(0, min(limit, MAX_PAGE))
    where = Document.request_id.is_(None)
    with c.sessions() as s:
        total = s.scalar(select(func.count()).select_from(Document).where(where)) or 0
        rows = s.scalars(
            select(Document)
            .where(where)
            .order_by(Document.received_at.desc(), Document.id)
            .limit(limit)
            .offset(max(0, offset))
        ).all()
        items = [_row(d) for d in rows]
    return {"total": total, "limit": limit, "offset": offset, "documents": items}


def unmatched_document(c: Container, document_id: str) -> dict[str, Any] | None:
    """One unmatched document's details, or None when there is none by that id (or it has
    been assigned)."""
    with c.sessions() as s:
        d = s.get(Document, document_id)
        return _row(d) if d is not None and d.request_id is None else None


def unmatched_content(c: Container, document_id: str) -> bytes | None:
    """The bytes of one unmatched document as received, or None (see
    :func:`unmatched_document`)."""
    with c.sessions() as s:
        d = s.get(Document, document_id)
        uri = d.uri if d is not None and d.request_id is None else None
    return c.store.get(uri) if uri else None
