"""customer_products: the skus each customer bought, beside customer_metrics

A new-products digest, a VIP's early access and a bundle ask what a customer bought: the
categories they buy from and the products they own. They read it from ``customer_products``
(one short range a customer, stored in key order) instead of every line of every order of a
batch's customers. The table is rebuilt with ``customer_metrics``, whole or for the customers
marked in ``metrics_dirty``; order lines now mark their order's customer there too, so a line
added to or taken from an existing order refreshes that customer's row. The metrics' as-of
mark is removed: the next refresh rebuilds everything, filling the new table.

Revision: 0010
Revises: 0009
Created: 2026-11-30 11:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

# The triggers as engine/tables.py writes them at this revision (copied: a revision is frozen).
_PG_MARK = """
CREATE OR REPLACE FUNCTION metrics_mark_{name}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO metrics_dirty (customer_id) SELECT DISTINCT orders.customer_id FROM changed
  JOIN orders ON orders.id = changed.order_id ON CONFLICT DO NOTHING;
  RETURN NULL;
END $$;
DROP TRIGGER IF EXISTS metrics_mark_{name} ON order_items;
CREATE TRIGGER metrics_mark_{name} AFTER {event} ON order_items
REFERENCING {side} TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION metrics_mark_{name}();
"""
_SQLITE_MARK = """
CREATE TRIGGER IF NOT EXISTS metrics_mark_{name} AFTER {event} ON order_items FOR EACH ROW BEGIN
  INSERT OR IGNORE INTO metrics_dirty (customer_id)
  SELECT customer_id FROM orders WHERE id = {side}.order_id;
END;
"""
MARKS = [("item_new", "INSERT", "NEW"), ("item_old", "UPDATE", "OLD"),
         ("item_changed", "UPDATE", "NEW"), ("item_gone", "DELETE", "OLD")]


def upgrade() -> None:
    op.create_table("customer_products",
                    sa.Column("customer_id", sa.Integer(), nullable=False),
                    sa.Column("sku", sa.String(), nullable=False),
                    sa.PrimaryKeyConstraint("customer_id", "sku"),
                    sqlite_with_rowid=False)
    postgres = op.get_bind().dialect.name == "postgresql"
    for name, event, side in MARKS:
        op.execute((_PG_MARK if postgres else _SQLITE_MARK).format(name=name, event=event,
                                                                   side=side))
    op.execute("DELETE FROM meta WHERE key = 'metrics_as_of'")


def downgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    for name, *_ in MARKS:
        op.execute(f"DROP TRIGGER IF EXISTS metrics_mark_{name}"
                   + (" ON order_items" if postgres else ""))
    op.drop_table("customer_products")
