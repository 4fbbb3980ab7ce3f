"""What an email template of each campaign kind is given, and ``lint()`` to check it before sending.

Owns: the context every template receives, field by field (``VARIABLES``: each variable, its
fields, which are money, dates, text or numbers, what each means; the planner builds it,
render.py renders it, docs/templates.md is generated from it by reference.py), ``CONTEXT_KEYS``
(the top-level variables each kind may use), complete sample contexts of each kind (previews,
lint, the renderer's self-check), and ``lint()``/``lint_subject()``, which return every problem
as a TemplateError with the template file and line: unknown variables here, unknown fields
(``customer.frist_name``) by fields.py against ``VARIABLES``, then whatever a render of each
sample raises. Must not: render emails for sending, open a session or read the clock.

The context is plain data only, never ORM objects; every key is present (``None`` where it does
not apply), dates are ISO strings ("2026-07-01"), and every amount of money is a
``money.Money``: ``{{ offer.min_spend }}`` prints "€30.00" in the store's currency and locale,
``.cents`` is the integer, and Money adds, subtracts and compares. The flow kinds' products are
the order's, the review's or the checkout's.
Use ``empty_offer(kind, **fields)`` to build an offer with every key.
"""

from __future__ import annotations

import copy
import re
import unicodedata
from pathlib import Path, PurePosixPath
from typing import Any

import jinja2
from jinja2 import meta, nodes

from engine.errors import InputError, TemplateError, did_you_mean
from engine.mail import fields
from engine.mail.fields import AMOUNT, Field, Variable
from engine.mail.templating import RENDER_ERRORS, Sandbox, located
from engine.money import Money
from engine.yamlfile import decode

__all__ = ["AMOUNT", "CONTEXT_KEYS", "OFFER_KEYS", "VARIABLES", "WHY_SENTENCE", "Field",
           "Variable", "empty_offer", "lint", "lint_subject", "output_problems",
           "sample_context", "sample_contexts"]

