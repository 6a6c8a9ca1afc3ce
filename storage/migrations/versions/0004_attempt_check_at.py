"""attempts.check_at: when to ask the fax vendor about a transmission with no final webhook

Set when a fax goes out (and when a send lost in a crash is adopted); the scheduler's ``check``
timer then reads the fax's status from the vendor, as a lost ``fax.delivered`` / ``fax.failed``
webhook would have told us. NULL once the attempt is final.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28 09:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("attempts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("check_at", sa.DateTime(), nullable=True))
        batch_op.create_index(batch_op.f("ix_attempts_check_at"), ["check_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("attempts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_attempts_check_at"))
        batch_op.drop_column("check_at")
