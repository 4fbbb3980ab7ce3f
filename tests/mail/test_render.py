"""Rendering: the shipped templates, the sandbox, lint, the fast path, and the MIME bytes."""

from __future__ import annotations

import copy
import email
import email.policy
import html
import random
import re
import smtplib
import socket
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller

from engine.errors import InputError, TemplateError
from engine.mail.contract import empty_offer
from engine.mail.mime import build_message
from engine.mail.render import (
    CONTEXT_KEYS,
    RenderedEmail,
    Renderer,
    lint,
    lint_subject,
    normalise_html,
    normalise_text,
    sample_context,
    sample_contexts,
)
from engine.mail.templating import Sandbox, format_date
from engine.money import Money

ROOT = Path(__file__).resolve().parents[2]
TEMPLATES = ROOT / "templates"
NOW = datetime(2026, 6, 15, 12, 0, tzinfo=UTC)
KINDS = sorted(CONTEXT_KEYS)
SUBJECT = "{{ customer.first_name }}, news from {{ store.name }}"
HTML_TAG = re.compile(r"</?[a-zA-Z][^>]*>")


@pytest.fixture
def store(settings) -> dict:
    return settings.store.model_dump(include={"name", "url", "postal_address", "currency"})


@pytest.fixture
def renderer(store) -> Renderer:
    return Renderer(TEMPLATES, store)


