"""attempts.cancel_at: a cancelled case's open requests are withdrawn at the far side

Set when a case is withdrawn or reversed, for each attempt whose request is still open at the
far side (a CDex Task not yet finished); the scheduler's ``cancel`` timer sets the Task to
``cancelled`` there, retrying until it is done. Cleared once done or impossible.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-27 08:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("attempts", sa.Column("cancel_at", sa.DateTime(), nullable=True))
    op.create_index(op.f("ix_attempts_cancel_at"), "attempts", ["cancel_at"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_attempts_cancel_at"), table_name="attempts")
    op.drop_column("attempts", "cancel_at")
