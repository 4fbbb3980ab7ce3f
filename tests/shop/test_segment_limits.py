"""A segment's limits: whatever `retain validate` accepts, `retain plan` and `retain run` execute
on SQLite and on PostgreSQL; one step past a limit is refused at its line, before anything runs.

SQLite refuses an expression tree deeper than 1,000 ("Expression tree is too large") and
overflows its parser stack on deep nesting; a segment of 10,000 conditions used to pass
validation and then crash plan and run there. The segment below sits at every limit at once,
in the shape that is deepest in SQL: nested all/any/not to the last level, and one tag
condition (an OR of LIKEs, one level per value) holding most of the listed values.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from engine.cli import app
from engine.shop import segments
from tests.conftest import BACKENDS, ROOT, fresh_postgres
from tests.shopdata import Shop

CAMPAIGN = ("id: deep\nkind: winback\ntemplate: winback.html\nsubject: Come back\n"
            "steps: [{tier: drowsy, coupon: {percent_off: 10}}]\n")


def segment_at_every_limit() -> dict:
    """MAX_NESTING levels, MAX_CONDITIONS conditions, MAX_VALUES listed values."""
    levels = segments.MAX_NESTING
    # Levels 1..levels-1 hold the next level and one condition; the last holds the rest.
    rest = segments.MAX_CONDITIONS - (levels - 1)
    skus, categories = 50, 50
    tags = segments.MAX_VALUES - skus - categories
    innermost = [{"tag": [f"t{i}" for i in range(tags)]},
                 {"bought_sku": [f"SKU-{i}" for i in range(skus)]},
                 {"bought_category": [f"cat{i}" for i in range(categories)]}]
    fields = [{"orders_in_last_days": {"days": 30, "lt": 5}}, {"country": "FR"},
              {"spent_in_last_days": {"days": 90, "gte": 10}}, {"recency_days": {"gte": 1}},
              {"days_since_first_order": {"between": [1, 5000]}}]
    innermost += [fields[i % len(fields)] for i in range(rest - len(innermost))]
    node: dict = {"any": innermost}
    for level in range(levels - 1, 0, -1):
        kind = ("all", "any", "not")[level % 3]
        node = {kind: [node, {"accepts_marketing": True} if level == 1 else
                       {"orders": {"gte": level}}]}
    if "any" not in node:  # the top level must let a consenting customer in
        node = {"any": node[next(iter(node))]}
    return node


def make_project(tmp_path: Path, segment: str) -> Path:
    shutil.copytree(ROOT / "templates", tmp_path / "templates")
    (tmp_path / "campaigns").mkdir()
    (tmp_path / "campaigns" / "deep.yaml").write_text(CAMPAIGN + segment)
    text = (ROOT / "config.yaml").read_text().replace("sqlite:///retain.db", "sqlite:///shop.db")
    text = text.replace("\nsmtp:", "\ndelivery:\n  transport: file\n\nsmtp:", 1)
    (tmp_path / "config.yaml").write_text(text)
    return tmp_path


def invoke(project: Path, url: str, *args: str):
    return CliRunner().invoke(app, ["--config", str(project / "config.yaml"), "--db", url, *args])


def count_conditions(node) -> int:
    if isinstance(node, dict):
        key, value = next(iter(node.items()))
        return count_conditions(value) if key in ("all", "any", "not") else 1
    return sum(count_conditions(item) for item in node)


def test_the_segment_really_sits_at_every_limit():
    segment = segment_at_every_limit()
    assert count_conditions(segment) == segments.MAX_CONDITIONS
    parsed = segments.parse(segment, "x.yaml")
    depth, node = 0, parsed.root
    while isinstance(node, segments.Group):
        depth += node.kind != "not" or not isinstance(node.children[0], segments.Group) \
            or node.children[0].kind != "any"
        node = node.children[0]
    assert depth == segments.MAX_NESTING


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_segment_at_every_limit_validates_plans_and_runs(tmp_path, engine, backend):
    target = fresh_postgres("segment limit") if backend == "postgres" else engine
    url = target.url.render_as_string(hide_password=False)
    shop = Shop(target)
    shop.product("MUG-1")
    for _ in range(3):
        shop.order(shop.customer(), days_ago=70, items={"MUG-1": 2000})  # drowsy
    segment = yaml.safe_dump({"segment": segment_at_every_limit()}, default_flow_style=False)
    project = make_project(tmp_path, segment)

    assert invoke(project, url, "validate").exit_code == 0
    plan = invoke(project, url, "plan", "--as-of", "2026-06-15T12:00", "--json")
    assert plan.exit_code == 0, plan.output
    (deep,) = json.loads(plan.output)["campaigns"]
    assert deep["recipients"] + deep["held_out"] == 3
    run = invoke(project, url, "run", "--as-of", "2026-06-15T12:00")
    assert run.exit_code == 0, run.output
    assert len(list((project / "outbox").glob("*.eml"))) == deep["recipients"]
    if target is not engine:
        target.dispose()


def one_past(limit: str) -> tuple[str, int, str]:
    """A segment one step past ``limit``, the line refused and the message."""
    if limit == "conditions":
        items = "".join(f"    - orders: {{gte: {i}}}\n"
                        for i in range(segments.MAX_CONDITIONS + 1))
        return ("segment:\n  all:\n" + items, 8 + segments.MAX_CONDITIONS,
                f"a segment may have at most {segments.MAX_CONDITIONS} conditions")
    if limit == "values":
        skus = ", ".join(f"S{i}" for i in range(segments.MAX_VALUES - 9))
        return (f"segment:\n  all:\n    - bought_sku: [{skus}]\n"
                f"    - tag: [a, b, c, d, e, f, g, h, i, j]\n", 9,
                f"a segment may list at most {segments.MAX_VALUES} values")
    nested = "{all: [" * (segments.MAX_NESTING + 1) + "{orders: 1}" + "]}" * (
        segments.MAX_NESTING + 1)
    return f"segment: {nested}\n", 6, f"nested more than {segments.MAX_NESTING} levels"


@pytest.mark.parametrize("limit", ["conditions", "values", "nesting"])
def test_one_step_past_a_limit_is_refused_at_its_line(tmp_path, limit):
    segment, line, message = one_past(limit)
    project = make_project(tmp_path, segment)
    result = invoke(project, "sqlite:///" + str(tmp_path / "shop.db"), "validate")
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    (problem,) = [row for row in result.output.splitlines() if "deep.yaml" in row]
    assert problem.startswith(f"{project / 'campaigns' / 'deep.yaml'}:{line}:")
    assert message in problem
    run = invoke(project, "sqlite:///" + str(tmp_path / "shop.db"), "run")
    assert run.exit_code == 1
    assert not (tmp_path / "shop.db").exists()


def test_ten_thousand_conditions_are_refused_by_validate_not_by_sqlite(tmp_path):
    items = "".join(f"    - orders: {{gte: {i}}}\n" for i in range(10_000))
    project = make_project(tmp_path, "segment:\n  all:\n" + items)
    for command in ("validate", "plan"):
        result = invoke(project, "sqlite:///" + str(tmp_path / "shop.db"), command)
        assert result.exit_code == 1
        assert "Expression tree" not in result.output
        # The file's own limit on values comes first here (4 a condition): one line, located.
        first = result.output.splitlines()[0]
        assert first.startswith(f"{project / 'campaigns' / 'deep.yaml'}:4003:")
        assert "more than 20,000 values" in first


@pytest.mark.parametrize("condition, message", [
    ("orders: {gte: 100000000000000000000}", "is out of range"),
    ("spent: {gte: .inf}", "needs an amount in currency units"),
    ("spent: {gte: 1.0e+300}", "is out of range"),
    ("orders_in_last_days: {days: 10000000000, gte: 1}", "days must be at most 36,500"),
    ('tag: "a\\0b"', "without control characters"),
    (f"country: {'x' * 201}", f"at most {segments.MAX_TEXT} characters"),
])
def test_values_the_databases_cannot_compare_are_refused_at_load(condition, message):
    from engine import yamlfile
    from engine.errors import SegmentError

    with pytest.raises(SegmentError) as caught:
        segments.parse(yamlfile.parse(f"all:\n  - {condition}\n", "s.yaml"), "s.yaml")
    assert str(caught.value).startswith("s.yaml:2:")
    assert message in str(caught.value)