def write_template(folder: Path, name: str, text: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(text, encoding="utf-8")


# --- the shipped templates ------------------------------------------------------------------

@pytest.mark.parametrize("kind", KINDS)
def test_each_template_renders_with_footer_inlined_styles_and_mobile_rule(renderer, store, kind):
    context = sample_context(kind)
    email_ = renderer.render(f"{kind}.html", SUBJECT, context)

    assert email_.subject == "Élodie, news from Maison Verte"
    assert store["postal_address"] in email_.html
    assert context["unsubscribe_url"].replace("&", "&amp;") in email_.html
    assert context["why"] in email_.html
    assert '<td class="footer" style="padding: 24px 32px;' in email_.html  # inlined
    assert "@media only screen and (max-width: 480px)" in email_.html
    assert "width: 100% !important" in email_.html  # the mobile rule keeps !important
    assert "<title>Élodie, news from Maison Verte</title>" in email_.html
    assert renderer.uses_fast_path(f"{kind}.html") == (True, True)


@pytest.mark.parametrize("kind", KINDS)
def test_text_part_has_offer_and_unsubscribe_link_and_no_html(renderer, kind):
    context = sample_context(kind)
    text = renderer.render(f"{kind}.html", SUBJECT, context).text
    assert context["unsubscribe_url"] in text
    assert context["why"] in text
    assert context["preview_text"] not in text  # the hidden preheader is for inboxes only
    assert not HTML_TAG.search(text), text
    if context.get("offer") and context["offer"]["code"]:
        assert context["offer"]["code"] in text


def test_new_product_digest_shows_each_product_with_alt_text_and_reduced_price(renderer):
    context = sample_context("new_product")
    email_ = renderer.render("new_product.html", SUBJECT, context)
    for product in context["products"]:
        assert product["url"] in email_.html and product["url"] in email_.text
    assert 'alt="Sencha Kyoto 日本 100 g"' in email_.html
    assert "(was <s>€15.90</s>)" in email_.html and "Now €12.50" in email_.html
    assert "Cups &amp; saucers" in email_.html  # escaped in HTML...
    assert "Cups & saucers" in email_.text  # ...and plain in text
    assert "<s>€24.00</s>" not in email_.html  # compare-at equal to price: no reduction


def test_winback_shows_code_value_minimum_and_expiry(renderer):
    email_ = renderer.render("winback.html", "Welcome back", sample_context("winback"))
    assert "WB-7K2M-Q9XD" in email_.html
    assert "15% off your next order" in email_.text
    assert "On orders of €30.00 or more. Valid until 15 July 2026." in email_.text


def test_spend_threshold_gift_and_nudge(renderer):
    gift, _, nudge = sample_contexts("spend_threshold")
    text = renderer.render("spend_threshold.html", "A gift", gift).text
    assert "Your gift\n\nTin of Jasmine Pearls\n\nGIFT-5TQ8" in text
    text = renderer.render("spend_threshold.html", "Almost there", nudge).text
    assert ("Spend €35.50 more by 30 September 2026 and we will thank you with a gift: Tin of "
            "Jasmine Pearls.") in text
    assert "€164.50 spent of €200.00" in text


def test_bundle_shows_bundle_price_against_separate_price(renderer):
    text = renderer.render("bundle.html", "The set", sample_context("bundle")).text
    assert "€65.00 instead of €75.50" in text
    assert "You save €10.50." in text


def test_customer_data_is_printed_never_evaluated(renderer):
    context = sample_context("winback")
    context["customer"]["first_name"] = "{{ 7*7 }}<script>alert(1)</script>"
    email_ = renderer.render("winback.html", SUBJECT, context)
    assert "{{ 7*7 }}&lt;script&gt;" in email_.html and "<script>" not in email_.html
    assert email_.subject.startswith("{{ 7*7 }}<script>")  # a header is not HTML


def test_date_filter():
    assert format_date("2026-07-01") == "1 July 2026"
    assert format_date("2026-07-01T10:00:00+00:00", "%Y/%m/%d") == "2026/07/01"


@pytest.mark.parametrize(("source", "value", "shown"), [
    ("{{ price }}", Money(1250), "€12.50"),                    # Money prints itself
    ("{{ price|money }}", Money(1250), "€12.50"),              # the filter keeps working on it
    ("{{ price|money }}", 1250, "€12.50"),                     # and on integer cents
    ("{{ price|money('GBP') }}", Money(-150), "-£1.50"),
    ("{{ price|money }}", None, ""),
    ("{{ price.cents }}", Money(1250), "1250"),
    ("{{ (price * 2 - 500) }}", Money(1250), "€20.00"),
    ("{{ [price, price]|sum(attribute='cents') }}", Money(1250), "2500"),
    ("{% if price > 1000 %}over{% endif %}", Money(1250), "over"),  # int beside Money: cents
    ("{{ price }}", Money(2000, "EUR", "fr_FR"), "20,00\u00a0€"),
])
def test_money_in_templates(source, value, shown):
    env = Sandbox()
    assert env.render(env.from_string(source), {"price": value}) == shown


def test_money_filter_formats_integer_cents_in_the_store_currency_and_locale(store):
    gbp = Renderer(TEMPLATES, {**store, "currency": "GBP"})
    assert gbp.render_subject("{{ 1250|money }}", {}) == "£12.50"
    french = Renderer(TEMPLATES, {**store, "currency": "EUR", "locale": "fr_FR"})
    assert french.render_subject("{{ 123450|money }}", {}) == "1\u202f234,50\u00a0€"


def test_mixing_currencies_in_a_template_is_a_located_error(renderer):
    with pytest.raises(TemplateError, match="cannot combine EUR and GBP"):
        renderer.render_subject("{{ a + b }}", {"a": Money(100), "b": Money(100, "GBP")})


# --- subject --------------------------------------------------------------------------------

@pytest.mark.parametrize("first_name", ["Ann\r\nBcc: all@example.com", "Ann\nX-Evil: 1", "Ann\r"])
def test_line_break_in_rendered_subject_is_refused(renderer, first_name):
    context = sample_context("winback")
    context["customer"]["first_name"] = first_name
    with pytest.raises(TemplateError, match="line break"):
        renderer.render("winback.html", SUBJECT, context)


def test_subject_lint_finds_unknown_names_syntax_errors_and_line_breaks():
    assert lint_subject(SUBJECT, "winback") == []
    [unknown] = lint_subject("{{ custmer.first_name }}", "winback", "campaigns/w.yaml", 4)
    assert str(unknown).startswith('campaigns/w.yaml:4: unknown variable "custmer" (did you mean')
    [syntax] = lint_subject("{{ customer.first_name ", "winback", "campaigns/w.yaml", 4)
    assert "campaigns/w.yaml:4: subject syntax error" in str(syntax)
    [attribute] = lint_subject("{{ customer.frist_name }}", "winback")
    assert "frist_name" in str(attribute)
    [newline] = lint_subject("Hi\n{{ customer.first_name }}", "winback")
    assert "line break" in str(newline)
    [no_subject] = lint_subject("{{ subject }}", "winback")
    assert 'unknown variable "subject"' in str(no_subject)


# --- lint -----------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", KINDS)
def test_shipped_templates_lint_clean(kind):
    assert lint(TEMPLATES, f"{kind}.html", kind) == []


def test_lint_reports_misspelt_variable_with_file_and_line(project):
    folder = project / "templates"
    write_template(folder, "oops.html", '{% extends "base.html" %}\n{% block content %}\n'
                   "<p>Hello</p>\n<p>{{ custmer.first_name }}</p>\n{% endblock %}\n")
    [problem] = lint(folder, "oops.html", "winback")
    assert problem.path == str(folder / "oops.html") and problem.line == 4
    assert 'unknown variable "custmer" (did you mean "customer"?)' in str(problem)


def test_lint_reports_misspelt_attribute_with_file_and_line(project):
    folder = project / "templates"
    write_template(folder, "oops.html", '{% extends "base.html" %}\n{% block content %}\n'
                   "<p>Hello</p>\n\n<p>{{ customer.frist_name }}</p>\n{% endblock %}\n")
    [problem] = lint(folder, "oops.html", "winback")
    assert (problem.path, problem.line) == (str(folder / "oops.html"), 5)
    assert "frist_name" in str(problem)


def test_lint_reports_problems_in_the_parent_template(project):
    folder = project / "templates"
    base = (folder / "base.html").read_text()
    lines = base.splitlines()
    footer = next(i for i, line in enumerate(lines) if "{{ why }}" in line)
    lines[footer] = lines[footer].replace("{{ why }}", "{{ store.adress }}")
    (folder / "base.html").write_text("\n".join(lines))
    [problem] = lint(folder, "winback.html", "winback")
    assert (problem.path, problem.line) == (str(folder / "base.html"), footer + 1)


def test_lint_reports_syntax_errors_missing_parents_and_kind_mismatch(project):
    folder = project / "templates"
    write_template(folder, "broken.html", "<p>\n{% if customer %}\n<p>never closed</p>\n")
    [syntax] = lint(folder, "broken.html", "winback")
    assert syntax.path == str(folder / "broken.html") and syntax.line == 2  # the open if
    assert "syntax error" in str(syntax)
    write_template(folder, "orphan.html", '{% extends "layout.html" %}')
    [missing] = lint(folder, "orphan.html", "winback")
    assert 'no template named "layout.html"' in str(missing)
    # A nudge is only given to spend_threshold emails.
    [wrong_kind] = lint(folder, "spend_threshold.html", "winback")
    assert 'unknown variable "nudge"' in str(wrong_kind)
    [unknown_kind] = lint(folder, "winback.html", "winbak")
    assert 'unknown campaign kind "winbak" (did you mean "winback"?)' in str(unknown_kind)


def test_render_error_names_the_template_file_and_line(store, tmp_path):
    folder = tmp_path / "templates"
    write_template(folder, "base.html", (TEMPLATES / "base.html").read_text())
    write_template(folder, "t.html", '{% extends "base.html" %}\n{% block content %}\n'
                   "<p>{{ offer.code }}</p>\n{% endblock %}\n")
    renderer = Renderer(folder, store)
    context = sample_context("winback")
    renderer.render("t.html", "x", context)  # prepares the fast path
    del context["offer"]
    with pytest.raises(TemplateError) as caught:
        renderer.render("t.html", "x", context)
    assert (caught.value.path, caught.value.line) == (str(folder / "t.html"), 3)
    with pytest.raises(TemplateError, match='no template named "nope.html"'):
        renderer.render("nope.html", "x", context)


# --- sandbox --------------------------------------------------------------------------------

PAYLOADS = {
    "subclasses": "{{ customer.__class__.__mro__[1].__subclasses__() }}",
    "str class": "{{ ''.__class__.__mro__ }}",
    "globals": "{{ money.__globals__ }}",
    "mutation": "{{ customer.update({'email': 'x'}) }}",
    "huge range": "{{ range(10**9)|list|length }}",
    "loop over huge range": "{% for i in range(10**9) %}{% endfor %}",
    "nested loops": "{% for i in range(99999) %}{% for j in range(99999) %}{% endfor %}"
                    "{% endfor %}",
    "string times": "{{ 'x' * 10**9 }}",
    "string times literal": "{{ 'x' * 1000000000 }}",
    "list times": "{{ ([1] * 1000000000)|length }}",
    "power": "{{ 10 ** 1000000000 }}",
    "percent width": "{{ '%999999999s' % 'x' }}",
    "format width": "{{ '{:>999999999}'.format('x') }}",
    "format filter": "{{ '%0999999999d'|format(1) }}",
    "ljust": "{{ 'x'.ljust(999999999) }}",
    "center filter": "{{ 'x'|center(999999999) }}",
    "doubling": "{% set ns = namespace(s='x' * 900000) %}{% for i in range(40) %}"
                "{% set ns.s = ns.s ~ ns.s %}{% endfor %}",
    "output size": "{% for i in range(3000) %}{{ 'x' * 999 }}{% endfor %}",
    "lipsum": "{{ lipsum(n=10**6) }}",
    "attr filter": "{{ (customer|attr('__class__')).__subclasses__() }}",
    "include outside": "{% include '../config.yaml' %}",
}


@pytest.mark.timeout(20)
@pytest.mark.parametrize("payload", PAYLOADS.values(), ids=PAYLOADS.keys())
def test_sandbox_refuses_payload_in_template(store, tmp_path, payload):
    write_template(tmp_path, "evil.html", f"<p>ok</p>\n{payload}\n")
    renderer = Renderer(tmp_path, store)
    with pytest.raises(TemplateError) as caught:
        renderer.render("evil.html", "x", sample_context("winback"))
    assert caught.value.path == str(tmp_path / "evil.html")
    if payload != PAYLOADS["output size"]:  # refused once the output is joined: no one line
        assert caught.value.line == 2
    assert lint(tmp_path, "evil.html", "winback")  # lint finds it before any send


@pytest.mark.timeout(20)
@pytest.mark.parametrize("payload", PAYLOADS.values(), ids=PAYLOADS.keys())
def test_sandbox_refuses_payload_in_subject(renderer, payload):
    with pytest.raises(TemplateError):
        renderer.render_subject(payload, {**sample_context("winback"), "store": renderer.store})


# --- fast path equivalence ------------------------------------------------------------------

FIRST_NAMES = ["Élodie", "Zoë", "O'Brien", "", "李", "Ann & Bob", "<b>Bold</b>", "Émile 🎉",
               'Say "hi"', "Jörg", "   ", "Ana-María"]


def varied_context(kind: str, rng: random.Random) -> dict:
    context = copy.deepcopy(rng.choice(sample_contexts(kind)))
    context["customer"]["first_name"] = rng.choice(FIRST_NAMES)
    context["metrics"]["value_tier"] = rng.choice("ABC")
    products = context["products"] or sample_context("new_product")["products"]
    if kind != "spend_threshold":
        chosen = rng.sample(products, rng.randint(1, len(products)))
        for product in chosen:
            product["price"] = Money(rng.randint(100, 50000))
            product["compare_at_price"] = rng.choice([None, product["price"] + Money(500),
                                                      Money(0)])
            product["name"] = rng.choice(["Tea <Sencha>", "Pot & lid", "Honig 🍯", "Cup"])
            product["image_url"] = rng.choice(["", "https://cdn.example/i.jpg?a=1&b=2"])
        context["products"] = chosen
    if context["offer"] and kind == "winback":
        context["offer"] = empty_offer("coupon", code=f"WB-{rng.randint(0, 10**6):06d}",
                                       percent_off=rng.choice([None, 10, 20]),
                                       amount_off=Money(rng.choice([500, 1000])),
                                       min_spend=rng.choice([None, Money(3000)]),
                                       expires_on=rng.choice([None, "2026-08-01"]))
    context["unsubscribe_url"] = f"https://shop.example/u?t={rng.randint(0, 10**9)}&c=1"
    return context


@pytest.mark.parametrize("kind", KINDS)
def test_fast_path_equals_render_then_inline_for_varied_customers(renderer, kind):
    rng = random.Random(kind)
    for _ in range(60):
        context = varied_context(kind, rng)
        fast = renderer.render(f"{kind}.html", "Hello", context)
        slow_html, slow_text = renderer.render_slow(f"{kind}.html", {**context, "subject": "Hello"})
        assert normalise_html(fast.html) == normalise_html(slow_html)
        assert normalise_text(fast.text) == normalise_text(slow_text)
    assert renderer.uses_fast_path(f"{kind}.html") == (True, True)


def test_template_the_fast_path_cannot_reproduce_falls_back_to_full_render(store, tmp_path):
    # A class chosen at render time: inlining the source once cannot know which rule applies.
    write_template(tmp_path, "dynamic.html", "<html><head><style>.vip { color: red }</style>"
                   "</head><body><p class=\"{{ 'vip' if metrics.value_tier == 'A' else 'x' }}\">"
                   "Hi</p></body></html>")
    renderer = Renderer(tmp_path, store)
    email_ = renderer.render("dynamic.html", "x", sample_context("winback"))
    assert renderer.uses_fast_path("dynamic.html") == (False, False)
    assert '<p class="vip" style="color: red;">' in email_.html


# --- MIME -----------------------------------------------------------------------------------

def message_for(rendered: RenderedEmail, to_addr: str = "elodie@example.com") -> bytes:
    return build_message(
        rendered, from_addr="hello@maison-verte.example", from_name="Maison Verte « Paris » 🌿",
        to_addr=to_addr, reply_to="care@maison-verte.example",
        message_id="<d42.winback@maison-verte.example>", date=NOW,
        headers={"List-Unsubscribe": "<https://maison-verte.example/unsubscribe?token=abc>, "
                                     "<mailto:unsubscribe@maison-verte.example>",
                 "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
                 "List-Id": "Maison Verte é <winback.maison-verte.example>",
                 "X-Campaign-Id": "winback-2026"})


@pytest.mark.parametrize("subject", [
    "Élodie, 15 % off", "日本の新茶が届きました", "🎉 Your gift is waiting 🎁",
    "A plain ASCII subject that is rather long, longer than seventy-eight characters for sure"])
def test_message_round_trips_through_the_stdlib_parser(renderer, subject):
    rendered = renderer.render("winback.html", "x", sample_context("winback"))
    long_line = "<p>" + "日本 é " * 400 + "</p>"  # one 2,800-byte line
    rendered = RenderedEmail(subject, rendered.html + long_line, rendered.text + "日本 🍵\n")
    data = message_for(rendered)

    assert b"\n" not in data.replace(b"\r\n", b"")  # CRLF only
    assert max(len(line) for line in data.split(b"\r\n")) <= 998
    parsed = email.message_from_bytes(data, policy=email.policy.default)
    assert parsed["Subject"] == subject
    assert parsed["From"].addresses[0].display_name == "Maison Verte « Paris » 🌿"
    assert parsed["To"] == "elodie@example.com"
    assert parsed["Message-ID"] == "<d42.winback@maison-verte.example>"
    assert parsed["Date"].datetime == NOW
    assert parsed["List-Id"] == "Maison Verte é <winback.maison-verte.example>"
    assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert parsed["X-Campaign-Id"] == "winback-2026"
    assert "<https://maison-verte.example/unsubscribe?token=abc>" in parsed["List-Unsubscribe"]
    assert parsed.get_content_type() == "multipart/alternative"
    plain, html = parsed.iter_parts()
    assert (plain.get_content_type(), html.get_content_type()) == ("text/plain", "text/html")
    assert plain.get_content_charset() == html.get_content_charset() == "utf-8"
    assert plain.get_content().replace("\r\n", "\n") == rendered.text
    assert html.get_content().replace("\r\n", "\n").rstrip("\n") == rendered.html
    assert not parsed.defects and not plain.defects and not html.defects


def test_html_is_sent_unencoded_as_ascii_with_character_references(renderer):
    rendered = renderer.render("new_product.html", "x", sample_context("new_product"))
    parsed = email.message_from_bytes(message_for(rendered), policy=email.policy.default)
    plain, html_part = parsed.iter_parts()
    assert html_part["Content-Transfer-Encoding"] == "7bit"
    content = html_part.get_content()
    assert content.isascii() and "&#8364;12.50" in content
    assert html.unescape(content.replace("\r\n", "\n")).strip() == html.unescape(rendered.html)
    assert plain["Content-Transfer-Encoding"] == "quoted-printable"  # text has "€", "日本"
    assert plain.get_content().replace("\r\n", "\n") == rendered.text


def test_message_for_mostly_japanese_text_uses_base64_and_reads_back():
    rendered = RenderedEmail("日本", "<p>" + "日本語のテキスト" * 50 + "</p>", "日本語" * 300)
    parsed = email.message_from_bytes(message_for(rendered), policy=email.policy.default)
    plain, html = parsed.iter_parts()
    assert plain["Content-Transfer-Encoding"] == "base64"
    assert plain.get_content().rstrip() == "日本語" * 300


def test_message_bytes_are_accepted_by_a_real_smtp_server(renderer):
    received = []

    class Handler:
        async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd API
            received.append(envelope.original_content)
            return "250 OK"

    with socket.socket() as probe:  # aiosmtpd 1.4 cannot listen on port 0
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = Controller(Handler(), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        data = message_for(renderer.render("new_product.html", "Nouveautés 🌿",
                                           sample_context("new_product")))
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
            client.sendmail("hello@maison-verte.example", ["elodie@example.com"], data)
    finally:
        controller.stop()
    parsed = email.message_from_bytes(received[0], policy=email.policy.default)
    assert parsed["Subject"] == "Nouveautés 🌿"
    assert 'alt="Sencha Kyoto &#26085;&#26412; 100 g"' in parsed.get_body(("html",)).get_content()


def test_message_refuses_header_injection_and_unwritable_addresses():
    rendered = RenderedEmail("Hi", "<p>x</p>", "x")
    base = dict(from_addr="a@shop.example", from_name="Shop", reply_to=None,
                message_id="m1@shop.example", date=NOW)
    with pytest.raises(ValueError, match="line break"):
        build_message(rendered, to_addr="b@example.com", headers={"X-A": "1\r\nBcc: c@d.e"}, **base)
    with pytest.raises(ValueError, match="not allowed"):
        build_message(rendered, to_addr="b@example.com", headers={"Subject": "again"}, **base)
    with pytest.raises(InputError, match="SMTPUTF8"):
        build_message(rendered, to_addr="élodie@example.com", **base)
    with pytest.raises(InputError, match="not a valid email address"):
        build_message(rendered, to_addr="b@example.com\r\nBcc: c@d.e", **base)
    with pytest.raises(ValueError, match="timezone"):
        build_message(rendered, to_addr="b@example.com", **{**base, "date": datetime(2026, 1, 1)})
    idn = email.message_from_bytes(build_message(rendered, to_addr="b@exämple.com", **base),
                                   policy=email.policy.default)
    assert idn["To"] == "b@xn--exmple-cua.com"


def test_a_renderer_cache_reuses_its_renderer_until_a_template_changes(tmp_path):
    import os
    import shutil

    from engine.mail import render

    folder = tmp_path / "templates"
    shutil.copytree(Path(__file__).resolve().parents[2] / "templates", folder)
    store = {"name": "Shop", "url": "https://shop.example", "postal_address": "1 Main St",
             "currency": "EUR"}
    cache = render.RendererCache()
    first = cache.get(folder, store)
    assert cache.get(folder, store) is first
    assert render.RendererCache().get(folder, store) is not first  # nothing shared behind it
    page = folder / "winback.html"
    page.write_text(page.read_text().replace("Here is something", "Come back soon"))
    stat = page.stat()
    os.utime(page, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    second = cache.get(folder, store)
    assert second is not first
    email = second.render("winback.html", "Hi", render.sample_context("winback"))
    assert "Come back soon" in email.html


# --- the copy a marketer copies (issue 10, item 4) ---------------------------------------------

def text_of(renderer, kind: str, context: dict) -> str:
    return renderer.render(f"{kind}.html", "Hello", context).text


def test_a_bundle_email_speaks_of_one_piece_or_several(renderer):
    context = sample_context("bundle")
    several = text_of(renderer, "bundle", context)
    assert ("You already have part of this set: Tea ceremony set. Add the 3 missing pieces and "
            "they are yours for less" in several)
    assert "go together" not in several and "Get all" not in several
    context["products"] = context["products"][:1]
    one = text_of(renderer, "bundle", context)
    assert "Add the missing piece and it is yours for less than its usual price." in one
    assert "pieces" not in one.split("Unsubscribe")[0].replace("missing piece ", "")


def test_a_new_product_email_tells_one_arrival_from_several_and_price_cuts_from_arrivals(
        renderer):
    context = sample_context("new_product")
    one_new = {**context, "products": [context["products"][1]]}
    text = text_of(renderer, "new_product", one_new)
    assert "Just in, and picked for you" in text and "something new has arrived" in text
    assert " them" not in text
    cuts = {**context, "products": [p for p in context["products"] if p["reduced"]]}
    text = text_of(renderer, "new_product", cuts)
    assert "Price cuts, picked for you" in text and "new" not in text.split("\n\n")[1].lower()
    text = text_of(renderer, "new_product", context)
    assert "2 new products have arrived and 2 you may like now cost less" in text


@pytest.mark.parametrize("kind", KINDS)
def test_every_line_of_the_shipped_emails_starts_a_sentence_with_a_capital(renderer, kind):
    for context in sample_contexts(kind):
        for line in text_of(renderer, kind, context).splitlines():
            if line and line[0].isalpha() and not line.startswith("http"):
                assert line[0].isupper(), line


def test_the_nudge_email_is_a_real_email_not_one_sentence(renderer):
    nudge = sample_contexts("spend_threshold")[2]
    text = text_of(renderer, "spend_threshold", nudge)
    body = text.split("You get this because")[0]
    assert len([p for p in body.split("\n\n") if p.strip()]) >= 5
    assert "Find something you like: https://maison-verte.example" in text