_PRODUCT = (
    Field("sku", "text", "the product's SKU"),
    Field("name", "text", "its name"),
    Field("category", "text", "its category (may be empty)"),
    Field("price", "money", "its price"),
    Field("compare_at_price", "money", "the price before a cut, or None"),
    Field("reduced", "yes or no", "the price is below compare_at_price (a price cut)"),
    Field("url", "url", "its page (the shop's when it has none)"),
    Field("image_url", "url", "its picture (may be empty)"),
)
VARIABLES: dict[str, Variable] = {v.name: v for v in (
    Variable("customer", "the recipient", (
        Field("id", "number", "the customer's id in retain"),
        Field("first_name", "text", 'first name, or "there" when the shop has none'),
        Field("last_name", "text", "last name (may be empty)"),
        Field("email", "text", "the address the email goes to"),
        Field("country", "text", "country code, or None"))),
    Variable("metrics", "the recipient's metrics as of the send", (
        Field("orders", "number", "counted orders"),
        Field("spent", "money", "their total spend"),
        Field("recency_days", "number", "days since the last order (None without one)"),
        Field("dormancy", "text", "none, active, drowsy, half_asleep or sleeping"),
        Field("value_tier", "text", "A, B or C (None without orders)"),
        Field("lifecycle", "text", "prospect, exploration, formation, stable or decline"))),
    Variable("store", "the shop, from config.yaml", (
        Field("name", "text", "the store's name"),
        Field("url", "url", "its home page"),
        Field("postal_address", "text", "its postal address (every footer shows it)"),
        Field("currency", "text", 'ISO currency code, "EUR"'),
        Field("locale", "text", 'how amounts are written, "en_IE"'))),
    Variable("campaign", "the campaign sending it (never its description: that is the team's "
             "note, not copy)", (
                 Field("id", "text", "the campaign's id"),
                 Field("kind", "text", "its kind"))),
    Variable("products", "the products the email shows (may be an empty list)", _PRODUCT,
             many=True, item="a product"),
    Variable("offer", "what the email offers, or None", (
        Field("kind", "text", "coupon, gift, bundle or none"),
        Field("code", "text", "the unique coupon code, or None"),
        Field("percent_off", "number", "percent off, or None"),
        Field("amount_off", "money", "amount off, or None"),
        Field("min_spend", "money", "the least order it applies to (a gift: the threshold)"),
        Field("expires_on", "date", "the last day it is valid"),
        Field("gift_name", "text", 'the gift, a title without an article ("€15.00 gift '
              'card"), or None'),
        Field("bundle_name", "text", "the bundle's name, or None"),
        Field("bundle_price", "money", "the bundle's price, or None"),
        Field("bundle_skus", "list of text", "the bundle's SKUs"),
        Field("url", "url", "where the offer's button leads (a bundle's cart link), or None: "
              "the template decides")), optional=True),
    Variable("nudge", "how close the customer is to a spend threshold, or None", (
        Field("missing_amount", "money", "what is left to spend"),
        Field("threshold", "money", "the threshold"),
        Field("spent", "money", "what they spent this period"),
        Field("gift_name", "text", "the gift at the threshold"),
        Field("period_ends_on", "date", "the last day of the period")), optional=True),
    Variable("step", 'the flow\'s step ("shipped", "delivered+5d", "1h", "24h")'),
    Variable("order", "the order the mail is about", (
        Field("number", "text", 'its number, "#1089"'),
        Field("placed_on", "date", "the day it was placed"),
        Field("total", "money", "its total"))),
    Variable("shipment", "its shipment, or None", (
        Field("carrier", "text", "the carrier (may be empty)"),
        Field("tracking_number", "text", "the tracking number"),
        Field("tracking_url", "url", "the tracking page, or None"),
        Field("shipped_on", "date", "the day it left"),
        Field("delivered_on", "date", "the day it arrived, or None")), optional=True),
    Variable("review", "the customer's review", (
        Field("rating", "number", "1 to 5"),
        Field("sku", "text", "the reviewed product's SKU"),
        Field("product_name", "text", "its name"),
        Field("excerpt", "text", "the start of what they wrote"),
        Field("created_on", "date", "the day they wrote it"))),
    Variable("signed_by", "the person who signs the apology, or None", (
        Field("name", "text", "their name"),), optional=True),
    Variable("checkout", "the checkout left unfinished", (
        Field("url", "url", "where the customer picks it up again"),
        Field("total", "money", "its total"),
        Field("started_on", "date", "the day it began"),
        Field("items", "list", "what is in it", (
            Field("sku", "text", "the SKU"),
            Field("name", "text", "the product's name"),
            Field("quantity", "number", "how many"),
            Field("price", "money", "the price of one")), item="an item"))),
    Variable("vip", "why a best customer gets this", (
        Field("occasion", "text", "early_access or anniversary"),
        Field("early_access_days", "number", "days before everyone else, or None"),
        Field("years", "number", "years since the first order, or None"),
        Field("first_order_on", "date", "the day of the first order, or None"))),
    Variable("unsubscribe_url", "the one-click unsubscribe link for this recipient",
             type="url"),
    Variable("why", "the sentence saying why they get this email"),
    Variable("preview_text", "the inbox preview line: the campaign's preheader: rendered, else "
             "the email's first paragraph (not available in subjects and preheaders)"),
    Variable("subject", "the rendered subject (not available in subjects and preheaders)"),
)}

WHY_SENTENCE = "You get this because you bought from us and agreed to hear from us."
OFFER_KEYS = tuple(f.name for f in VARIABLES["offer"].fields)
_COMMON = frozenset({"customer", "metrics", "store", "campaign", "unsubscribe_url", "why",
                     "preview_text", "subject"})
CONTEXT_KEYS: dict[str, frozenset[str]] = {
    "new_product": _COMMON | {"products"},
    "winback": _COMMON | {"offer", "products"},
    "spend_threshold": _COMMON | {"offer", "nudge"},
    "bundle": _COMMON | {"offer", "products"},
    "post_purchase": _COMMON | {"products", "step", "order", "shipment"},
    "review_followup": _COMMON | {"products", "offer", "review", "signed_by"},
    "abandoned_checkout": _COMMON | {"products", "offer", "step", "checkout"},
    "vip": _COMMON | {"products", "vip"},
}


def empty_offer(kind: str, **fields: Any) -> dict[str, Any]:
    """An offer dict with every key of OFFER_KEYS; unknown field names are a bug."""
    unknown = set(fields) - set(OFFER_KEYS)
    if unknown:
        raise ValueError(f"unknown offer fields {sorted(unknown)}; offers have {OFFER_KEYS}")
    return {key: None for key in OFFER_KEYS} | {"kind": kind} | fields


