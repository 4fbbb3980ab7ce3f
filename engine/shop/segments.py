"""The segment filter: a marketer's YAML conditions compiled into one bound SQL query.

Owns: parsing a ``segment:`` mapping (all:, any:, not: and conditions) into a frozen ``Segment``
with file:line:column errors, its English ``explain()`` and its SQL ``where(now)`` over
``SOURCE`` (the planner streams an audience with it), and ``evaluate()``, which counts and
samples. What one condition can say, and its SQL and English, is segmentfields.py's;
its names are re-exported here. Must not accept raw SQL or put a marketer's value into SQL text.

Limits, so that whatever loads also runs on SQLite and PostgreSQL (SQLite refuses an expression
tree deeper than 1,000 and overflows its parser stack on deep nesting; an OR of 1,000 tags is
1,000 levels): MAX_CONDITIONS conditions, MAX_VALUES listed values and MAX_NESTING levels of
all:/any:/not: per segment; numbers up to MAX_NUMBER, windows up to MAX_WINDOW_DAYS days, texts
up to MAX_TEXT characters without control characters. tests/shop/test_segment_limits.py runs a
segment at every limit at once on both databases.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, and_, func, not_, or_, select
from sqlalchemy.sql.elements import ColumnElement

from engine import money, tables, yamlfile
from engine.config import Settings
from engine.errors import SegmentError, did_you_mean
from engine.shop import metrics
from engine.shop.segmentfields import (
    FIELDS,
    OPERATORS,
    OPERATORS_BY_KIND,
    SOURCE,
    Condition,
    Field,
    Operator,
    catalogue_markdown,
)

__all__ = ["FIELDS", "OPERATORS", "OPERATORS_BY_KIND", "SOURCE", "Condition", "Field", "Group",
           "Operator", "Segment", "catalogue_markdown", "count", "evaluate", "load_file",
           "parse"]

customers = tables.Customer.__table__
metrics_table = tables.CustomerMetrics.__table__

MAX_CONDITIONS = 100
MAX_VALUES = 500
MAX_NESTING = 10
MAX_NUMBER = 1_000_000_000      # whole numbers, days, and money in currency units
MAX_WINDOW_DAYS = 36_500        # orders_in_last_days: {days: N}: a hundred years
MAX_TEXT = 200
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class Group:
    kind: str                     # all, any, not
    children: tuple[Any, ...]

    def sql(self, now: datetime) -> ColumnElement:
        parts = [child.sql(now) for child in self.children]
        if self.kind == "not":
            return not_(parts[0])
        return and_(*parts) if self.kind == "all" else or_(*parts)

    def english(self, negated: bool = False, nested: bool = False) -> str:
        if self.kind == "not":
            return self.children[0].english(not negated, nested)
        # De Morgan: "not (a and b)" reads better as "not a or not b".
        kind = {"all": "any", "any": "all"}[self.kind] if negated else self.kind
        joiner = " and " if kind == "all" else " or "
        text = joiner.join(c.english(negated, True) for c in self.children)
        return f"({text})" if nested and len(self.children) > 1 else text


@dataclass(frozen=True)
class Segment:
    root: Condition | Group
    path: str = ""

    def explain(self) -> str:
        return "customers " + self.root.english()

    def where(self, now: datetime) -> ColumnElement:
        """The filter over ``SOURCE`` (customers JOIN customer_metrics) as of ``now``."""
        return self.root.sql(now)


# Parsing: each function gets the YAML node and the (line, column) to blame for it.

def load_file(path: str | Path) -> Segment:
    """A YAML file holding ``segment:`` (a segment file, or a campaign with a segment)."""
    document = yamlfile.load(path)
    if not isinstance(document, dict) or "segment" not in document:
        raise SegmentError('expected a "segment:" mapping at the top of the file, like '
                           '"segment: {all: [{dormancy: drowsy}]}"', path,
                           *getattr(document, "start", (1, 1)))
    return parse(document["segment"], path, _at(document, "segment"))


def parse(node: Any, path: str | Path, at: tuple[int | None, int | None] = (None, None)
          ) -> Segment:
    """The value under ``segment:`` → a frozen Segment; SegmentError at file:line:column."""
    budget = _Budget()
    return Segment(_node(node, str(path), getattr(node, "start", at), budget), str(path))


@dataclass
class _Budget:
    """What the segment parsed so far holds, against the module's limits."""

    conditions: int = 0
    values: int = 0
    depth: int = 0

    def condition(self, path: str, at: tuple) -> None:
        self.conditions += 1
        if self.conditions > MAX_CONDITIONS:
            raise SegmentError(f"a segment may have at most {MAX_CONDITIONS} conditions; this "
                               "is one more: use a list (`dormancy: [drowsy, sleeping]`) or a "
                               "coarser field", path, *at)

    def listed(self, count: int, name: str, path: str, at: tuple) -> None:
        self.values += count
        if self.values > MAX_VALUES:
            raise SegmentError(f"{name}: a segment may list at most {MAX_VALUES} values in "
                               "all; use a category or a tag instead of many SKUs or names",
                               path, *at)


