"""cases: indexes on deliver_by and assemble_at, and on the cases waiting to be opened

The watchdog's pass (every scheduler tick) looks for cases in progress past ``deliver_by`` or
``assemble_at``; without these indexes PostgreSQL read every open case to find them, which a
campaign of 100,000 open cases made the largest cost of a tick. The ``opening`` timer takes
the cases waiting to be opened earliest ``deliver_by`` first; ``ix_cases_opening`` (only rows
with ``open_at`` set: cases not yet opened) lets it read them in that order and stop at the
batch instead of sorting the whole backlog.

Revision ID: 0017
Revises: 0016
Create Date: 2026-11-27 15:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None

_WAITING = sa.text("open_at IS NOT NULL")


def upgrade() -> None:
    op.create_index("ix_cases_deliver_by", "cases", ["deliver_by"])
    op.create_index("ix_cases_assemble_at", "cases", ["assemble_at"])
    op.create_index(
        "ix_cases_opening",
        "cases",
        ["deliver_by", "open_at"],
        postgresql_where=_WAITING,
        sqlite_where=_WAITING,
    )


def downgrade() -> None:
    op.drop_index("ix_cases_opening", table_name="cases")
    op.drop_index("ix_cases_assemble_at", table_name="cases")
    op.drop_index("ix_cases_deliver_by", table_name="cases")
