"""Schema revisions on SQLite and PostgreSQL: the revisions build exactly tables.py's schema; a
database made before revisions is upgraded in place keeping every row; a database at another
revision than the code's is refused with one sentence naming the fix; `retain db current`.

Every revision in engine/migrations/versions/ runs here on both databases, up and down.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from datetime import datetime
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import MetaData, inspect, select, text
from sqlmodel import SQLModel
from typer.testing import CliRunner

from engine import db, migrate
from engine.cli import app
from engine.errors import SchemaError
from engine.tables import code_key_sql
from tests.conftest import BACKENDS

V1 = Path(__file__).parent / "data" / "schema_v1"
# SQLite's reflection skips an index on an expression (ix_orders_discount_key), and says so;
# ``indexes`` compares every index's definition instead.
pytestmark = [pytest.mark.filterwarnings("ignore:Skipped unsupported reflection"),
              pytest.mark.filterwarnings("ignore:autogenerate skipping metadata-specified")]


def empty_database(backend: str, tmp_path: Path) -> str:
    """The URL of an empty database: a new SQLite file, or the PostgreSQL test database emptied."""
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'shop.db'}"
    url = os.environ.get("RETAIN_TEST_POSTGRES_URL")
    if not url:
        pytest.skip("set RETAIN_TEST_POSTGRES_URL to run the migration tests on PostgreSQL")
    drop_everything(url)
    return url


def drop_everything(url: str) -> None:
    pg = db.connect(url, check_revision=False)
    with pg.begin() as conn:
        conn.exec_driver_sql("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
    pg.dispose()


@pytest.fixture(params=BACKENDS)
def url(request, tmp_path):
    found = empty_database(request.param, tmp_path)
    yield found
    if request.param == "postgres":  # the next test's db.connect finds an empty database
        drop_everything(found)


@pytest.fixture
def raw(url):
    """An engine on ``url`` that neither checks nor makes the schema."""
    engine = db.connect(url, check_revision=False)
    yield engine
    engine.dispose()


def cli(config_path, url, *args):
    return CliRunner().invoke(app, ["--config", str(config_path), "--db", url, *args])


def not_redundant(obj, name, kind, reflected, compare_to) -> bool:
    """A UNIQUE on exactly the primary key's columns (meta.key) is redundant: PostgreSQL does not
    create it and SQLite does not index it twice, so only SQLite's reflection shows it."""
    if kind != "unique_constraint" or obj.table is None:
        return True
    return {c.name for c in obj.columns} != set(obj.table.primary_key.columns.keys())


def differences(engine) -> list:
    """What Alembic's autogenerate finds between the database and tables.py: [] when equal."""
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True,
                                                         "include_object": not_redundant})
        found = compare_metadata(context, SQLModel.metadata)
        if engine.dialect.name == "postgresql":  # autogenerate does not compare enum values
            labels = {}
            for name, label in conn.execute(text(
                    "SELECT t.typname, e.enumlabel FROM pg_enum e JOIN pg_type t "
                    "ON t.oid = e.enumtypid ORDER BY t.typname, e.enumsortorder")):
                labels.setdefault(name, []).append(label)
            wanted = {column.type.name: list(column.type.enums)
                      for table in SQLModel.metadata.tables.values()
                      for column in table.columns if hasattr(column.type, "enums")}
            found += [("enum", name, labels.get(name), values)
                      for name, values in wanted.items() if labels.get(name) != values]
    return found


def run_revisions(engine, direction: str, target: str) -> None:
    """Run the revision files themselves (not create_all), as `retain db upgrade` does."""
    with migrate.transaction(engine) as conn:
        getattr(command, direction)(migrate.alembic_config(conn), target)


# -- the revisions build tables.py's schema ------------------------------------------------------

