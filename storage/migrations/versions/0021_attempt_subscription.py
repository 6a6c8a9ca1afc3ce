"""attempts.subscription: the far side's live Subscription to this request's changes

The URL of a CDex Subscription (``[base]/Subscription/<id>``) made with the attempt's Task.
Once nothing more is awaited from the request (its Task answered or given up, the request
closed), goodfaith deletes it and clears this column, rather than leave it live at the
provider's FHIR server until its end date (45 days): a campaign makes one per Task.

Revision ID: 0021
Revises: 0020
Create Date: 2026-11-29 15:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("attempts", sa.Column("subscription", sa.String(1024), nullable=True))


def downgrade() -> None:
    op.drop_column("attempts", "subscription")
