"""customer predictions beside the metrics

The table engine/shop/predict.py rebuilds with the metrics: one row per buyer with churn risk,
P(alive), expected orders and spend in the horizon, and the churn tier.

Revision: 0006
Revises: 0005
Created: 2026-11-30 06:42:29.032879
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

churn_tier = sa.Enum("low", "medium", "high", name="churntier")


def upgrade() -> None:
    op.create_table(
        "customer_predictions",
        sa.Column("customer_id", sa.Integer(), nullable=False),
        sa.Column("churn_risk", sa.Float(), nullable=False),
        sa.Column("p_alive", sa.Float(), nullable=False),
        sa.Column("expected_orders", sa.Float(), nullable=False),
        sa.Column("predicted_clv_cents", sa.Integer(), nullable=False),
        sa.Column("churn_tier", churn_tier, nullable=False),
        sa.ForeignKeyConstraint(["customer_id"], ["customers.id"]),
        sa.PrimaryKeyConstraint("customer_id"),
    )


def downgrade() -> None:
    op.drop_table("customer_predictions")
    churn_tier.drop(op.get_bind(), checkfirst=True)  # PostgreSQL keeps an enum type apart
