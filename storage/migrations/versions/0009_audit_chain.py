"""the audit trail as a hash chain: audit_events.seq, prev_hash, hash and the audit_chain head

Existing events are chained in id order, so an upgraded trail verifies from its first event.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-27 08:00:00
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

from storage.auditchain import GENESIS, HEAD_ID, event_hash

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("audit_events", sa.Column("seq", sa.Integer(), nullable=True))
    op.add_column("audit_events", sa.Column("prev_hash", sa.String(length=64), nullable=True))
    op.add_column("audit_events", sa.Column("hash", sa.String(length=64), nullable=True))
    op.create_index("ix_audit_events_seq", "audit_events", ["seq"], unique=True)
    op.create_table(
        "audit_chain",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    conn = op.get_bind()
    rows = conn.execute(
        sa.text("SELECT id, case_id, at, kind, detail FROM audit_events ORDER BY id")
    ).all()
    prev, seq = GENESIS, 0
    for row in rows:
        seq += 1
        detail = json.loads(row.detail) if isinstance(row.detail, str) else row.detail
        at = (datetime.fromisoformat(row.at) if isinstance(row.at, str) else row.at).replace(
            tzinfo=UTC
        )
        digest = event_hash(seq, prev, row.case_id, at, row.kind, detail)
        conn.execute(
            sa.text("UPDATE audit_events SET seq = :s, prev_hash = :p, hash = :h WHERE id = :i"),
            {"s": seq, "p": prev, "h": digest, "i": row.id},
        )
        prev = digest
    conn.execute(
        sa.text("INSERT INTO audit_chain (id, seq, hash) VALUES (:i, :s, :h)"),
        {"i": HEAD_ID, "s": seq, "h": prev},
    )


def downgrade() -> None:
    op.drop_table("audit_chain")
    op.drop_index("ix_audit_events_seq", table_name="audit_events")
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.drop_column("hash")
        batch_op.drop_column("prev_hash")
        batch_op.drop_column("seq")