def _at(container: Any, key: Any) -> tuple[int | None, int | None]:
    lines = getattr(container, "lines", None)
    try:
        return lines[key] if lines is not None else getattr(container, "start", (None, None))
    except (KeyError, IndexError):
        return getattr(container, "start", (None, None))


def _node(node: Any, path: str, at: tuple, budget: _Budget) -> Condition | Group:
    if isinstance(node, list):  # a bare list of conditions: all of them
        return _group("all", node, path, at, "segment", budget)
    if not isinstance(node, dict) or not node:
        raise SegmentError("expected all:, any:, not: or one condition like "
                           "`orders: {gte: 2}`", path, *at)
    keys = list(node)
    if len(keys) > 1:
        raise SegmentError(f'"{keys[1]}" is beside "{keys[0]}" in one item: start each '
                           'condition with its own "- " under all: or any:', path,
                           *_at(node, keys[1]))
    key, value = keys[0], node[keys[0]]
    key_at = _at(node, key)
    if key in ("all", "any", "not"):
        return _group(key, value, path, key_at, key, budget)
    budget.condition(path, key_at)
    return _condition(str(key), value, path, key_at, budget)


def _group(kind: str, value: Any, path: str, at: tuple, key: str, budget: _Budget) -> Group:
    budget.depth += 1
    if budget.depth > MAX_NESTING:
        raise SegmentError(f"all:, any: and not: are nested more than {MAX_NESTING} levels "
                           "deep here; a filter that deep cannot be read: flatten it",
                           path, *at)
    try:
        if kind == "not":  # not: [a, b] means none of them
            if isinstance(value, list):
                return Group("not", (Group("any", _children(value, path, at, key, budget)),))
            return Group("not", (_node(value, path, at, budget),))
        return Group(kind, _children(value, path, at, key, budget))
    finally:
        budget.depth -= 1


def _children(items: Any, path: str, at: tuple, key: str, budget: _Budget) -> tuple:
    if not isinstance(items, list) or not items:
        raise SegmentError(f'"{key}:" needs a list of conditions, one a line starting with '
                           '"- "', path, *at)
    return tuple(_node(item, path, _at(items, i), budget) for i, item in enumerate(items))