_PRODUCTS = [
    {"sku": "TEA-001", "name": "Sencha Kyoto 日本 100 g", "category": "tea", "price": Money(1250),
     "compare_at_price": Money(1590), "reduced": True, "url": "https://maison-verte.example/p/tea-001",
     "image_url": "https://maison-verte.example/img/tea-001.jpg"},
    {"sku": "POT-002", "name": "Théière « Lotus » 0.8 l", "category": "teaware",
     "price": Money(3900), "compare_at_price": None, "reduced": False, "url": "https://maison-verte.example/p/pot-002",
     "image_url": "https://maison-verte.example/img/pot-002.jpg"},
    {"sku": "CUP-003", "name": "Cups & saucers, set of 2", "category": "teaware",
     "price": Money(2400), "compare_at_price": Money(2400), "reduced": False,
     "url": "https://maison-verte.example/p/cup-003", "image_url": ""},
    {"sku": "HON-004", "name": "Wildflower honey 🍯", "category": "pantry", "price": Money(890),
     "compare_at_price": Money(1100), "reduced": True, "url": "https://maison-verte.example/p/hon-004",
     "image_url": "https://maison-verte.example/img/hon-004.jpg"},
]
_BASE = {
    "customer": {"id": 1042, "first_name": "Élodie", "last_name": "Martin",
                 "email": "elodie@example.com", "country": "FR"},
    "metrics": {"orders": 3, "spent": Money(18450), "recency_days": 150, "dormancy": "half_asleep",
                "value_tier": "A", "lifecycle": "decline"},
    "store": {"name": "Maison Verte", "url": "https://maison-verte.example",
              "postal_address": "Maison Verte SAS, 12 rue des Lilas, 75011 Paris, France",
              "currency": "EUR", "locale": "en_IE"},
    "unsubscribe_url": "https://maison-verte.example/unsubscribe?token=sample",
    "why": WHY_SENTENCE,
    "preview_text": "Picked for you from the categories you love",
}
_COUPON = empty_offer("coupon", code="WB-7K2M-Q9XD", percent_off=15, min_spend=Money(3000),
                      expires_on="2026-07-15")
_ORDER = {"number": "#1089", "placed_on": "2026-06-28", "total": Money(6390)}
_SHIPMENT = {"carrier": "Colissimo", "tracking_number": "6A12345678901",
             "tracking_url": "https://www.laposte.fr/outils/suivre-vos-envois?code=6A12345678901",
             "shipped_on": "2026-06-29", "delivered_on": None}
_REVIEW = {"rating": 2, "sku": "TEA-001", "product_name": _PRODUCTS[0]["name"],
           "excerpt": "The tin arrived dented and the tea tasted stale.",
           "created_on": "2026-07-04"}
_CHECKOUT = {"url": "https://maison-verte.example/checkouts/c81f2",
             "total": Money(5150), "started_on": "2026-07-01",
             "items": [{"sku": "TEA-001", "name": _PRODUCTS[0]["name"], "quantity": 1,
                        "price": Money(1250)},
                       {"sku": "POT-002", "name": _PRODUCTS[1]["name"], "quantity": 1,
                        "price": Money(3900)}]}
