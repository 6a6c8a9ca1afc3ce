"""attempts.told_at: when the provider's server last notified us of this request's change

Set by a CDex Subscription notification (``POST /v1/webhooks/cdex/{key}``). A poll that finds
the Task changed while ``told_at`` is still empty shows that the server's notifications do not
reach us (a wrong public URL, a proxy refusing them): the attempt's ``notified_until`` is then
cleared and it is polled at the CDex cadence again.

Revision ID: 0020
Revises: 0019
Create Date: 2026-11-29 13:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("attempts", sa.Column("told_at", sa.DateTime(), nullable=True))


def downgrade() -> None:
    op.drop_column("attempts", "told_at")
