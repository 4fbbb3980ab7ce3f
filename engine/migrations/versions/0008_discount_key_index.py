"""orders: an index on the discount code's key, so one coupon's redemption is a lookup

``ix_orders_discount_key`` indexes ``tables.code_key_sql(discount_code)`` (upper case, the
separators removed) over the orders that carry a code; it replaces ``ix_orders_discount_code``,
which nothing needs once the full refresh reads the orders with a code through this one.

Why an expression index, not a stored ``discount_key`` column: the database keeps it current
for every writer there is or will be (the importer's upserts, the sources, webhooks, the demo
and the benchmarks' bulk SQL), where a column would be one more field each writer must fill
and a stale or missing key would silently un-redeem a coupon; and an existing database needs
no backfill of 10 M rows in Python. Its one condition, that queries spell the expression
exactly as the index does, is kept by building both from ``tables.code_key_sql`` (separators
as SQL literals, not parameters), and tests/shop/test_redemptions.py checks the plans on both
databases. Partial (``WHERE discount_code IS NOT NULL``): most orders carry no code, and the
full refresh reads the coded orders through it in key order.

Revision: 0008
Revises: 0007
Created: 2026-11-30 09:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # tables.code_key_sql(discount_code), frozen as it was at this revision (a revision never
    # imports engine.tables); test_migrations checks it is the index tables.py declares.
    key = sa.text("upper(replace(replace(replace(replace(discount_code, '-', ''), ' ', ''), "
                  "'_', ''), '.', ''))")
    coded = sa.text("discount_code IS NOT NULL")
    op.create_index("ix_orders_discount_key", "orders", [key],
                    sqlite_where=coded, postgresql_where=coded)
    op.drop_index("ix_orders_discount_code", table_name="orders")


def downgrade() -> None:
    op.create_index("ix_orders_discount_code", "orders", ["discount_code"])
    op.drop_index("ix_orders_discount_key", table_name="orders")
