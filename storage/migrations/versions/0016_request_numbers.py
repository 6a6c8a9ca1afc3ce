"""request_numbers: each request's fax numbers, normalised, keyed by number

An inbound fax that quotes no reference is matched by its sender's number. That used to load
every open request and compare its channels in Python: with 100,000 open campaign requests
each such fax read them all. Each request's fax numbers (its provider's and its designee's,
in E.164: worker/domain/faxnumbers.py) are now rows keyed by (number, request_id), so the
look-up reads the rows of one number. Existing requests are filled in from their channels.

Revision ID: 0016
Revises: 0015
Create Date: 2026-11-27 14:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from worker.domain.faxnumbers import request_fax_numbers

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

PAGE = 1000


def upgrade() -> None:
    op.create_table(
        "request_numbers",
        sa.Column("number", sa.String(length=20), nullable=False),
        sa.Column("request_id", sa.String(length=32), nullable=False),
        sa.ForeignKeyConstraint(["request_id"], ["record_requests.id"]),
        sa.PrimaryKeyConstraint("number", "request_id"),
    )
    requests = sa.table(
        "record_requests", sa.column("id", sa.String), sa.column("channels", sa.JSON)
    )
    numbers = sa.table(
        "request_numbers", sa.column("number", sa.String), sa.column("request_id", sa.String)
    )
    bind = op.get_bind()
    after = ""
    while True:
        page = bind.execute(
            sa.select(requests.c.id, requests.c.channels)
            .where(requests.c.id > after)
            .order_by(requests.c.id)
            .limit(PAGE)
        ).all()
        if not page:
            break
        rows = [
            {"number": number, "request_id": request_id}
            for request_id, channels in page
            for number in sorted(request_fax_numbers(channels or []))
        ]
        if rows:
            bind.execute(sa.insert(numbers), rows)
        after = page[-1][0]


def downgrade() -> None:
    op.drop_table("request_numbers")
