"""deliveries: fax transmissions of a packet, confirmed later by the fax vendor

A packet sent by fax (an agency whose transport is ``fax``) has no synchronous receipt: the
fax vendor confirms it later (webhook, or its status when asked). These columns hold the
transmission in progress, as ``attempts`` does for a request letter:

- ``document_uri``: what is faxed (cover sheet + packet), written once before the first send
- ``transmissions``: fax transmissions started (each busy line or failure starts another)
- ``external_id``: the fax vendor's id of the current transmission (cleared when it failed)
- ``vendor``: the fax vendor's registry name
- ``sending_until``: a transmission is being handed to the vendor until then (a lease); left
  set by a crash, it makes the next try look the fax up at the vendor before sending again
- ``sent_at``: when the current transmission was handed over (status checks count from it)

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-27 10:50:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("deliveries", sa.Column("document_uri", sa.String(1024), nullable=True))
    op.add_column(
        "deliveries",
        sa.Column("transmissions", sa.Integer(), nullable=False, server_default="0"),
    )
    op.add_column("deliveries", sa.Column("external_id", sa.String(512), nullable=True))
    op.add_column("deliveries", sa.Column("vendor", sa.String(32), nullable=True))
    op.add_column("deliveries", sa.Column("sending_until", sa.DateTime(), nullable=True))
    op.add_column("deliveries", sa.Column("sent_at", sa.DateTime(), nullable=True))
    op.create_index(op.f("ix_deliveries_external_id"), "deliveries", ["external_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_deliveries_external_id"), table_name="deliveries")
    for column in ("sent_at", "sending_until", "vendor", "external_id", "transmissions"):
        op.drop_column("deliveries", column)
    op.drop_column("deliveries", "document_uri")
