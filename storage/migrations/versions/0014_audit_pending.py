"""audit_pending: events committed with the work they record, chained afterwards by one chainer

Workers no longer take the audit chain's head lock in their own transactions (it serialised
every audited commit); they write here, and ``storage/auditchain.py`` moves the rows into
``audit_events`` with their ``seq`` and hashes under the head's lock, in batches.

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-27 11:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "audit_pending",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("case_id", sa.String(length=32), nullable=True),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.Column("kind", sa.String(length=64), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )


def downgrade() -> None:
    # what is still pending joins the trail unchained: verify names it, nothing is lost
    op.execute(
        "INSERT INTO audit_events (case_id, at, kind, detail) "
        "SELECT case_id, at, kind, detail FROM audit_pending ORDER BY id"
    )
    op.drop_table("audit_pending")
