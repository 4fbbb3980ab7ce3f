"""coupon redemptions: the normalised code and the order that redeemed it

Revision: 0007
Revises: 0006
Created: 2026-11-30 06:31:20.356297
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("coupons", schema=None) as batch_op:
        batch_op.add_column(sa.Column("code_key", sa.String(), nullable=True))
        batch_op.add_column(sa.Column("redeemed_order_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("redeemed_at", sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column("redeemed_cents", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("discount_cents", sa.Integer(), nullable=True))
        batch_op.create_index(batch_op.f("ix_coupons_code_key"), ["code_key"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("coupons", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_coupons_code_key"))
        batch_op.drop_column("discount_cents")
        batch_op.drop_column("redeemed_cents")
        batch_op.drop_column("redeemed_at")
        batch_op.drop_column("redeemed_order_id")
        batch_op.drop_column("code_key")
