"""campaigns.load_key, campaigns.content_sha256: loading a campaign twice makes one campaign

``content_sha256`` is the SHA-256 of the campaign as validated (its name, jurisdiction,
policy and rows, whether it came as CSV or JSON). ``load_key`` says which load made the
campaign: ``key:<Idempotency-Key>`` when the caller gave one (``--key`` on the CLI), else
``sha256:<content_sha256>``. It is unique, so the same load again (a retried POST, the same
file loaded twice, two at once) finds the campaign the first one made. Campaigns loaded before
this migration have neither.

Revision ID: 0015
Revises: 0014
Create Date: 2026-11-27 14:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("campaigns", sa.Column("load_key", sa.String(length=80), nullable=True))
    op.add_column("campaigns", sa.Column("content_sha256", sa.String(length=64), nullable=True))
    op.create_index("ix_campaigns_load_key", "campaigns", ["load_key"], unique=True)


def downgrade() -> None:
    op.drop_index("ix_campaigns_load_key", table_name="campaigns")
    with op.batch_alter_table("campaigns", schema=None, recreate="never") as batch_op:
        batch_op.drop_column("content_sha256")
        batch_op.drop_column("load_key")