def test_every_revision_builds_exactly_tables_py_and_undoes_itself(raw):
    run_revisions(raw, "upgrade", "head")
    assert differences(raw) == []
    # The head every command checks (read from the files' names) is Alembic's.
    assert migrate.status(raw).revision == migrate.scripts().get_current_head()
    assert migrate.status(raw).state is migrate.State.current

    run_revisions(raw, "downgrade", "base")
    assert set(inspect(raw).get_table_names()) <= {"alembic_version"}
    if raw.dialect.name == "postgresql":  # no enum type left behind to collide with
        with raw.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM pg_enum")).scalar() == 0

    run_revisions(raw, "upgrade", "head")
    assert differences(raw) == []
    revised = indexes(raw)
    with raw.begin() as conn:
        SQLModel.metadata.drop_all(conn)
        conn.exec_driver_sql("DROP TABLE alembic_version")
    migrate.create(raw)
    assert revised == indexes(raw)


def indexes(engine) -> dict[str, str]:
    """Every index's definition as the database states it. Autogenerate compares neither an
    index's WHERE nor, on SQLite, an expression index (ix_orders_discount_key): these do."""
    query = ("SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL"
             if engine.dialect.name == "sqlite" else
             "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public'")
    with engine.connect() as conn:
        return {name: re.sub(r"\s+", " ", sql) for name, sql in conn.exec_driver_sql(query)}


def test_an_empty_database_is_made_at_head_by_the_first_command(url, config_path, tmp_path):
    """`retain import` on an empty database makes it at the code's revision (create_all,
    stamped: the same schema as the revisions, as the test above proves)."""
    customers = tmp_path / "customers.csv"
    customers.write_text("customer_id,email\nc1,ann@example.com\n")
    result = cli(config_path, url, "import", "customers", str(customers))
    assert result.exit_code == 0, result.output
    engine = db.connect(url, check_revision=False)
    assert differences(engine) == []
    assert migrate.status(engine).revision == migrate.head()
    engine.dispose()


# -- a database made before revisions ------------------------------------------------------------

V1_ROWS = {  # rows in the columns the schema had then; datetimes in UTC, as stored
    "customers": [
        dict(id=1, external_id="c1", email="Drowsy@Example.com", email_key="drowsy@example.com",
             first_name="Zoé", last_name="Lee", accepts_marketing=True,
             consent_at=datetime(2025, 1, 1), tags="", created_at=datetime(2025, 1, 1)),
        dict(id=2, external_id="c2", email="gone@example.com", email_key="gone@example.com",
             first_name="Bo", last_name="Ng", accepts_marketing=False, tags="vip",
             created_at=datetime(2025, 2, 1)),
    ],
    "products": [dict(id=1, sku="YOGA-001", name="Mat", category="yoga", price_cents=4900,
                      url="", image_url="", created_at=datetime(2025, 1, 1))],
    "orders": [
        dict(id=1, external_id="o1", customer_id=1, created_at=datetime(2026, 4, 6, 10),
             local_date=datetime(2026, 4, 6).date(), status="paid", total_cents=4900,
             currency="EUR"),
        dict(id=2, external_id="o2", customer_id=2, created_at=datetime(2026, 6, 1, 10),
             local_date=datetime(2026, 6, 1).date(), status="refunded", total_cents=1000,
             currency="EUR", discount_code="BACK-X"),
    ],
    "order_items": [dict(id=1, order_id=1, sku="YOGA-001", quantity=1, unit_price_cents=4900)],
    "deliveries": [dict(id=1, campaign_id="spend-gift", customer_id=2, occasion="2026-05",
                        status="sent", priority=50, payload="{}", attempts=1,
                        message_id="<1@retain>", planned_at=datetime(2026, 5, 2, 9),
                        sent_at=datetime(2026, 5, 2, 9, 1))],
    "coupons": [dict(id=1, code="GIFT-ABC", kind="gift", campaign_id="spend-gift",
                     customer_id=2, delivery_id=1, min_spend_cents=0, gift_sku="YOGA-001",
                     period="2026-05", issued_at=datetime(2026, 5, 2, 9))],
    "suppressions": [dict(email_key="gone@example.com", reason="unsubscribed", source="link",
                          created_at=datetime(2026, 5, 3))],
    "meta": [dict(key="schema_version", value="1"), dict(key="data_version", value="3")],
}


