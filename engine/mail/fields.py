"""The fields a template variable has, and the check of every ``x.y`` a template writes.

Owns: ``Field`` and ``Variable`` (the vocabulary contract.py's ``VARIABLES`` is written in),
``AMOUNT`` (the fields of a money value), and ``problems()``: a walk over a compiled template
that follows each variable through attribute and item lookups, ``for`` loops over lists
(``{% for p in products %}`` makes ``p`` a product) and list filters, and reports a field the
contract does not declare, naming the object, the field and the closest declared one, at the
template's line: ``customer has no field "frist_name" (did you mean "first_name"?)``. It also
refuses the ``money`` filter on a field that is not an amount. Names a template binds itself
(``set``, macros, ``with``) are not checked; ``x.y is defined`` may probe. Must not render,
know campaign kinds (contract.py passes the variables a kind gets) or touch the database.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jinja2 import nodes

from engine.errors import TemplateError


@dataclass(frozen=True)
class Field:
    """One field of a variable: its name, its type (money, date, text, number, url, yes or no,
    list of text) and what it holds; a list of mappings (a checkout's items) has ``fields``,
    each of its items being an ``item``."""
    name: str
    type: str
    meaning: str
    fields: tuple[Field, ...] = ()
    item: str = ""


@dataclass(frozen=True)
class Variable:
    """A top-level template variable. With ``fields``, a mapping (or, when ``many``, a list of
    mappings, each ``item``); without, a value of ``type``. ``optional``: may be None."""
    name: str
    meaning: str
    fields: tuple[Field, ...] = ()
    type: str = "text"
    many: bool = False
    item: str = ""
    optional: bool = False


# The fields of a money value itself: {{ offer.min_spend.cents }}.
AMOUNT = (Field("cents", "number", "the amount in cents (hundredths), for arithmetic"),
          Field("currency", "text", 'its ISO currency code, "EUR"'))
# Filters that keep a list a list: {% for p in products|sort(attribute="price") %}.
_LIST_FILTERS = frozenset({"sort", "reverse", "list", "unique", "selectattr", "rejectattr"})


@dataclass(frozen=True)
class _Value:
    """What an expression is known to be: its name for a person, and its fields (if any)."""
    label: str            # "customer", "p (a product from products)", "metrics.spent"
    owner: str            # the object's name in "… has a, b, c": "customer", "a product"
    fields: tuple[Field, ...] = ()
    type: str = "text"
    many: bool = False
    item: str = ""


def problems(tree: nodes.Template, variables: dict[str, Variable], path: str | Path | None,
             line: int | None = None) -> list[TemplateError]:
    """Every unknown field and misused ``money`` filter in ``tree``, located at ``path`` and
    the template's line (or ``line``, for a subject written in a YAML file)."""
    walk = _Walk(variables, path, line, _probed(tree))
    walk.visit(tree, {name: _of(variable) for name, variable in variables.items()})
    return walk.found


def _probed(tree: nodes.Template) -> set[str]:
    """"customer.nickname" for every ``customer.nickname is defined`` in the template: a field
    a template asks about before using it is not reported."""
    found = set()
    for test in tree.find_all(nodes.Test):
        if test.name in ("defined", "undefined") and isinstance(test.node, nodes.Getattr):
            found.add(_dotted(test.node))
    return found


def _dotted(node: nodes.Node) -> str:
    if isinstance(node, nodes.Getattr):
        return f"{_dotted(node.node)}.{node.attr}"
    return node.name if isinstance(node, nodes.Name) else "?"


def _of(variable: Variable) -> _Value:
    return _Value(variable.name, variable.name, variable.fields, variable.type, variable.many,
                  variable.item)


class _Walk:
    def __init__(self, variables: dict[str, Variable], path: Any, line: int | None,
                 probed: set[str]):
        self.variables, self.path, self.line, self.probed = variables, path, line, probed
        self.found: list[TemplateError] = []

    def visit(self, node: nodes.Node, scope: dict[str, _Value | None]) -> None:
        if isinstance(node, nodes.For):
            self.visit(node.iter, scope)
            inner = dict(scope)
            listed = self.value(node.iter, scope)
            for name in _names(node.target):
                inner[name] = None
            if isinstance(node.target, nodes.Name) and listed is not None and listed.many:
                inner[node.target.name] = _Value(
                    f"{node.target.name} ({listed.item} from {listed.label})", listed.item,
                    listed.fields)
            for child in (*node.body, *node.else_, *([node.test] if node.test else [])):
                self.visit(child, inner)
            return
        if isinstance(node, nodes.Assign | nodes.AssignBlock | nodes.With | nodes.Macro |
                      nodes.CallBlock):
            scope = dict(scope)
            for target in _bound(node):
                scope[target] = None
        if isinstance(node, nodes.Getattr | nodes.Getitem | nodes.Filter):
            known = self.value(node, scope) if not isinstance(node, nodes.Filter) else \
                self.value(node.node, scope) if node.node is not None else None
            if isinstance(node, nodes.Filter):
                for arg in (*node.args, *[kw.value for kw in node.kwargs]):
                    self.visit(arg, scope)
                if node.name == "money" and known is not None and known.type != "money" \
                        and not known.many:
                    self.report(node, f"{known.label} is {known.type}, not an amount: the money"
                                f" filter takes amounts ({', '.join(self.amounts())})")
            return
        for child in node.iter_child_nodes():
            self.visit(child, scope)

    def value(self, node: nodes.Node, scope: dict[str, _Value | None]) -> _Value | None:
        """What ``node`` is, following lookups; reports an unknown field on the way."""
        if isinstance(node, nodes.Name):
            return scope.get(node.name)
        if isinstance(node, nodes.Filter):
            inner = self.value(node.node, scope) if node.node is not None else None
            for arg in (*node.args, *[kw.value for kw in node.kwargs]):
                self.visit(arg, scope)
            return inner if inner is not None and inner.many and \
                node.name in _LIST_FILTERS else None
        if isinstance(node, nodes.Getitem):
            inner = self.value(node.node, scope)
            key = node.arg.value if isinstance(node.arg, nodes.Const) else None
            if not isinstance(node.arg, nodes.Const):
                self.visit(node.arg, scope)
            if inner is not None and inner.many and isinstance(key, int):
                return _Value(f"{inner.item} from {inner.label}", inner.item, inner.fields)
            return self.field(node, inner, key) if isinstance(key, str) else None
        if isinstance(node, nodes.Getattr):
            return self.field(node, self.value(node.node, scope), node.attr)
        self.visit(node, scope)
        return None

    def field(self, node: nodes.Node, inner: _Value | None, name: str) -> _Value | None:
        if inner is None or not inner.fields or inner.many:
            return None
        found = next((f for f in inner.fields if f.name == name), None)
        if found is None and f"{inner.label.split(' ', 1)[0]}.{name}" in self.probed:
            return None
        if found is None:
            names = [f.name for f in inner.fields]
            close = difflib.get_close_matches(name, names, n=1, cutoff=0.6)
            hint = f' (did you mean "{close[0]}"?)' if close else ""
            self.report(node, f'{inner.label} has no field "{name}"{hint}; {inner.owner} has '
                        f"{', '.join(names)}")
            return None
        path = f"{inner.label.split(' ', 1)[0]}.{name}"
        if found.type == "money":
            return _Value(f"{path} (an amount)", "an amount", AMOUNT, "money")
        if found.fields:  # a list of mappings: {% for item in checkout.items %}
            return _Value(path, path, found.fields, found.type, many=True, item=found.item)
        return _Value(path, path, (), found.type)

    def amounts(self) -> list[str]:
        found = [f"{v.name}{'[…]' if v.many else ''}.{f.name}" for v in self.variables.values()
                 for f in v.fields if f.type == "money"]
        return found if len(found) <= 6 else [*found[:6], "…"]

    def report(self, node: nodes.Node, message: str) -> None:
        self.found.append(TemplateError(message, self.path, self.line or node.lineno))


def _names(target: nodes.Node) -> list[str]:
    if isinstance(target, nodes.Name):
        return [target.name]
    if isinstance(target, nodes.Tuple):
        return [name for item in target.items for name in _names(item)]
    return []


def _bound(node: nodes.Node) -> list[str]:
    """The names a set, with, macro or call block binds."""
    if isinstance(node, nodes.Assign | nodes.AssignBlock):
        return _names(node.target)
    if isinstance(node, nodes.With):
        return [name for target in node.targets for name in _names(target)]
    if isinstance(node, nodes.Macro | nodes.CallBlock):
        return [name for arg in node.args for name in _names(arg)]
    return []
