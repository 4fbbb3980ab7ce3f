"""The template context compose builds: every amount is Money in the store's currency and locale,
so the shipped templates print it formatted, in whatever locale config.yaml names."""

from __future__ import annotations

import html
import re
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from engine import config
from engine.campaigns import models
from engine.delivery import compose
from engine.errors import ConfigError
from engine.mail import render
from engine.money import Money

ROOT = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 6, 15, 12, 0, tzinfo=UTC)
NBSP = "\u00a0"
CUSTOMER = {"id": 7, "email": "ann@example.com", "first_name": "Ann", "last_name": "Lee",
            "country": "FR", "timezone": None, "orders": 3, "spent_cents": 18450,
            "recency_days": 80, "dormancy": "drowsy", "value_tier": "B", "lifecycle": "decline",
            "last_order_at": None}
PRODUCTS = {"TEA": {"sku": "TEA", "name": "Sencha", "category": "tea", "price_cents": 1250,
                    "compare_at_price_cents": 1590, "url": "https://shop.example/tea",
                    "image_url": ""}}
PAYLOADS = {  # campaign file → a payload the planner would have written
    "winback.yaml": {"offer": {"kind": "coupon", "amount_off_cents": 1000,
                               "min_spend_cents": 3000, "valid_days": 14},
                     "products": ["TEA"]},
    "spend_gift.yaml": {"nudge": {"missing_cents": 2730, "threshold_cents": 15000,
                                  "spent_cents": 12270, "period": "2026-06",
                                  "period_ends_on": "2026-06-30",
                                  "gift_name": "€15.00 gift card"}},
}


def amounts(value):
    """Every value in a context that is money, by where it is."""
    if isinstance(value, dict):
        for key, inner in value.items():
            if key in ("price", "compare_at_price", "spent", "amount_off", "min_spend",
                       "bundle_price", "missing_amount", "threshold"):
                yield key, inner
            else:
                yield from amounts(inner)
    elif isinstance(value, list):
        for inner in value:
            yield from amounts(inner)


@pytest.mark.parametrize(("locale", "shown"), [
    ("en_IE", ["€10.00 off", "€30.00", "€12.50"]),
    ("fr_FR", [f"10,00{NBSP}€ off", f"30,00{NBSP}€", f"12,50{NBSP}€"]),
])
def test_winback_email_prints_money_in_the_store_locale(settings, locale, shown):
    settings = settings.model_copy(update={"store": settings.store.model_copy(
        update={"locale": locale})})
    campaign = models.load_file(ROOT / "campaigns" / "winback.yaml")
    context = compose.context(settings, campaign, CUSTOMER, PAYLOADS["winback.yaml"], "BACK-1",
                              NOW, PRODUCTS)
    found = dict(amounts(context))
    assert found["amount_off"] == Money(1000, "EUR", locale)
    assert all(isinstance(v, Money) for v in found.values() if v is not None), found
    renderer = render.Renderer(ROOT / "templates", compose.store_context(settings))
    text = renderer.render(campaign.template, campaign.subject, context).text
    for amount in shown:
        assert amount in text


def test_nudge_subject_and_body_print_money_formatted(settings):
    campaign = models.load_file(ROOT / "campaigns" / "spend_gift.yaml")
    payload = PAYLOADS["spend_gift.yaml"]
    context = compose.context(settings, campaign, CUSTOMER, payload, None, NOW, PRODUCTS)
    assert context["nudge"]["missing_amount"] == Money(2730)
    renderer = render.Renderer(ROOT / "templates", compose.store_context(settings))
    email = renderer.render(campaign.template, compose.subject_for(campaign, payload), context)
    assert email.subject == "Only €27.30 to go for your gift card"  # the |money filter on Money
    assert "Spend €27.30 more by 30 June 2026 and we will thank you" in email.text
    assert "€122.70 spent of €150.00" in email.text


