"""Email templates and subjects: `retain validate` answers every one with a list of one-line
problems at file:line, or none; what it accepts renders into an email or a located error."""

from __future__ import annotations

import shutil

import pytest
from hypothesis import event, given
from hypothesis import strategies as st

from engine.errors import TemplateError
from engine.mail import render
from tests.conftest import ROOT
from tests.fuzz.conftest import TIMEOUT, assert_one_located_line, examples
from tests.fuzz.strategies import hostile_text, mostly

pytestmark = [pytest.mark.timeout(TIMEOUT), pytest.mark.slow]
KINDS = sorted(render.CONTEXT_KEYS)
NAMES = ["customer", "metrics", "store", "campaign", "products", "offer", "nudge",
         "unsubscribe_url", "why", "preview_text", "subject", "loop", "x", "custome", "range",
         "cycler", "namespace", "self", "caller", "m", "item"]
ATTRIBUTES = [".first_name", ".code", ".price", ".x", ".__class__", ".items", "[0]", "['name']",
              ".missing_amount", ".percent_off", "[-1]", ".mro", ".format"]
FILTERS = ["money", "date", "upper", "length", "join(', ')", "default('x')", "int", "float",
           "round(2)", "center(10)", "center(999999999)", "truncate(5)", "replace('a', 'b')",
           "format(1)", "nosuch", "safe", "e", "wordwrap(3)", "batch(2)", "batch(0)", "slice(3)",
           "sum", "sort", "first", "last", "tojson", "attr('x')", "map(attribute='name')",
           "list", "string", "indent(4)", "title", "abs", "max", "unique", "dictsort",
           "groupby('x')", "reverse", "filesizeformat", "count", "random", "selectattr('x')"]
LITERALS = ["1", "0", "-1", "10**100", "2**64", "1e308", "'x'", "'%s'", "'{:>9999999}'",
            "[1, 2]", "{'a': 1}", "none", "true", "range(5)", "range(10**9)", "'a' * 10"]
OPERATORS = [" + ", " - ", " * ", " / ", " // ", " % ", " ** ", " ~ ", " and ", " or ",
             " == ", " < ", " in ", " is defined and ", " if x else "]

expressions = st.recursive(
    st.one_of(st.sampled_from(NAMES), st.sampled_from(LITERALS),
              st.builds(lambda n, a: n + a, st.sampled_from(NAMES), st.sampled_from(ATTRIBUTES))),
    lambda inner: st.one_of(
        st.builds(lambda e, f: f"{e}|{f}", inner, st.sampled_from(FILTERS)),
        st.builds(lambda a, op, b: f"{a}{op}{b}", inner, st.sampled_from(OPERATORS), inner),
        st.builds(lambda e: f"({e})", inner),
        st.builds(lambda e: f"not {e}", inner),
        st.builds(lambda e: f"m({e})", inner),
    ),
    max_leaves=6,
)


def statements(body: st.SearchStrategy) -> st.SearchStrategy[str]:
    return st.one_of(
        st.sampled_from(["<p>Hello</p>\n", "\n", "<table><tr><td>x</td></tr></table>",
                         "{%", "{{", "}}", "{% endif %}", "{% if %}", "{# note", "{% raw %}",
                         '{% extends "base.html" %}\n', '{% include "base.html" %}',
                         '{% include "fuzz.html" %}', '{% include "nope.html" %}',
                         '{% include "../config.yaml" %}', '{% import "base.html" as b %}',
                         "{{ super() }}", "{{ caller() }}", "{{ loop.index }}"]),
        st.builds(lambda e: "{{ " + e + " }}", expressions),
        st.builds(lambda e, b: "{% if " + e + " %}" + b + "{% endif %}\n", expressions, body),
        st.builds(lambda e, b: "{% for item in " + e + " %}" + b + "{% endfor %}\n",
                  expressions, body),
        st.builds(lambda e: "{% set x = " + e + " %}", expressions),
        st.builds(lambda b: "{% macro m(n) %}" + b + "{% endmacro %}", body),
        st.builds(lambda b: "{% block content %}" + b + "{% endblock %}", body),
        st.builds(lambda b: "{% filter upper %}" + b + "{% endfilter %}", body),
        st.builds(lambda b: "{% call m(1) %}" + b + "{% endcall %}", body),
        st.builds(lambda e, b: "{% with y = " + e + " %}" + b + "{% endwith %}", expressions,
                  body),
        hostile_text,
    )


templates = st.recursive(st.just(""), lambda body: st.lists(statements(body), max_size=5).map(
    "".join), max_leaves=12)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz-templates") / "templates"
    shutil.copytree(ROOT / "templates", root)
    return root


STORE = {"name": "Shop", "url": "https://shop.example", "postal_address": "1 Main Street",
         "currency": "EUR"}


@given(source=templates, kind=st.sampled_from(KINDS), raw=st.binary(max_size=8))
@examples(ci=250)
def test_templates_are_linted_into_located_lines(folder, source, kind, raw):
    path = folder / "fuzz.html"
    path.write_bytes(source.encode() + (raw if raw[:1] == b"\xff" else b""))
    problems = render.lint(folder, "fuzz.html", kind)
    for problem in problems:
        assert isinstance(problem, TemplateError)
        assert_one_located_line(str(problem), problem.path)
        assert problem.path.startswith(str(folder)), problem
    event("refused" if problems else "accepted")
    if problems:
        return
    # Accepted: the renderer of a run makes an email of it, or says where it fails.
    renderer = render.Renderer(folder, STORE)
    for context in render.sample_contexts(kind):
        try:
            renderer.render("fuzz.html", "Hello", context)
        except TemplateError as exc:
            assert_one_located_line(str(exc), exc.path)


@given(subject=mostly(expressions.map(lambda e: "Hi {{ " + e + " }}"), hostile_text),
       kind=st.sampled_from(KINDS))
@examples(ci=150)
def test_subjects_are_linted_into_located_lines(subject, kind):
    for problem in render.lint_subject(subject, kind, "campaigns/c.yaml", 4):
        assert str(problem).startswith("campaigns/c.yaml:4: ")
        assert "\n" not in str(problem)