def _condition(name: str, raw: Any, path: str, at: tuple, budget: _Budget) -> Condition:
    field = FIELDS.get(name)
    if field is None:
        raise SegmentError(f'unknown field "{name}"'
                           + did_you_mean(name, [*FIELDS, "all", "any", "not"]), path, *at)
    days = None
    if field.window:
        example = f"`{name}: {{days: 30, gte: 2}}`"
        if not isinstance(raw, dict) or "days" not in raw:
            raise SegmentError(f"{name} needs days and a comparison, like {example}", path, *at)
        days = raw["days"]
        if isinstance(days, bool) or not isinstance(days, int) or days < 1:
            raise SegmentError(f"{name}: days must be a whole number of at least 1, "
                               f"not {days!r}", path, *_at(raw, "days"))
        if days > MAX_WINDOW_DAYS:
            raise SegmentError(f"{name}: days must be at most {MAX_WINDOW_DAYS:,} (a hundred "
                               f"years), not {days}", path, *_at(raw, "days"))
    if isinstance(raw, dict):
        ops = [key for key in raw if not (field.window and key == "days")]
        if len(ops) != 1:
            hint = (f"like `{name}: {{days: 30, gte: 2}}`" if field.window
                    else f"for a range write `{name}: {{between: [low, high]}}`")
            raise SegmentError(f"{name} takes exactly one operator; {hint}", path, *at)
        op_name = ops[0]
        value, value_at = raw[op_name], _at(raw, op_name)
    else:
        op_name = "in" if isinstance(raw, list) else "eq"
        value, value_at = raw, at
    allowed = OPERATORS_BY_KIND[field.kind]
    if op_name not in OPERATORS:
        raise SegmentError(f'unknown operator "{op_name}" for {name}'
                           + did_you_mean(str(op_name), allowed), path, *value_at)
    if op_name not in allowed:
        raise SegmentError(f'{name} cannot use "{op_name}"; it takes {", ".join(allowed)}',
                           path, *value_at)
    op = OPERATORS[op_name]
    if op.shape == "list" and isinstance(value, list):
        budget.listed(len(value), name, path, value_at)
    value = _values(field, op, value, path, value_at)
    if op.shape == "list" and len(value) == 1:  # [drowsy] is just drowsy: reads "is drowsy"
        op, value = OPERATORS["eq" if op.name == "in" else "ne"], value[0]
    return Condition(field, op, value, days)


def _values(field: Field, op: Operator, value: Any, path: str, at: tuple) -> Any:
    if op.shape == "one":
        return _scalar(field, value, path, at)
    if not isinstance(value, list) or not value or (op.shape == "pair" and len(value) != 2):
        need = "[low, high]" if op.shape == "pair" else "a list like [a, b]"
        raise SegmentError(f"{field.name}: {op.name} needs {need}", path, *at)
    items = tuple(_scalar(field, v, path, _at(value, i)) for i, v in enumerate(value))
    if op.shape == "pair" and items[0] > items[1]:
        raise SegmentError(f"{field.name}: between needs the lower bound first", path, *at)
    return items


