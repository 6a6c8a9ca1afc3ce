"""attempts: the status-check timer's index holds only faxes still ``sent``

The ``check`` timer (ask the fax vendor for the status of a fax whose webhooks went quiet)
looks for attempts whose outcome is ``sent`` and whose ``check_at`` has passed, earliest
first, and each tick asks for the earliest such instant. ``ix_attempts_check_at`` indexed
every attempt's ``check_at`` but not the outcome, so with thousands of faxes in flight
PostgreSQL read every attempt and sorted them (a sequential scan, about 12 ms a tick at
20,000 requests). The partial index holds exactly the rows the timer reads, in its order.

Revision ID: 0018
Revises: 0017
Create Date: 2026-11-27 17:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None

_SENT = sa.text("outcome = 'sent'")


def upgrade() -> None:
    op.drop_index("ix_attempts_check_at", table_name="attempts")
    op.create_index(
        "ix_attempts_check_sent",
        "attempts",
        ["check_at"],
        postgresql_where=_SENT,
        sqlite_where=_SENT,
    )


def downgrade() -> None:
    op.drop_index("ix_attempts_check_sent", table_name="attempts")
    op.create_index("ix_attempts_check_at", "attempts", ["check_at"])
