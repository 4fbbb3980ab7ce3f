"""sending workers: delivery leases, worker connections; metrics refreshed per customer

`retain worker` leases batches of due deliveries (deliveries.lease_until, with claimed_by naming
the worker) and registers the SMTP connections it asks for (runs.connections), from which the
fleet's shares of smtp.rate_per_second and smtp.max_connections are computed. Triggers on
orders and customers mark changed customers in metrics_dirty, so that a refresh after new orders
rebuilds only their metrics rows (engine/shop/metrics.py).

Revision: 0003
Revises: 0002
Created: 2026-11-30 06:29:58.320863
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from engine import tables

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table("metrics_dirty", sa.Column("customer_id", sa.Integer(), nullable=False),
                    sa.PrimaryKeyConstraint("customer_id"))
    tables.create_metrics_triggers(op.get_bind())
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.add_column(sa.Column("lease_until", sa.DateTime(), nullable=True))

    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("connections", sa.Integer(), nullable=True))


def downgrade() -> None:
    for name, table, *_ in tables.METRICS_MARKS:
        op.execute(f"DROP TRIGGER IF EXISTS metrics_mark_{name}"
                   + (f" ON {table}" if op.get_bind().dialect.name == "postgresql" else ""))
    op.drop_table("metrics_dirty")
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.drop_column("connections")

    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.drop_column("lease_until")