def _scalar(field: Field, value: Any, path: str, at: tuple) -> Any:
    kind, name = field.kind, field.name
    if kind in ("number", "days"):
        if isinstance(value, bool) or not isinstance(value, int):
            raise SegmentError(f"{name} needs a whole number, not {value!r}", path, *at)
        if abs(value) > MAX_NUMBER:
            raise SegmentError(f"{name}: {value} is out of range; write a number between "
                               f"-{MAX_NUMBER:,} and {MAX_NUMBER:,}", path, *at)
    if kind in ("decimal", "probability"):
        top = 1 if kind == "probability" else MAX_NUMBER
        # "not 0 <= value <= top" also refuses YAML's .nan and .inf.
        if isinstance(value, bool) or not isinstance(value, int | float) or not (
                0 <= value <= top):
            what = "a probability from 0 to 1 like 0.7" if kind == "probability" \
                else f"a number from 0 to {MAX_NUMBER:,} like 1.5"
            raise SegmentError(f"{name} needs {what}, not {value!r}", path, *at)
        return float(value)
    if kind == "money":
        try:
            amount = Decimal(str(value)) if isinstance(value, int | float) else None
        except InvalidOperation:
            amount = None
        if isinstance(value, bool) or amount is None or not amount.is_finite() or \
                abs(amount) <= MAX_NUMBER and amount != round(amount, 2):
            raise SegmentError(f"{name} needs an amount in currency units like 49.90, "
                               f"not {value!r}", path, *at)
        if abs(amount) > MAX_NUMBER:
            raise SegmentError(f"{name}: {value!r} is out of range; write an amount between "
                               f"-{MAX_NUMBER:,} and {MAX_NUMBER:,}", path, *at)
        return money.cents(amount)
    if kind == "bool" and not isinstance(value, bool):
        raise SegmentError(f"{name} needs true or false, not {value!r}", path, *at)
    if kind in ("enum", "text", "set"):
        if isinstance(value, bool) or value is None or not isinstance(value, str | int):
            raise SegmentError(f"{name} needs text, not {value!r}: put the value in quotes "
                               f'(YAML reads no, yes, on, off and null as other types)', path, *at)
        text = str(value).strip()
        if kind == "enum":
            choices = {v.value.lower(): v.value for v in field.values}
            if text.lower() not in choices:
                raise SegmentError(f'"{text}" is not a {field.label}'
                                   + did_you_mean(text, [v.value for v in field.values]),
                                   path, *at)
            return choices[text.lower()]
        if not text:
            raise SegmentError(f"{name} needs a value, not an empty text", path, *at)
        if len(text) > MAX_TEXT or _CONTROL.search(text):
            raise SegmentError(f"{name}: a value is at most {MAX_TEXT} characters on one line, "
                               "without control characters", path, *at)
        return text
    return value


# Running a segment.

def count(engine: Engine, segment: Segment | None, now: datetime) -> int:
    """How many customers ``segment`` matches (everyone for None). Metrics must be fresh
    (``metrics.refresh``): ``evaluate`` and the planner make them so."""
    query = select(func.count()).select_from(SOURCE)
    if segment is not None:
        query = query.where(segment.where(now))
    with engine.connect() as conn:
        return conn.execute(query).scalar_one()


def evaluate(engine: Engine, settings: Settings, segment: Segment, now: datetime,
             limit: int | None = 10) -> dict[str, Any]:
    """Count the audience and show the first ``limit`` customers by id (every member when
    ``limit`` is None), with their external ids but no email addresses."""
    metrics.refresh(engine, settings, now)
    m = metrics_table.c
    # One statement for the count and the sample: COUNT(*) OVER () is computed before the
    # LIMIT, so the order subqueries (a category's buyers, a window's spenders) run once. The
    # window buffers only ids; names and metrics are joined to the few rows kept.
    first = (select(customers.c.id, func.count().over().label("matched"))
             .select_from(SOURCE).where(segment.where(now))
             .order_by(customers.c.id).limit(None if limit is None else max(limit, 1))
             .subquery())
    sample_query = (select(first.c.id, first.c.matched, customers.c.external_id,
                           customers.c.first_name,
                           customers.c.last_name, m.orders, m.spent_cents, m.recency_days,
                           m.dormancy, m.value_tier, m.lifecycle)
                    .select_from(first.join(customers, customers.c.id == first.c.id)
                                 .join(metrics_table, m.customer_id == first.c.id))
                    .order_by(first.c.id))
    with engine.connect() as conn:
        rows = conn.execute(sample_query).all()
    count = rows[0].matched if rows else 0
    rows = rows[:limit] if limit is not None else rows
    sample = [{"customer_id": r.id, "external_id": r.external_id,
               "name": f"{r.first_name} {r.last_name}".strip(),
               "orders": r.orders, "spent": money.decimal_text(r.spent_cents),
               "recency_days": r.recency_days, "dormancy": _plain(r.dormancy),
               "value_tier": _plain(r.value_tier), "lifecycle": _plain(r.lifecycle)}
              for r in rows]
    return {"count": count, "sample": sample, "explain": segment.explain()}


def _plain(value: Any) -> Any:
    return getattr(value, "value", value)
