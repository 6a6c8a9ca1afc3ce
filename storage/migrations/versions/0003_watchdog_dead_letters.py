"""the watchdog's per-case hold and the dead-letter table

``cases.watchdog_at``: the watchdog leaves a case alone until then after acting on it (NULL:
never acted). ``dead_letters``: one row per message dramatiq gave up on (ids and the error's
type only), listed and retried by ops.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28 09:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # plain ALTER TABLE (SQLite ≥ 3.35 adds and drops columns in place): batch mode would copy
    # `cases`, which the foreign keys of every other table refer to.
    op.add_column("cases", sa.Column("watchdog_at", sa.DateTime(), nullable=True))
    op.create_table(
        "dead_letters",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("message_id", sa.String(length=64), nullable=False),
        sa.Column("actor", sa.String(length=64), nullable=False),
        sa.Column("command", sa.String(length=64), nullable=False),
        sa.Column("entity_id", sa.String(length=64), nullable=False),
        sa.Column("case_id", sa.String(length=32), nullable=True),
        sa.Column("error", sa.String(length=128), nullable=False),
        sa.Column("retries", sa.Integer(), nullable=False),
        sa.Column("failed_at", sa.DateTime(), nullable=False),
        sa.Column("retried_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("message_id"),
    )
    with op.batch_alter_table("dead_letters", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_dead_letters_case_id"), ["case_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_dead_letters_retried_at"), ["retried_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("dead_letters", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_dead_letters_retried_at"))
        batch_op.drop_index(batch_op.f("ix_dead_letters_case_id"))
    op.drop_table("dead_letters")
    op.drop_column("cases", "watchdog_at")
