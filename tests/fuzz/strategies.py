"""Hypothesis strategies for hostile input: YAML values and texts, segments, templates, CSV.

Each strategy mixes what a marketer plausibly writes with what an attacker or a broken export
would: huge and non-finite numbers, control characters, aliases, deep nesting, stray quotes,
bytes that are not UTF-8. ``mutated()`` damages a valid file a few bytes at a time, which finds
more than random text alone (a random text is rarely close enough to be parsed far).
"""

from __future__ import annotations

from datetime import date

import yaml
from hypothesis import strategies as st

from engine.campaigns.models import KINDS
from engine.shop.segmentfields import FIELDS, OPERATORS, OPERATORS_BY_KIND

# Characters that matter to YAML, Jinja, CSV and terminals, over-represented on purpose.
_SPECIAL = list("\x00\x01\x07\x1b\t\r\n\u2028\ufeff\"'\\,;:{}[]&*!?|>%#@`<>-~é€🙂")
hostile_text = st.text(alphabet=st.one_of(st.sampled_from(_SPECIAL),
                                         st.characters(exclude_categories=("Cs",))),
                       max_size=40)
names = st.sampled_from(["a", "vip", "FR", "yoga", "SKU-1", "winback.html", "drowsy", "A", "x",
                        "été", "és", "Kitchen"])

numbers = st.one_of(
    st.integers(min_value=-5, max_value=400),
    st.sampled_from([0, 1, -1, 2**31, 2**63, 10**20, -(10**20), 10**400 // 10**380]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.decimals(allow_nan=False, allow_infinity=False, places=3).map(float),
)
scalars = st.one_of(
    numbers, st.booleans(), st.none(), names, hostile_text,
    st.dates(min_value=date(1, 1, 1), max_value=date(9999, 12, 31)),
)
yaml_values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(st.one_of(names, hostile_text), inner, max_size=4)),
    max_leaves=12,
)


@st.composite
def mostly(draw, good, *hostile: st.SearchStrategy):
    """``good`` about three times in four, else one of ``hostile``."""
    if draw(st.integers(0, 3)):
        return draw(good) if isinstance(good, st.SearchStrategy) else good
    return draw(st.one_of(*hostile))


def segment_values(field: str) -> st.SearchStrategy:
    kind = FIELDS[field].kind
    good = {
        "number": st.integers(-3, 50), "days": st.integers(-3, 500),
        "money": st.one_of(st.integers(0, 500), st.sampled_from([9.99, 49.9, 0.5])),
        "bool": st.booleans(),
        "decimal": st.one_of(st.integers(0, 5), st.sampled_from([0.5, 1.5, 2.25])),
        "probability": st.sampled_from([0, 0.1, 0.5, 0.75, 1]),
        "enum": st.sampled_from([v.value for v in FIELDS[field].values] or ["x"]),
        "text": names, "set": names,
    }[kind]
    return mostly(good, scalars)


@st.composite
def conditions(draw) -> dict:
    field = draw(mostly(st.sampled_from(list(FIELDS)), st.just("unknown_field")))
    if field == "unknown_field":
        return {draw(names): draw(scalars)}
    op = draw(mostly(st.sampled_from(OPERATORS_BY_KIND[FIELDS[field].kind]),
                     st.sampled_from([*OPERATORS, "like"])))
    values = segment_values(field)
    if op in ("in", "not_in"):
        value = draw(st.lists(values, min_size=0, max_size=5))
    elif op == "between":
        value = sorted(draw(st.lists(values, min_size=1, max_size=3)), key=repr)
    else:
        value = draw(values)
    shape = draw(st.integers(0, 3))
    if FIELDS[field].window or shape == 0:
        body = {op: value}
        if FIELDS[field].window and draw(st.booleans()):
            body = {"days": draw(st.one_of(st.integers(-2, 400), numbers)), **body}
        return {field: body}
    return {field: value}


