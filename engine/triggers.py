"""The database triggers that mark a customer in ``metrics_dirty`` when their orders, their
order lines or the customer row itself change, so a metrics refresh rebuilds only them
(shop/metricsdelta.py).

Owns the trigger SQL for both databases; ``tables`` creates the triggers with the tables.
Must not read or write rows itself.
"""

from __future__ import annotations

# Statement-level triggers with transition tables on PostgreSQL (a bulk import of 10 M orders
# marks each customer once, not once per order); row triggers on SQLite (no transition tables).
# An order line names its customer through its order (``via_order``).
_PG_MARK = """
CREATE OR REPLACE FUNCTION metrics_mark_{name}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO metrics_dirty (customer_id) {select} ON CONFLICT DO NOTHING;
  RETURN NULL;
END $$;
DROP TRIGGER IF EXISTS metrics_mark_{name} ON {table};
CREATE TRIGGER metrics_mark_{name} AFTER {event} ON {table}
REFERENCING {side} TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION metrics_mark_{name}();
"""
_PG_SELECT = "SELECT DISTINCT {column} FROM changed WHERE {column} IS NOT NULL"
_PG_SELECT_VIA_ORDER = ("SELECT DISTINCT orders.customer_id FROM changed "
                        "JOIN orders ON orders.id = changed.{column}")
_SQLITE_MARK = """
CREATE TRIGGER IF NOT EXISTS metrics_mark_{name} AFTER {event} ON {table} FOR EACH ROW BEGIN
  INSERT OR IGNORE INTO metrics_dirty (customer_id) {select};
END;
"""
_SQLITE_SELECT = "VALUES ({row}.{column})"
_SQLITE_SELECT_VIA_ORDER = "SELECT customer_id FROM orders WHERE id = {row}.{column}"
METRICS_MARKS = [  # (name, table, column, event, transition table / row, via_order)
    ("order_new", "orders", "customer_id", "INSERT", "NEW", False),
    ("order_old", "orders", "customer_id", "UPDATE", "OLD", False),
    ("order_changed", "orders", "customer_id", "UPDATE", "NEW", False),
    ("order_gone", "orders", "customer_id", "DELETE", "OLD", False),
    ("customer_new", "customers", "id", "INSERT", "NEW", False),
    ("customer_gone", "customers", "id", "DELETE", "OLD", False),
    # customer_products: a line added to, changed in or taken from an existing order.
    ("item_new", "order_items", "order_id", "INSERT", "NEW", True),
    ("item_old", "order_items", "order_id", "UPDATE", "OLD", True),
    ("item_changed", "order_items", "order_id", "UPDATE", "NEW", True),
    ("item_gone", "order_items", "order_id", "DELETE", "OLD", True),
]


def metrics_trigger_sql(dialect: str, only_tables: tuple[str, ...] | None = None) -> list[str]:
    """The SQL that creates the triggers filling ``metrics_dirty`` (of ``only_tables``)."""
    statements = []
    for name, table, column, on, side, via_order in METRICS_MARKS:
        if only_tables is not None and table not in only_tables:
            continue
        if dialect == "postgresql":
            select = (_PG_SELECT_VIA_ORDER if via_order else _PG_SELECT).format(column=column)
            statements.append(_PG_MARK.format(name=name, table=table, select=select, event=on,
                                              side=side))
        else:
            select = (_SQLITE_SELECT_VIA_ORDER if via_order else _SQLITE_SELECT).format(
                row=side, column=column)
            statements.append(_SQLITE_MARK.format(name=name, table=table, select=select,
                                                  event=on))
    return statements


def create_metrics_triggers(connection) -> None:
    """The triggers that fill ``metrics_dirty`` (create_all calls this)."""
    for statement in metrics_trigger_sql(connection.dialect.name):
        connection.exec_driver_sql(statement)