_VARIANTS: dict[str, list[dict[str, Any]]] = {
    "new_product": [{"products": _PRODUCTS}, {"products": _PRODUCTS[1:2]}],
    "winback": [{"offer": _COUPON, "products": _PRODUCTS[:2]},
                {"offer": empty_offer("coupon", code="WB-AMT-10", amount_off=Money(1000),
                                      url="https://maison-verte.example/back"),
                 "products": [], "metrics": {**_BASE["metrics"], "value_tier": "C"}}],
    "spend_threshold": [
        {"offer": empty_offer("gift", gift_name="Tin of Jasmine Pearls",
                              min_spend=Money(20000), code="GIFT-5TQ8",
                              expires_on="2026-09-30"), "nudge": None},
        {"offer": empty_offer("gift", gift_name="€15.00 gift card", min_spend=Money(20000)),
         "nudge": None},
        {"offer": None, "nudge": {"missing_amount": Money(3550), "threshold": Money(20000),
                                  "spent": Money(16450), "gift_name": "Tin of Jasmine Pearls",
                                  "period_ends_on": "2026-09-30"}}],
    "bundle": [{"products": _PRODUCTS[:3], "offer": empty_offer(
        "bundle", bundle_name="Tea ceremony set", bundle_price=Money(6500),
        bundle_skus=["TEA-001", "POT-002", "CUP-003"], code="BUNDLE-3F7A",
        expires_on="2026-07-31")},
        {"products": _PRODUCTS[1:3], "offer": empty_offer(
            "bundle", bundle_price=Money(5500), bundle_skus=["POT-002", "CUP-003"])}],
    "post_purchase": [
        {"step": "shipped", "products": _PRODUCTS[:2], "order": _ORDER, "shipment": _SHIPMENT},
        {"step": "delivered+5d", "products": _PRODUCTS[:1], "order": _ORDER,
         "shipment": {**_SHIPMENT, "delivered_on": "2026-07-03"}},
        {"step": "shipped", "products": [], "order": _ORDER,
         "shipment": {**_SHIPMENT, "tracking_url": None, "carrier": ""}},
        {"step": "ordered", "products": [], "order": _ORDER, "shipment": None}],
    "review_followup": [
        {"products": _PRODUCTS[:1], "review": _REVIEW, "signed_by": {"name": "Claire Dubois"},
         "offer": empty_offer("coupon", code="SORRY-4HQ2", percent_off=15,
                              min_spend=Money(0), expires_on="2026-08-01")},
        {"products": _PRODUCTS[:1], "review": {**_REVIEW, "rating": 5, "excerpt": "Lovely."},
         "signed_by": None, "offer": None}],
    "abandoned_checkout": [
        {"step": "1h", "products": _PRODUCTS[:2], "checkout": _CHECKOUT, "offer": None},
        {"step": "24h", "products": _PRODUCTS[:1], "checkout": {
            **_CHECKOUT, "items": _CHECKOUT["items"][:1]}, "offer": _COUPON}],
    "vip": [
        {"products": _PRODUCTS[:3], "vip": {"occasion": "early_access", "early_access_days": 3,
                                            "years": None, "first_order_on": None}},
        {"products": [], "vip": {"occasion": "anniversary", "early_access_days": None,
                                 "years": 2, "first_order_on": "2024-06-30"}}],
}


def sample_contexts(kind: str) -> list[dict[str, Any]]:
    """Complete contexts of ``kind`` covering each branch of the shipped templates."""
    if kind not in CONTEXT_KEYS:
        raise KeyError(f'unknown campaign kind "{kind}"{did_you_mean(kind, CONTEXT_KEYS)}')
    campaign = {"id": f"sample-{kind}", "kind": kind}
    return [copy.deepcopy({**_BASE, "campaign": campaign, "products": [], "offer": None,
                           "nudge": None, **variant}) for variant in _VARIANTS[kind]]


def sample_context(kind: str) -> dict[str, Any]:
    """The first (richest) sample context of ``kind``, e.g. for ``retain preview``."""
    return sample_contexts(kind)[0]


def lint(templates_dir: str | Path, template_name: str, kind: str) -> list[TemplateError]:
    """Every problem of a template (and its parents) for a campaign of ``kind``, located.

    Whatever the template holds, the answer is a list of one-line problems at file:line:
    a file that is not UTF-8, a syntax error, nesting too deep to compile, a reference to a
    template that is missing or outside the folder (at the line that names it), or an error
    while rendering the samples of ``kind`` (a macro that calls itself without end included).
    """
    env = Sandbox(templates_dir)
    folder = Path(templates_dir)
    path = folder / template_name
    if kind not in CONTEXT_KEYS:
        return [TemplateError(f'unknown campaign kind "{kind}"{did_you_mean(kind, CONTEXT_KEYS)}',
                              path)]
    problems: list[TemplateError] = []
    # The template, then what it extends, includes or imports, each with where it is named.
    pending: list[tuple[str, Path, int | None]] = [(template_name, path, None)]
    seen = set()
    references: dict[str, list[tuple[str, int]]] = {}
    while pending:
        name, named_in, named_at = pending.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            source, filename, _ = env.loader.get_source(env, name)  # type: ignore[union-attr]
        except jinja2.TemplateNotFound:
            problems.append(_not_found(name, folder, named_in, named_at))
            continue
        except UnicodeDecodeError:
            problems.append(_not_utf8(folder / name))
            continue
        try:
            tree = env.parse(source, name, filename)
            problems += _unknown_names(env, source, tree, filename, CONTEXT_KEYS[kind], kind)
            problems += fields.problems(tree, _variables(kind), filename)
        except jinja2.TemplateSyntaxError as exc:
            problems.append(located(exc, filename))
            continue
        references[name] = _references(tree)
        pending += [(ref, Path(filename), line) for ref, line in references[name]]
        problems += _image_problems(source, filename)
    problems += _cycles(references, template_name, folder)
    if problems:
        return problems
    try:  # compiling finds what parsing does not: {% extends %} inside a block, unknown filters
        template = env.get_template(template_name)
    except jinja2.TemplateSyntaxError as exc:
        return [located(exc, path)]
    # Names and fields are right; now what rendering each sample raises, per branch.
    return _unique(_render_problems(env, template, kind, path))