def make_v1_database(engine) -> MetaData:
    """A database as the code before revisions made it: its create_all statements (frozen in
    tests/data/schema_v1/), ``meta.schema_version = "1"``, no alembic_version; some rows."""
    sql = (V1 / f"{engine.dialect.name}.sql").read_text()
    statements = [s for s in re.sub(r"^--.*$", "", sql, flags=re.M).split(";") if s.strip()]
    with engine.begin() as conn:
        for statement in statements:
            conn.exec_driver_sql(statement)
    return insert(engine, V1_ROWS)


def insert(engine, rows: dict[str, list[dict]]) -> MetaData:
    """Write ``rows`` into the tables the database has now; return those tables."""
    schema = MetaData()
    schema.reflect(engine, only=lambda name, _: name != "alembic_version")
    with engine.begin() as conn:
        for name, table_rows in rows.items():
            for row in table_rows:
                conn.execute(schema.tables[name].insert(), row)
    return schema


def dump(engine, v1: MetaData) -> dict[str, list[tuple]]:
    """Every row of every table, in the columns the schema had before revisions."""
    with engine.connect() as conn:
        return {name: [tuple(row) for row in conn.execute(
                    text(f"SELECT {', '.join(table.columns.keys())} FROM {name} ORDER BY "
                         f"{', '.join(table.primary_key.columns.keys())}"))]
                for name, table in v1.tables.items()}


def test_a_database_made_before_revisions_is_upgraded_in_place_keeping_every_row(
        raw, url, project, config_path):
    v1 = make_v1_database(raw)
    before = dump(raw, v1)

    refused = cli(config_path, url, "plan", "winback", "--as-of", "2026-06-15")
    assert refused.exit_code == 1
    assert refused.output.strip() == (
        f"error: this database was made before schema revisions, the code expects "
        f"{migrate.head()}: run `retain db upgrade`")

    upgraded = cli(config_path, url, "db", "upgrade")
    assert upgraded.exit_code == 0, upgraded.output
    assert "recognised a database made before schema revisions as 0001 (baseline)" in (
        upgraded.output)

    after = dump(raw, v1)
    assert after.pop("meta") == [("data_version", "3")]  # alembic_version is the record now
    assert after == {k: v for k, v in before.items() if k != "meta"}
    assert differences(raw) == []

    plan = cli(config_path, url, "plan", "winback", "--as-of", "2026-06-15", "--json")
    assert plan.exit_code == 0, plan.output
    winback = json.loads(plan.output)["campaigns"][0]
    assert winback["id"] == "winback" and winback["recipients"] == 1  # Zoé, 70 days dormant
    assert cli(config_path, url, "db", "upgrade").output.strip() == (
        f"already at {migrate.head()}: up to date")


def test_a_database_at_0007_gets_the_code_key_index_and_64_bit_totals_keeping_every_row(
        raw, url, config_path):
    """0008 indexes the codes orders already carry; 0009 widens the per-customer totals (a
    table rewrite on PostgreSQL, a copy on SQLite) with their rows."""
    run_revisions(raw, "upgrade", "0007")
    rows = {k: V1_ROWS[k] for k in ("customers", "orders", "deliveries", "coupons")}
    rows["customer_metrics"] = [dict(customer_id=1, orders=1, spent_cents=4900,
                                     avg_order_value_cents=4900, recency_days=70, r_score=1,
                                     f_score=1, m_score=1, dormancy="half_asleep",
                                     value_tier="A", lifecycle="exploration")]
    rows["customer_predictions"] = [dict(customer_id=1, churn_risk=0.25, p_alive=0.8,
                                         expected_orders=1.5, predicted_clv_cents=7350,
                                         churn_tier="low")]
    schema = insert(raw, rows)
    before = dump(raw, schema)

    upgraded = cli(config_path, url, "db", "upgrade")
    assert upgraded.exit_code == 0, upgraded.output
    assert upgraded.output.strip() == f"upgraded from 0007 to {migrate.head()}"
    assert dump(raw, schema) == before
    assert differences(raw) == []
    orders = SQLModel.metadata.tables["orders"]
    with raw.begin() as conn:
        typed = select(orders.c.external_id).where(  # the refund's code, as typed, found by key
            orders.c.discount_code.is_not(None), code_key_sql(orders.c.discount_code) == "BACKX")
        assert conn.execute(typed).scalars().all() == ["o2"]
        conn.execute(text("UPDATE customer_metrics SET spent_cents = 3000000000"))
        conn.execute(text("UPDATE customer_predictions SET predicted_clv_cents = 3000000000"))
        assert conn.execute(text("SELECT spent_cents + predicted_clv_cents FROM "
                                 "customer_metrics NATURAL JOIN customer_predictions")
                            ).scalar() == 6_000_000_000


