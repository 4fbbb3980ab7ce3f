"""docs/templates.md: the reference of what each kind's templates get, generated from the
contract ``retain validate`` checks templates against (contract.py's ``VARIABLES`` and
``CONTEXT_KEYS``), so the documentation cannot say what the validator does not.

Owns the Markdown and writing it: ``python -m engine.mail.reference`` rewrites the file, and
tests/mail/test_contract.py fails when the file differs from what this would write. Must not
hold any fact about a variable itself (contract.py does).
"""

from __future__ import annotations

import sys
from pathlib import Path

from engine.mail.contract import CONTEXT_KEYS, VARIABLES, Variable

TARGET = Path(__file__).resolve().parents[2] / "docs" / "templates.md"
_INTRO = """\
# Template variables

What an email template gets, kind by kind. Generated from `engine/mail/contract.py`, the
contract `retain validate` checks every template and subject against (a variable or field
not listed here is refused with its file and line); `python -m engine.mail.reference`
rewrites this file and the test suite fails when it is out of date.

- **money**: prints in the store's currency and locale (`{{ offer.min_spend }}` → "€30.00",
  "30,00 €" for `fr_FR`); `.cents` is the integer and `.currency` the code; amounts add,
  subtract and compare (`{% if product.compare_at_price > product.price %}`).
- **date**: an ISO date ("2026-07-15"); `{{ offer.expires_on|date }}` → "15 July 2026",
  `|date("%d/%m")` any strftime format.
- A variable or field marked "or None" is there with the value None when it does not apply:
  test it with `{% if offer %}` before using its fields.
"""
_FILTERS = (
    "## Filters\n\n| filter | what it does |\n| --- | --- |\n"
    "| `money` | prints an amount as the store writes it; `{{ 1250\\|money }}` formats integer "
    "cents, `\\|money(\"USD\")` names another currency |\n"
    "| `date` | an ISO date as \"15 July 2026\", or `\\|date(\"%d/%m/%Y\")` |\n")


def markdown() -> str:
    """The whole of docs/templates.md."""
    parts = [_INTRO]
    for kind in sorted(CONTEXT_KEYS):
        names = [name for name in VARIABLES if name in CONTEXT_KEYS[kind]]
        parts.append(f"## `{kind}`\n\nA `{kind}` template gets "
                     + ", ".join(f"`{name}`" for name in names) + ".\n\n"
                     + "| variable | type | meaning |\n| --- | --- | --- |\n"
                     + "".join(_rows(VARIABLES[name]) for name in names))
    parts.append(_FILTERS)
    return "\n".join(parts)


def _rows(variable: Variable) -> str:
    if not variable.fields:
        return f"| `{variable.name}` | {variable.type} | {variable.meaning} |\n"
    what = f"a list, each {variable.item}" if variable.many else "fields below"
    rows = [f"| `{variable.name}` | {what} | {variable.meaning} |\n"]
    prefix = f"{variable.name}[…]" if variable.many else variable.name
    for field in variable.fields:
        kind = f"a list, each {field.item}" if field.fields else field.type
        rows.append(f"| `{prefix}.{field.name}` | {kind} | {field.meaning} |\n")
        for inner in field.fields:
            rows.append(f"| `{prefix}.{field.name}[…].{inner.name}` | {inner.type} | "
                        f"{inner.meaning} |\n")
    return "".join(rows)


def write(target: Path = TARGET) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(markdown(), encoding="utf-8")
    return target


if __name__ == "__main__":
    sys.stdout.write(f"wrote {write()}\n")