def _references(tree: nodes.Template) -> list[tuple[str, int]]:
    """(template name, line) of each {% extends %}, {% include %} and {% import %} by name."""
    found = []
    for node in tree.find_all((nodes.Extends, nodes.Include, nodes.Import, nodes.FromImport)):
        target = node.template
        consts = target.items if isinstance(target, nodes.Tuple | nodes.List) else [target]
        found += [(c.value, node.lineno) for c in consts
                  if isinstance(c, nodes.Const) and isinstance(c.value, str)]
    return found


def _cycles(references: dict[str, list[tuple[str, int]]], root: str,
            folder: Path) -> list[TemplateError]:
    """A template that extends, includes or imports itself, directly or through others: the
    email would never end. Refused at the line that closes the circle."""
    problems, chain, done = [], [root], set()

    def visit(name: str) -> None:
        for ref, line in references.get(name, []):
            if ref in chain:
                through = " → ".join([*chain[chain.index(ref):], ref])
                problems.append(TemplateError(
                    f'"{ref}" is used again inside itself ({through}); an email that contains '
                    "itself never ends: remove the circle", folder / name, line))
            elif ref in references and ref not in done:
                chain.append(ref)
                visit(ref)
                chain.pop()
        done.add(name)

    visit(root)
    return problems


def _not_found(name: str, folder: Path, named_in: Path, named_at: int | None) -> TemplateError:
    parts = PurePosixPath(name).parts
    if name.startswith("/") or ".." in parts or "\\" in name:
        return TemplateError(f'"{name}" is outside the templates folder; templates may only use '
                             f"files in {folder}/", named_in, named_at)
    return TemplateError(f'no template named "{name}" in {folder}: create it or fix the name',
                         named_in if named_at else folder / name, named_at)


def _not_utf8(path: Path) -> TemplateError:
    try:
        decode(path.read_bytes(), path)
    except InputError as exc:
        return TemplateError(exc.message, path, exc.line, exc.column)
    return TemplateError("the file is not UTF-8 text; save it as UTF-8", path, 1)


def lint_subject(subject: str, kind: str, path: str | Path | None = "subject",
                 line: int | None = None, needs: str | None = None,
                 what: str = "subject") -> list[TemplateError]:
    """Problems of a subject line or a preheader (``what``; a Jinja string), located at
    ``path``:``line`` (the YAML).

    ``needs`` names a context key the subject is only used with (a nudge's own subject is
    only rendered when there is a nudge), so only samples that have it are tried. A preheader
    may break lines (they are joined), a subject may not.
    """
    env = Sandbox()
    if kind not in CONTEXT_KEYS:
        return [TemplateError(f'unknown campaign kind "{kind}"{did_you_mean(kind, CONTEXT_KEYS)}',
                              path, line)]
    allowed = CONTEXT_KEYS[kind] - {"subject", "preview_text"}
    try:
        tree = env.parse(subject)
        problems = _unknown_names(env, subject, tree, path, allowed, kind, line)
        problems += fields.problems(tree, _variables(kind, allowed), path, line)
        if problems:
            return problems
        template = env.from_string(subject)
    except jinja2.TemplateSyntaxError as exc:
        return [TemplateError(f"{what} syntax error: {exc.message}", path, line)]
    problems = _render_problems(env, template, kind, path, line, needs)
    for sample in _samples(kind, needs) if what == "subject" else ():
        try:
            rendered = env.render(template, sample)
        except RENDER_ERRORS:
            continue  # already reported
        if "\n" in rendered.strip() or "\r" in rendered:
            problems.append(TemplateError("the subject renders a line break; a subject is one "
                                          "line", path, line))
    return _unique(problems)


