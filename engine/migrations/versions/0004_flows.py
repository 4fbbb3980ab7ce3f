"""flows: transactional and checkout on deliveries, status cancelled

Revision: 0004
Revises: 0003
Created: 2026-11-30 06:32:09.547222

A delivery says whether it is transactional (the claim then needs no marketing consent) and,
for an abandoned checkout's step, which checkout the claim rechecks; the delivery status
``cancelled`` records a step whose checkout became an order before the send.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.add_column(sa.Column("transactional", sa.Boolean(), nullable=False,
                                      server_default=sa.false()))
        batch_op.add_column(sa.Column("checkout_id", sa.Integer(), nullable=True))
    if op.get_bind().dialect.name == "postgresql":
        # The statuses are a PostgreSQL enum type; SQLite stores them as text.
        op.execute("ALTER TYPE deliverystatus ADD VALUE IF NOT EXISTS 'cancelled'")


def downgrade() -> None:
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.drop_column("checkout_id")
        batch_op.drop_column("transactional")