ALLOWED_INTS = {"id", "orders", "recency_days", "percent_off"}  # counts and percents, not money
EVERY_OFFER = {  # payloads of every offer a kind can carry, as the planner writes them
    "winback.yaml": [{"offer": {"kind": "coupon", "amount_off_cents": 2000,
                                "min_spend_cents": 3000, "valid_days": 14}, "products": ["TEA"]},
                     {"offer": {"kind": "coupon", "percent_off": 15, "min_spend_cents": 0,
                                "valid_days": 14}, "products": []}],
    "spend_gift.yaml": [
        {"offer": {"kind": "gift", "gift_card_cents": 1500, "gift_name": "€15.00 gift card",
                   "min_spend_cents": 15000, "valid_days": 30, "period": "2026-06"}},
        {"offer": {"kind": "gift", "gift_sku": "TEA", "min_spend_cents": 15000,
                   "valid_days": 30, "period": "2026-06"}},
        PAYLOADS["spend_gift.yaml"]],
    "bundles.yaml": [{"offer": {"kind": "bundle", "bundle_name": "Tea set",
                                "bundle_skus": ["TEA"], "bundle_price_cents": 1000,
                                "regular_price_cents": 1250, "valid_days": 30},
                      "products": ["TEA"]}],
    "new_arrivals.yaml": [{"products": ["TEA"]}],
}


def raw_ints(value, key=""):
    """(key, value) of every integer a template could print where money might hide."""
    if isinstance(value, dict):
        for inner_key, inner in value.items():
            yield from raw_ints(inner, inner_key)
    elif isinstance(value, list | tuple):
        for inner in value:
            yield from raw_ints(inner, key)
    elif isinstance(value, int) and not isinstance(value, bool) and key not in ALLOWED_INTS:
        yield key, value


@pytest.mark.parametrize("file", sorted(EVERY_OFFER))
def test_no_context_variable_is_raw_integer_cents(settings, file):
    campaign = models.load_file(ROOT / "campaigns" / file)
    for payload in EVERY_OFFER[file]:
        context = compose.context(settings, campaign, CUSTOMER, payload, "CODE-1", NOW, PRODUCTS)
        assert list(raw_ints(context)) == [], payload
        found = dict(amounts(context))
        assert all(isinstance(v, Money) for v in found.values() if v is not None), found


def test_the_issues_coupon_subject_prints_euros_and_validate_catches_a_doubled_sign(settings):
    """Issue 10, item 1: `here is €{{ offer.amount_off }} off` sent "€2000" for a €20 coupon."""
    campaign = models.load_file(ROOT / "campaigns" / "winback.yaml")
    payload = EVERY_OFFER["winback.yaml"][0]
    context = compose.context(settings, campaign, CUSTOMER, payload, "BACK-1", NOW, PRODUCTS)
    renderer = render.Renderer(ROOT / "templates", compose.store_context(settings))
    assert renderer.render_subject("here is {{ offer.amount_off }} off", context) == \
        "here is €20.00 off"
    problems = render.lint_subject("here is €{{ offer.amount_off }} off", "winback",
                                   "campaigns/winback.yaml", 7)
    assert [p.line for p in problems] == [7]
    assert "€€" in str(problems[0]) and 'remove the "€"' in str(problems[0])


PREHEADER = re.compile(r'<div class="preheader"[^>]*>(.*?)</div>', re.S)
FIRST_PARAGRAPH = re.compile(r'<td class="content".*?<p\b[^>]*>(.*?)</p>', re.S)


def visible(fragment: str) -> str:
    return " ".join(html.unescape(re.sub(r"<[^>]+>", "", fragment)).split())


@pytest.mark.parametrize("file", sorted(EVERY_OFFER))
def test_preview_text_is_the_emails_first_paragraph_never_the_description(settings, file):
    """Issue 10, item 2: inboxes showed the team's note ("Escalating coupon for customers who
    stopped ordering") as the preview line."""
    campaign = models.load_file(ROOT / "campaigns" / file).model_copy(update={"preheader": None})
    renderer = render.Renderer(ROOT / "templates", compose.store_context(settings))
    for payload in EVERY_OFFER[file]:
        context = compose.context(settings, campaign, CUSTOMER, payload, "CODE-1", NOW, PRODUCTS)
        email = compose.rendered(renderer, campaign, payload, context)
        preheader = visible(PREHEADER.search(email.html).group(1))
        assert preheader and preheader != campaign.description
        assert preheader == visible(FIRST_PARAGRAPH.search(email.html).group(1))[:len(preheader)]


def test_a_campaigns_preheader_is_rendered_like_its_subject(settings):
    text = (ROOT / "campaigns" / "winback.yaml").read_text()
    text = re.sub(r"^preheader: .*$", 'preheader: "{{ customer.first_name }}, your code is '
                  'inside"', text, flags=re.M)
    campaign = models.parse_text(text, "winback.yaml")
    renderer = render.Renderer(ROOT / "templates", compose.store_context(settings))
    payload = EVERY_OFFER["winback.yaml"][1]
    context = compose.context(settings, campaign, CUSTOMER, payload, "CODE-1", NOW, PRODUCTS)
    email = compose.rendered(renderer, campaign, payload, context)
    assert visible(PREHEADER.search(email.html).group(1)) == "Ann, your code is inside"
    assert "your code is inside" not in email.text  # the preheader is for the inbox only