def test_the_baseline_is_exactly_the_schema_made_before_revisions_on_sqlite(tmp_path):
    """Statement for statement: SQLite keeps each table's and index's CREATE text."""
    made_then = db.connect(f"sqlite:///{tmp_path / 'then.db'}", check_revision=False)
    make_v1_database(made_then)
    baseline = db.connect(f"sqlite:///{tmp_path / 'now.db'}", check_revision=False)
    run_revisions(baseline, "upgrade", migrate.BASELINE)

    def schema(engine):
        with engine.connect() as conn:
            return [(kind, name, re.sub(r"\s+", " ", sql or "")) for kind, name, sql in
                    conn.execute(text("SELECT type, name, sql FROM sqlite_master WHERE "
                                      "tbl_name <> 'alembic_version' ORDER BY name"))]

    assert schema(baseline) == schema(made_then)
    made_then.dispose()
    baseline.dispose()


# -- a database at another revision than the code's ----------------------------------------------

NEXT = '''"""A later schema change, for tests: customers get a nickname; tags may be NULL."""

import sqlalchemy as sa
from alembic import op

revision = "{revision}"
down_revision = "{down}"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # SQLite cannot alter a column: batch mode copies customers, the parent of most tables.
    with op.batch_alter_table("customers") as batch:
        batch.add_column(sa.Column("nickname", sa.String(), nullable=True))
        batch.alter_column("tags", existing_type=sa.String(), nullable=True)
    {fail}


def downgrade() -> None:
    with op.batch_alter_table("customers") as batch:
        batch.alter_column("tags", existing_type=sa.String(), nullable=False)
        batch.drop_column("nickname")
'''


@pytest.fixture
def next_code(tmp_path, monkeypatch):
    """The code of a later release: the same revisions and one more. ``next_code(fail=True)``
    gives one whose new revision fails after changing the table."""

    def make(fail: bool = False) -> str:
        folder = tmp_path / ("failing" if fail else "next")
        shutil.copytree(migrate.MIGRATIONS, folder)
        new = f"{int(migrate.head()) + 1:04d}"
        (folder / "versions" / f"{new}_next.py").write_text(NEXT.format(
            revision=new, down=migrate.head(),
            fail='raise RuntimeError("the revision failed half way")' if fail else ""))
        monkeypatch.setattr(migrate, "MIGRATIONS", folder)
        migrate.scripts.cache_clear()
        return new

    yield make
    monkeypatch.undo()
    migrate.scripts.cache_clear()


def test_an_older_database_is_refused_then_upgraded_keeping_every_row(
        url, raw, project, config_path, next_code):
    db.create_schema(raw)
    schema = insert(raw, {k: V1_ROWS[k] for k in ("customers", "orders", "deliveries",
                                                  "coupons")})
    current = migrate.head()
    before = dump(raw, schema)
    new = next_code()

    refused = cli(config_path, url, "plan", "--as-of", "2026-06-15")
    assert refused.exit_code == 1
    assert refused.output.strip() == (f"error: this database is at revision {current}, the "
                                      f"code expects {new}: run `retain db upgrade`")
    shown = cli(config_path, url, "db", "current")
    assert shown.exit_code == 0
    assert shown.output.splitlines()[1:] == [f"code:     {new}", refused.output.strip()[7:]]

    upgraded = cli(config_path, url, "db", "upgrade")
    assert upgraded.exit_code == 0, upgraded.output
    assert upgraded.output.strip() == f"upgraded from {current} to {new}"
    assert dump(raw, schema) == before  # the copied customers kept their ids
    columns = {c["name"]: c for c in inspect(raw).get_columns("customers")}
    assert "nickname" in columns and columns["tags"]["nullable"]
    with raw.connect() as conn:  # the foreign keys still point at the copied table
        assert conn.execute(text("SELECT count(*) FROM orders JOIN customers ON "
                                 "customers.id = orders.customer_id")).scalar() == 2
    assert cli(config_path, url, "plan", "--as-of", "2026-06-15").exit_code == 0


