"""The template contract: what each kind's templates get, field by field, and the check that
holds every ``x.y`` a template or subject writes to it (object, field, a suggestion, file:line).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.mail import contract
from engine.mail.contract import CONTEXT_KEYS, lint, lint_subject, sample_contexts
from engine.money import Money

ROOT = Path(__file__).resolve().parents[2]


def template(folder: Path, body: str, name: str = "oops.html") -> str:
    (folder / name).write_text('{% extends "base.html" %}\n{% block content %}\n' + body
                               + "\n{% endblock %}\n")
    return name


@pytest.mark.parametrize("body,line,expected", [
    ("<p>Hi</p>\n<p>{{ customer.frist_name }}</p>", 4,
     'customer has no field "frist_name" (did you mean "first_name"?)'),
    ("<p>{{ offer.minspend|money }}</p>", 3,
     'offer has no field "minspend" (did you mean "min_spend"?)'),
    ("{% for p in products %}\n<p>{{ p.nme }}</p>\n{% endfor %}", 4,
     'p (a product from products) has no field "nme" (did you mean "name"?)'),
    ("<p>{{ products[0].prize }}</p>", 3,
     'a product from products has no field "prize" (did you mean "price"?)'),
    ("<p>{{ metrics.spent.cent }}</p>", 3,
     'metrics.spent (an amount) has no field "cent" (did you mean "cents"?)'),
    ("<p>{{ customer['frist_name'] }}</p>", 3, 'customer has no field "frist_name"'),
    ("<p>{{ customer.first_name|money }}</p>", 3,
     'customer.first_name is text, not an amount: the money filter takes amounts'),
])
def test_a_misspelt_field_names_the_object_the_field_and_the_right_one(project, body, line,
                                                                       expected):
    folder = project / "templates"
    [problem] = lint(folder, template(folder, body), "winback")
    assert (problem.path, problem.line) == (str(folder / "oops.html"), line)
    assert expected in problem.message
    assert "dict object" not in problem.message and "TypeError" not in problem.message


def test_the_problem_lists_the_fields_the_object_has(project):
    folder = project / "templates"
    [problem] = lint(folder, template(folder, "{{ nudge.missing }}"), "spend_threshold")
    assert problem.message.endswith("nudge has missing_amount, threshold, spent, gift_name, "
                                    "period_ends_on")


def test_fields_the_contract_has_pass_and_is_defined_may_probe(project):
    folder = project / "templates"
    body = ("{% for p in products|sort(attribute='price') %}{{ p.name }} {{ p.price.cents }}"
            "{% endfor %}{{ offer.min_spend|money }} {{ offer.expires_on|date }}"
            "{% if customer.nickname is defined %}{{ customer.nickname }}{% endif %}")
    assert lint(folder, template(folder, body), "winback") == []


def test_a_subject_typo_points_at_the_subject_line():
    [problem] = lint_subject("{{ customer.frist_name }}, come back", "winback",
                             "campaigns/w.yaml", 7)
    assert str(problem).startswith('campaigns/w.yaml:7: customer has no field "frist_name" '
                                   '(did you mean "first_name"?)')


@pytest.mark.parametrize("kind", sorted(CONTEXT_KEYS))
def test_every_sample_context_has_exactly_the_fields_the_contract_declares(kind):
    """The samples (previews, lint) and the field table are one contract: they cannot drift."""
    for sample in sample_contexts(kind):
        assert CONTEXT_KEYS[kind] - {"subject"} <= set(sample) <= set(contract.VARIABLES)
        for name, value in sample.items():
            variable = contract.VARIABLES[name]
            items = value if variable.many else [value]
            for item in items:
                if item is None:
                    assert variable.optional, f"{name} may not be None"
                    continue
                if variable.fields:
                    assert_has_the_fields(item, variable.fields, name)


def assert_has_the_fields(item: dict, fields, name: str) -> None:
    assert set(item) == {f.name for f in fields}, name
    for field in fields:
        value = item[field.name]
        if field.type == "money" and value is not None:
            assert isinstance(value, Money), f"{name}.{field.name}"
        for inner in value if field.fields else ():
            assert_has_the_fields(inner, field.fields, f"{name}.{field.name}")


def test_the_reference_in_docs_is_generated_from_the_contract():
    from engine.mail import reference

    written = (ROOT / "docs" / "templates.md").read_text()
    assert written == reference.markdown(), (
        "docs/templates.md is out of date: run .venv/bin/python -m engine.mail.reference")
    for kind in CONTEXT_KEYS:
        assert f"## `{kind}`" in written
    assert "`offer.min_spend` | money" in written and "`offer.expires_on` | date" in written
    assert "docs/templates.md" in (ROOT / "README.md").read_text()