HREF = re.compile(r'<a\b[^>]*\bhref="([^"]+)"')


def with_links(settings, **links):
    return settings.model_copy(update={"links": settings.links.model_copy(update=links)})


def email_of(settings, file: str, payload: dict):
    campaign = models.load_file(ROOT / "campaigns" / file)
    context = compose.context(settings, campaign, CUSTOMER, payload, "CODE-1", NOW, PRODUCTS)
    return context, compose.rendered(compose.renderer(settings), campaign, payload, context)


@pytest.mark.parametrize("file", sorted(EVERY_OFFER))
def test_every_link_carries_utm_tags_and_each_link_its_own_content(settings, project, file):
    """Issue 10, item 5: links went to the home page, without campaign tags."""
    settings = settings.model_copy(update={"source": str(project / "config.yaml")})
    campaign = models.load_file(ROOT / "campaigns" / file)
    for payload in EVERY_OFFER[file]:
        context, email = email_of(settings, file, payload)
        links = [html.unescape(h) for h in HREF.findall(email.html)]
        tagged = [h for h in links if h != context["unsubscribe_url"]]
        assert tagged and context["unsubscribe_url"] in links
        contents = {}
        for link in tagged:
            query = parse_qs(urlsplit(link).query)
            assert query["utm_source"] == ["newsletter"] and query["utm_medium"] == ["email"]
            assert query["utm_campaign"] == [campaign.id]
            contents.setdefault(query["utm_content"][0], set()).add(link.split("?")[0])
        assert all(len(targets) == 1 for targets in contents.values()), contents
        for url in re.findall(r"https?://\S+", email.text):
            url = url.rstrip(").")
            assert "utm_campaign=" in url or url == context["unsubscribe_url"], url


def test_product_buttons_link_to_the_product_and_a_bundle_to_a_cart_with_its_items(settings,
                                                                                  project):
    settings = with_links(settings.model_copy(update={"source": str(project / "config.yaml")}),
                          cart_url="https://shop.example/cart?add={skus}", utm=None)
    context, email = email_of(settings, "bundles.yaml", EVERY_OFFER["bundles.yaml"][0])
    assert context["offer"]["url"] == "https://shop.example/cart?add=TEA"
    links = [html.unescape(h) for h in HREF.findall(email.html)]
    assert "https://shop.example/cart?add=TEA" in links
    assert PRODUCTS["TEA"]["url"] in links
    assert not any("utm_" in link for link in links)  # links.utm: false turns tagging off


def test_a_cart_url_without_the_skus_placeholder_is_refused_at_its_line(tmp_path):
    path = tmp_path / "config.yaml"
    lines = (ROOT / "config.yaml").read_text().splitlines()
    at = next(i for i, line in enumerate(lines) if line.strip().startswith("cart_url:"))
    lines[at] = "  cart_url: https://shop.example/cart"
    path.write_text("\n".join(lines))
    with pytest.raises(ConfigError, match=r"\{skus\}") as caught:
        config.load(path, environ={})
    assert caught.value.line == at + 1


def test_a_real_shops_mail_keeps_its_catalogues_image_urls(settings, project, engine):
    """Drawn pictures are for the demo shop only (whose database says so)."""
    settings = settings.model_copy(update={"source": str(project / "config.yaml")})
    campaign = models.load_file(ROOT / "campaigns" / "new_arrivals.yaml")
    payload = EVERY_OFFER["new_arrivals.yaml"][0]
    products = {"TEA": {**PRODUCTS["TEA"], "image_url": "https://cdn.shop.example/tea.jpg"}}
    context = compose.context(settings, campaign, CUSTOMER, payload, None, NOW, products)
    email = compose.rendered(compose.renderer(settings), campaign, payload, context)
    assert not compose.demo_shop(engine)
    shown, inline = compose.with_pictures(email, context["products"])
    assert 'src="https://cdn.shop.example/tea.jpg"' in email.html
    assert 'src="cid:tea@pictures.retain"' in shown.html and len(inline) == 1
