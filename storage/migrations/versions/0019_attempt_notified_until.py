"""attempts.notified_until: the provider's server notifies us of this request's changes

Set when a CDex Task is sent and the provider's FHIR server took our Subscription to it
(connectors/fhir/subscriptions.py): until then, a notification brings the next poll forward and
the polls in between are only a safety net (worker/domain/polling.py ``notified_delay``). Null:
no notifications, the channel's own polling cadence.

Revision ID: 0019
Revises: 0018
Create Date: 2026-11-29 12:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("attempts", sa.Column("notified_until", sa.DateTime(), nullable=True))


def downgrade() -> None:
    op.drop_column("attempts", "notified_until")