def test_a_newer_database_is_refused_by_older_code(url, raw, project, config_path,
                                                   next_code, monkeypatch):
    current = migrate.head()
    new = next_code()
    assert cli(config_path, url, "db", "upgrade").exit_code == 0  # made at the later revision
    monkeypatch.undo()  # back to this code
    migrate.scripts.cache_clear()

    for args in (["plan"], ["db", "upgrade"]):
        refused = cli(config_path, url, *args)
        assert refused.exit_code == 1
        assert refused.output.strip() == (f"error: this database is at revision {new}, newer "
                                          f"than this code (which expects {current}): "
                                          "upgrade retain")


def test_a_failing_revision_changes_nothing(raw, next_code):
    db.create_schema(raw)
    insert(raw, {"customers": V1_ROWS["customers"]})
    current = migrate.head()
    next_code(fail=True)
    with pytest.raises(RuntimeError, match="half way"):
        migrate.upgrade(raw)
    assert migrate.status(raw).revision == current
    columns = {c["name"]: c for c in inspect(raw).get_columns("customers")}
    assert "nickname" not in columns and not columns["tags"]["nullable"]
    with raw.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM customers")).scalar() == 2
    with pytest.raises(SchemaError, match="run `retain db upgrade`"):
        migrate.ready(raw)


# -- retain db current ---------------------------------------------------------------------------

def test_db_current_shows_the_database_and_code_revisions(url, raw, config_path):
    head = migrate.head()
    shown = cli(config_path, url, "db", "current")
    assert shown.exit_code == 0
    assert shown.output.splitlines() == [
        f"database: none (empty) ({db.redact(url)})", f"code:     {head}",
        f"empty: retain import, retain demo or retain db upgrade makes it at {head}"]

    db.create_schema(raw)
    assert cli(config_path, url, "db", "current").output.splitlines() == [
        f"database: {head} ({db.redact(url)})", f"code:     {head}", "up to date"]


def test_a_password_in_the_database_url_is_not_shown(config_path, tmp_path):
    url = "postgresql+psycopg://shop:s3cret@127.0.0.1:1/none"
    shown = cli(config_path, url, "db", "current")
    assert shown.exit_code == 1
    assert "s3cret" not in shown.output and "shop:***@127.0.0.1:1" in shown.output


def test_tables_without_a_revision_or_the_old_mark_are_refused(raw, url, project, config_path):
    with raw.begin() as conn:
        SQLModel.metadata.tables["customers"].create(conn)
    refused = cli(config_path, url, "plan")
    assert refused.exit_code == 1
    assert refused.output.strip() == (
        "error: this database has retain tables but no schema revision: point database.url "
        "at a retain database or an empty one")


# -- retain db revision --------------------------------------------------------------------------

def test_db_revision_writes_the_next_revision_from_what_tables_py_changes(
        config_path, next_code):
    """The later code's revision 0002 added customers.nickname, which tables.py lacks: the next
    revision found by `retain db revision` takes it away again."""
    new = next_code()
    written = CliRunner().invoke(app, ["--config", str(config_path), "db", "revision",
                                       "drop nickname"])
    assert written.exit_code == 0, written.output
    path = migrate.MIGRATIONS / "versions" / f"{int(new) + 1:04d}_drop_nickname.py"
    assert f"wrote {path}" in written.output
    source = path.read_text()
    assert f'down_revision = "{new}"' in source
    assert 'batch_op.drop_column("nickname")' in source
    assert "engine.tables" not in source and "sqlmodel" not in source
    assert migrate.head() == f"{int(new) + 1:04d}"
