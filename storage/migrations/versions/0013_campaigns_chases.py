"""campaigns, cases.campaign_id, record_requests.chase_id, attempts.served_by

``campaigns`` holds bulk record retrieval (a sample of enrollees for a retrospective
utilization review, risk-adjustment charts): each of its rows becomes a one-request case with
``cases.campaign_id`` set, chased with the campaign's own policy (``attempts``,
``spacing_fraction``, ``first_channel``) in the bulk lane. ``record_requests.chase_id`` groups
the open requests for one member at one provider into one chase (one outreach serves them
all); ``attempts.served_by`` is the attempt that went out for a chase (its own id on that
attempt, the sending attempt's id on the rows documenting it for the other requests).
``cases.insured_member_id`` and ``record_requests.provider_id`` are indexed: a new request
looks for an open chase by them.

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-27 11:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "campaigns",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("jurisdiction", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("spacing_fraction", sa.Float(), nullable=False),
        sa.Column("first_channel", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("requests", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("created_by", sa.String(128), nullable=False),
        sa.Column("cancelled_at", sa.DateTime(), nullable=True),
    )
    # Plain ADD COLUMN: a batch "move and copy" of these tables trips their foreign keys on SQLite.
    op.add_column("cases", sa.Column("campaign_id", sa.String(32), nullable=True))
    op.create_index("ix_cases_campaign_id", "cases", ["campaign_id"])
    op.create_index("ix_cases_insured_member_id", "cases", ["insured_member_id"])
    op.add_column("record_requests", sa.Column("chase_id", sa.String(32), nullable=True))
    op.create_index("ix_record_requests_chase_id", "record_requests", ["chase_id"])
    op.create_index("ix_record_requests_provider_id", "record_requests", ["provider_id"])
    op.add_column("attempts", sa.Column("served_by", sa.String(32), nullable=True))
    op.create_index("ix_attempts_served_by", "attempts", ["served_by"])


def downgrade() -> None:
    op.drop_index("ix_attempts_served_by", table_name="attempts")
    op.drop_index("ix_record_requests_provider_id", table_name="record_requests")
    op.drop_index("ix_record_requests_chase_id", table_name="record_requests")
    op.drop_index("ix_cases_insured_member_id", table_name="cases")
    op.drop_index("ix_cases_campaign_id", table_name="cases")
    with op.batch_alter_table("attempts", schema=None, recreate="never") as batch_op:
        batch_op.drop_column("served_by")
    with op.batch_alter_table("record_requests", schema=None, recreate="never") as batch_op:
        batch_op.drop_column("chase_id")
    with op.batch_alter_table("cases", schema=None, recreate="never") as batch_op:
        batch_op.drop_column("campaign_id")
    op.drop_table("campaigns")
