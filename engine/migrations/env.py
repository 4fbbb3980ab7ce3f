"""Alembic's ``env.py``: configure the migration context on the connection ``engine.migrate``
passes in (``config.attributes["connection"]``), already inside its transaction.

Must not open a database, read a URL or commit: the caller owns the connection and the
transaction, so an upgrade is all or nothing. Offline (SQL script) mode is not offered.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import DateTime, String, TypeDecorator
from sqlmodel import SQLModel

from engine import tables  # noqa: F401 - registers every table on SQLModel.metadata


def render_item(kind: str, obj, autogen_context) -> str | bool:
    """Write a column's plain SQL type into a new revision, never a class from engine.tables or
    sqlmodel (``UTCDateTime``, ``AutoString``): a released revision must not change when they do."""
    if kind != "type" or not isinstance(obj, TypeDecorator):
        return False
    if isinstance(obj.impl, DateTime):
        return "sa.DateTime()"
    if type(obj.impl) is String:
        return f"sa.String(length={obj.impl.length})" if obj.impl.length else "sa.String()"
    return False


context.configure(
    connection=context.config.attributes["connection"],
    target_metadata=SQLModel.metadata,
    # SQLite changes a table by copying it; batch operations do that and run on PostgreSQL too.
    render_as_batch=True,
    render_item=render_item,
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