def _variables(kind: str, names: frozenset[str] | None = None) -> dict[str, Variable]:
    """The variables a template of ``kind`` gets (or only ``names`` of them)."""
    return {name: VARIABLES[name] for name in sorted(names or CONTEXT_KEYS[kind])}


def _unknown_names(env: Sandbox, source: str, tree: Any, path: Any, allowed: frozenset[str],
                   kind: str, line: int | None = None) -> list[TemplateError]:
    problems = []
    for name in sorted(meta.find_undeclared_variables(tree) - allowed - set(env.globals)):
        hint = did_you_mean(name, allowed)
        problems.append(TemplateError(
            f'unknown variable "{name}"{hint}; a {kind} email gets {", ".join(sorted(allowed))}',
            path, line or _line_of(env, source, name)))
    return problems


def _line_of(env: Sandbox, source: str, name: str) -> int | None:
    """The line where ``name`` is first used as a variable (not as an attribute)."""
    previous = None
    for lineno, token, value in env.lex(source):
        if token == "name" and value == name and previous != "dot":
            return lineno
        if token != "whitespace":
            previous = token
    return None


def _samples(kind: str, needs: str | None) -> list[dict[str, Any]]:
    return [s for s in sample_contexts(kind) if needs is None or s.get(needs)]


def _render_problems(env: Sandbox, template: jinja2.Template, kind: str, path: Any,
                     line: int | None = None, needs: str | None = None) -> list[TemplateError]:
    problems = []
    for sample in _samples(kind, needs):
        try:
            output = env.render(template, {**sample, "subject": "Sample subject"})
        except RENDER_ERRORS as exc:
            problem = located(exc, path, line)
            if problem.line is None:  # the whole email (too long): no one line to blame
                problem = TemplateError(problem.message, problem.path, 1)
            problems.append(problem)
            continue
        problems += [TemplateError(problem, path, line) for problem in output_problems(output)]
    return problems


# The currency signs of Unicode's first plane (category Sc: € $ £ ¥ ₹ ..., all in use).
_SIGNS = "".join(c for c in map(chr, range(0x10000))
                 if unicodedata.category(c) == "Sc")
# A sign printed beside an amount that already carries one: "€€20.00", "$ €20.00", "€20,00 €".
_DOUBLED_SIGN = re.compile(f"[{re.escape(_SIGNS)}]\\s?(?:[{re.escape(_SIGNS)}]|[\\d.,\u00a0\u202f]+"
                           f"\\s?[{re.escape(_SIGNS)}])")


_IMG = re.compile(r"<img\b[^>]*>", re.I)
_ALT = re.compile(r'\balt="[^"]*\S[^"]*"', re.I)
_WIDTH = re.compile(r'\bwidth="[^"]+"', re.I)


def _image_problems(source: str, path: Any) -> list[TemplateError]:
    """Every <img> of a template's source needs alt text and a width (images off, Outlook)."""
    problems = []
    for tag in _IMG.finditer(source):
        if not _ALT.search(tag.group(0)) or not _WIDTH.search(tag.group(0)):
            problems.append(TemplateError(
                'an image without alt text or a width: give every <img> an alt="..." that '
                'says what it shows and a width="..." in pixels, so the email reads well with '
                "images off and keeps its layout", path, source.count("\n", 0, tag.start()) + 1))
    return problems


def output_problems(output: str) -> list[str]:
    """What a sample render shows that no customer should see (in the marketer's words)."""
    problems = []
    doubled = _DOUBLED_SIGN.search(output)
    if doubled:
        start = max(0, doubled.start() - 20)
        shown = " ".join(output[start:doubled.end() + 8].split())
        sign = doubled.group(0)[0]
        problems.append(f'prints a currency sign beside an amount that already has one '
                        f'("{shown}"): amounts print formatted in the store\'s currency, so '
                        f'remove the "{sign}" written next to {{{{ ... }}}}')
    return problems


def _unique(problems: list[TemplateError]) -> list[TemplateError]:
    return list({str(problem): problem for problem in problems}.values())
