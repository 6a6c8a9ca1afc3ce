"""documents.flags, .qa and the review columns: what the intake quality checks found, and
what a person decided about it

``flags`` lists the QA flags of a document (``repaired``, ``duplicate``, ``cloned``,
``wrong_patient``; NULL for documents taken in before this revision, read as none). ``qa`` holds
what the checks need to compare later documents of the same case with this one (per page: a
MinHash signature of the text's word shingles and the dates of service printed on it) and what
they found (the document it duplicates, the pages that repeat other pages). Neither holds
document text. ``review_status`` is ``pending`` for a flagged document until a person
releases or rejects it (``released`` / ``rejected``, with ``reviewed_at``, ``reviewed_by`` and
``review_note``); NULL when no review is needed.

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-27 09:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain ADD COLUMN: a batch "move and copy" of documents trips its foreign keys on SQLite.
    op.add_column("documents", sa.Column("flags", sa.JSON(), nullable=True))
    op.add_column("documents", sa.Column("qa", sa.JSON(), nullable=True))
    op.add_column("documents", sa.Column("review_status", sa.String(16), nullable=True))
    op.add_column("documents", sa.Column("reviewed_at", sa.DateTime(), nullable=True))
    op.add_column("documents", sa.Column("reviewed_by", sa.String(128), nullable=True))
    op.add_column("documents", sa.Column("review_note", sa.String(256), nullable=True))
    op.create_index("ix_documents_review_status", "documents", ["review_status"])


def downgrade() -> None:
    op.drop_index("ix_documents_review_status", table_name="documents")
    with op.batch_alter_table("documents", schema=None, recreate="never") as batch_op:
        batch_op.drop_column("review_note")
        batch_op.drop_column("reviewed_by")
        batch_op.drop_column("reviewed_at")
        batch_op.drop_column("review_status")
        batch_op.drop_column("qa")
        batch_op.drop_column("flags")
