"""record_requests.business_hours and .business_windows: reasonable timing in business time

``business_hours`` holds the provider's own local opening hours (``["HH:MM", "HH:MM"]``) when
the notification gives them (NULL: the jurisdiction's hours). ``business_windows`` is how many
distinct business openings the request's outreach window allowed, computed at intake (NULL for
requests taken in before this revision); fewer than three flags the request and the case.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-27 08:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("record_requests", schema=None) as batch_op:
        batch_op.add_column(sa.Column("business_hours", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("business_windows", sa.Integer(), nullable=True))


def downgrade() -> None:
    # Plain ALTER TABLE ... DROP COLUMN (SQLite >= 3.35 has it): a batch "move and copy" would
    # drop record_requests, which attempts and documents reference (foreign keys are on).
    with op.batch_alter_table("record_requests", schema=None, recreate="never") as batch_op:
        batch_op.drop_column("business_windows")
        batch_op.drop_column("business_hours")
