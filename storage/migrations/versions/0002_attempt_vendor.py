"""attempts record their vendor; drop the dead attempts.sending column

``attempts.vendor`` is the registry name of the adapter an attempt went through ("telnyx",
"cdex"); NULL for attempts written before this revision. ``attempts.sending`` was written and
never read.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27 05:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # batch mode: SQLite cannot drop a column in place, so alembic copies the table there.
    with op.batch_alter_table("attempts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("vendor", sa.String(length=32), nullable=True))
        batch_op.drop_column("sending")


def downgrade() -> None:
    with op.batch_alter_table("attempts", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("sending", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch_op.drop_column("vendor")
