"""per-customer totals of cents are 64-bit: customer_metrics.spent_cents, predicted_clv_cents

A customer's spend summed over their orders passes PostgreSQL's INTEGER (2^31 - 1 cents,
€21.4 M) for a large wholesale buyer, and the metrics refresh then failed with "integer out of
range". Both columns become BIGINT. On PostgreSQL an ALTER COLUMN ... TYPE rewrites the table
in place; SQLite stores 64-bit integers in any INTEGER column already, and batch mode copies
the table so that its declared type matches tables.py. Both tables are rebuilt from the orders
by every metrics refresh, so nothing is lost either way; their rows are kept regardless.
Columns that hold one order's amount (orders.total_cents, a coupon's redeemed_cents, the
average order value) stay INTEGER, as orders.total_cents does.

Revision: 0009
Revises: 0008
Created: 2026-11-30 09:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

COLUMNS = [("customer_metrics", "spent_cents"), ("customer_predictions", "predicted_clv_cents")]


def upgrade() -> None:
    for table, column in COLUMNS:
        with op.batch_alter_table(table) as batch:
            batch.alter_column(column, existing_type=sa.Integer(), type_=sa.BigInteger(),
                               existing_nullable=False)


def downgrade() -> None:
    for table, column in COLUMNS:
        with op.batch_alter_table(table) as batch:
            batch.alter_column(column, existing_type=sa.BigInteger(), type_=sa.Integer(),
                               existing_nullable=False)
