"""sweeps: the inbound-fax sweep that finds answers whose fax.received webhook was lost

One row per sweep, seeded with ``inbound_fax``. Its ``next_at`` is a scheduler timer, armed when
a fax to a provider is delivered (an answer may come) and kept while open requests await one;
the sweep lists the faxes received since the last sweep and takes in any we never heard of.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-27 09:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    sweeps = op.create_table(
        "sweeps",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("next_at", sa.DateTime(), nullable=True),
        sa.Column("swept_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_sweeps_next_at"), "sweeps", ["next_at"], unique=False)
    op.bulk_insert(sweeps, [{"id": "inbound_fax", "next_at": None, "swept_at": None}])


def downgrade() -> None:
    op.drop_index(op.f("ix_sweeps_next_at"), table_name="sweeps")
    op.drop_table("sweeps")
