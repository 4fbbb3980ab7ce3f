"""sending workers: delivery leases, worker connections; metrics refreshed per customer

`retain worker` leases batches of due deliveries (deliveries.lease_until, with claimed_by naming
the worker) and registers the SMTP connections it asks for (runs.connections), from which the
fleet's shares of smtp.rate_per_second and smtp.max_connections are computed; send_holds
shares their back-offs. Triggers on
orders and customers mark changed customers in metrics_dirty, so that a refresh after new orders
rebuilds only their metrics rows (engine/shop/metrics.py).

Revision: 0005
Revises: 0004
Created: 2026-11-30 06:29:58.320863
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

# The triggers as engine/tables.py writes them at this revision (copied: a revision is frozen).
_PG_MARK = """
CREATE OR REPLACE FUNCTION metrics_mark_{name}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO metrics_dirty (customer_id) SELECT DISTINCT {column} FROM changed
  WHERE {column} IS NOT NULL ON CONFLICT DO NOTHING;
  RETURN NULL;
END $$;
DROP TRIGGER IF EXISTS metrics_mark_{name} ON {table};
CREATE TRIGGER metrics_mark_{name} AFTER {event} ON {table}
REFERENCING {side} TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION metrics_mark_{name}();
"""
_SQLITE_MARK = """
CREATE TRIGGER IF NOT EXISTS metrics_mark_{name} AFTER {event} ON {table} FOR EACH ROW BEGIN
  INSERT OR IGNORE INTO metrics_dirty (customer_id) VALUES ({row}.{column});
END;
"""
MARKS = [  # (name, table, column, event, transition table / row)
    ("order_new", "orders", "customer_id", "INSERT", "NEW"),
    ("order_old", "orders", "customer_id", "UPDATE", "OLD"),
    ("order_changed", "orders", "customer_id", "UPDATE", "NEW"),
    ("order_gone", "orders", "customer_id", "DELETE", "OLD"),
    ("customer_new", "customers", "id", "INSERT", "NEW"),
    ("customer_gone", "customers", "id", "DELETE", "OLD"),
]


revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table("send_holds", sa.Column("key", sa.String(), nullable=False),
                    sa.Column("until", sa.DateTime(), nullable=False),
                    sa.PrimaryKeyConstraint("key"))
    op.create_table("metrics_dirty", sa.Column("customer_id", sa.Integer(), nullable=False),
                    sa.PrimaryKeyConstraint("customer_id"))
    bind = op.get_bind()
    for name, table, column, on, side in MARKS:
        if bind.dialect.name == "postgresql":
            op.execute(_PG_MARK.format(name=name, table=table, column=column, event=on,
                                       side=side))
        else:
            op.execute(_SQLITE_MARK.format(name=name, table=table, column=column, event=on,
                                           row=side))
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.add_column(sa.Column("lease_until", sa.DateTime(), nullable=True))

    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("connections", sa.Integer(), nullable=True))


def downgrade() -> None:
    for name, table, *_ in MARKS:
        op.execute(f"DROP TRIGGER IF EXISTS metrics_mark_{name}"
                   + (f" ON {table}" if op.get_bind().dialect.name == "postgresql" else ""))
    op.drop_table("metrics_dirty")
    op.drop_table("send_holds")
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.drop_column("connections")

    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.drop_column("lease_until")
