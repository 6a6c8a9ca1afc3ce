"""cases.open_at and attempts.sending_until: nothing lost between intake and the first fax

- ``cases.open_at``: set at intake (a lease), cleared once the case is opened (our copies of
  the EOC and the authorization stored, outreach planned). The scheduler's ``opening`` timer
  re-drives a case whose opening message was lost (Redis flushed, enqueue failed after commit).
- ``attempts.sending_until``: a transmission is under way until then. A second send command
  for the same attempt meanwhile (a redelivered message) is dropped, so the attempt is never on
  the wire twice; a crash leaves it to expire, and the attempt is then looked for at the far
  side before anything is sent again.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-27 08:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # plain ALTER TABLE (SQLite >= 3.35 adds and drops columns in place): batch mode would copy
    # `cases`, which the foreign keys of every other table refer to.
    op.add_column("cases", sa.Column("open_at", sa.DateTime(), nullable=True))
    op.create_index(op.f("ix_cases_open_at"), "cases", ["open_at"], unique=False)
    op.add_column("attempts", sa.Column("sending_until", sa.DateTime(), nullable=True))


def downgrade() -> None:
    op.drop_column("attempts", "sending_until")
    op.drop_index(op.f("ix_cases_open_at"), table_name="cases")
    op.drop_column("cases", "open_at")