segments_strategy = st.recursive(
    conditions(),
    lambda inner: st.one_of(
        st.builds(lambda items: {"all": items}, st.lists(inner, min_size=1, max_size=4)),
        st.builds(lambda items: {"any": items}, st.lists(inner, min_size=1, max_size=4)),
        st.builds(lambda item: {"not": item}, inner),
        st.builds(lambda items: {"not": items}, st.lists(inner, min_size=1, max_size=3)),
        st.lists(inner, min_size=1, max_size=3),
    ),
    max_leaves=10,
)

TEMPLATES = ["winback.html", "new_product.html", "spend_threshold.html", "bundle.html",
             "base.html", "../config.yaml", "/etc/passwd", "nope.html", "a\x00b.html", ""]




@st.composite
def campaign_documents(draw) -> dict:
    """A campaign mapping: mostly the right keys with plausible values, some hostile ones."""
    kind = draw(mostly(st.sampled_from(list(KINDS)), st.just("newsletter")))
    doc: dict = {
        "id": draw(mostly("fuzz", names, hostile_text)), "kind": kind,
        "template": draw(mostly(f"{kind}.html", st.sampled_from(TEMPLATES))),
        "subject": draw(mostly("Hello {{ customer.first_name }}", hostile_text)),
    }
    extras = {
        "winback": {"steps": [{"tier": "drowsy", "coupon": {"percent_off": 10}}]},
        "new_product": {"lookback_days": 14},
        "spend_threshold": {"threshold": 100, "gift": {"gift_card": 10}},
        "bundle": {"bundles": [{"id": "set", "skus": ["A", "B"], "price": 10}]},
    }.get(kind, {})
    doc.update(extras)
    if draw(st.booleans()):
        doc["segment"] = draw(segments_strategy)
    if draw(st.integers(0, 3)) == 0:
        key = draw(st.sampled_from(
            ["priority", "holdout", "cooldown_days", "budget", "schedule", "enabled",
             "description", "on_cap", "steps", "threshold", "gift", "bundles", "mine",
             "max_products", "period", "period_days", "nudge", "categories", "surprise"]))
        doc[key] = draw(yaml_values)
    return doc


@st.composite
def yaml_bytes(draw, documents: st.SearchStrategy) -> bytes:
    """A document dumped as YAML (block or flow style), then perhaps damaged by mutated()."""
    text = yaml.safe_dump(draw(documents), allow_unicode=True, sort_keys=False,
                          default_flow_style=draw(st.sampled_from([False, None, True])))
    return draw(mostly(st.just(text.encode()), mutated(text.encode())))


_SNIPPETS = [b"&a ", b"*a", b"*b", b"? ", b"[", b"]", b"{", b"}", b"\t", b"\x00", b"\xff",
             b"\xe9", b"---\n", b"!!python/object:os.system ", b": ", b"- ", b'"', b"'", b"\n",
             b"<<: *a\n", b"!!binary ", b"&a [*a]", b"yes: ", b"1: ", b"!!timestamp ",
             b"2025-02-30", b"1e999", b".inf", b"{{", b"{%", b"\xef\xbb\xbf", b"\r\n",
             b"x: &b [*a, *a, *a, *a, *a, *a, *a, *a]\n"]


@st.composite
def mutated(draw, base: bytes, snippets: list[bytes] | None = None) -> bytes:
    """``base`` with a few insertions, deletions or repeated lines."""
    data = bytearray(base)
    for _ in range(draw(st.integers(0, 4))):
        where = draw(st.integers(0, len(data)))
        action = draw(st.integers(0, 3))
        if action <= 1:
            piece = draw(st.one_of(st.sampled_from(snippets or _SNIPPETS), st.binary(max_size=6)))
            data[where:where] = piece
        elif action == 2:
            data[where:where + draw(st.integers(1, 12))] = b""
        else:
            lines = bytes(data).split(b"\n")
            i = draw(st.integers(0, len(lines) - 1))
            lines.insert(i, lines[i])
            data = bytearray(b"\n".join(lines))
    return bytes(data)
