"""engine/money.py: reading a shop's amounts, showing them in the store's locale, and Money."""

from __future__ import annotations

import copy
import pickle
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from engine import config, money
from engine.errors import ConfigError
from engine.money import AmountError, Money

NBSP, NNBSP = "\u00a0", "\u202f"  # Babel keeps "20,00 €" and "1 234" on one line


@pytest.mark.parametrize(("text", "cents"), [
    ("1234.50", 123450), ("1,234.50", 123450), ("1,234,567.00", 123456700), ("12", 1200),
    ("12.5", 1250), ("0.05", 5), ("0", 0),
])
def test_parse_reads_a_shops_amounts(text, cents):
    assert money.parse(text) == cents


@pytest.mark.parametrize(("text", "says"), [
    ("12,50", '"12,50" has a decimal comma; write 12.50'),
    ("1,234", '"1,234" is ambiguous (a thousands or a decimal comma?); write it like 1234.00'),
    ("-3", '"-3" is not an amount; write it like 1234.50'),
    ("12.345", '"12.345" is not an amount'),
    ("€12", '"€12" is not an amount; write it without the currency sign, like 12'),
    ("1 234.50", '"1 234.50" is not an amount'),
])
def test_parse_refuses_what_it_cannot_read_and_says_how_to_write_it(text, says):
    with pytest.raises(AmountError) as caught:
        money.parse(text)
    assert str(caught.value).startswith(says)


@pytest.mark.parametrize(("text", "cents"), [
    ("12,50", 1250), ("1.234,50", 123450), ("1 234,50", 123450), (f"1{NNBSP}234,50", 123450),
    (f"1{NBSP}234,5", 123450), ("12", 1200), ("0,05", 5), ("1.234", 123400),
])
def test_parse_reads_a_decimal_comma_when_told(text, cents):
    assert money.parse(text, decimal_comma=True) == cents


@pytest.mark.parametrize(("text", "says"), [
    ("12.50", '"12.50" has a decimal point, not a decimal comma'),
    ("1,234", '"1,234" has more than two decimals'),
    ("12,5x", '"12,5x" is not an amount; write it like 1234,50'),
])
def test_parse_with_a_decimal_comma_refuses_and_says_how(text, says):
    with pytest.raises(AmountError) as caught:
        money.parse(text, decimal_comma=True)
    assert str(caught.value).startswith(says)


@pytest.mark.parametrize(("text", "style"), [
    ("12,50", "comma"), ("1.234,50", "comma"), ("1 234,5", "comma"), ("12.50", "point"),
    ("1,234.50", "point"), ("12", None), ("1,234", None), ("1.234", None), ("x", None),
])
def test_the_decimal_mark_an_amount_shows(text, style):
    assert money.decimal_mark(text) == style


@pytest.mark.parametrize(("amount", "cents"), [
    (Decimal("49.90"), 4990), (49.9, 4990), (15, 1500), (Decimal("0.005"), 1), (0.1 + 0.2, 30),
])
def test_cents_of_an_amount_in_currency_units(amount, cents):
    assert money.cents(amount) == cents


@pytest.mark.parametrize(("cents", "currency", "locale", "shown"), [
    (2000, "EUR", "fr_FR", f"20,00{NBSP}€"),
    (2000, "EUR", "en_IE", "€20.00"),
    (123456, "EUR", "en_IE", "€1,234.56"),
    (123456, "EUR", "fr_FR", f"1{NNBSP}234,56{NBSP}€"),
    (123456, "EUR", "de_DE", f"1.234,56{NBSP}€"),
    (-150, "GBP", "en_IE", "-£1.50"),
    (123456, "USD", "en_US", "$1,234.56"),
    (0, "EUR", "en_IE", "€0.00"),
])
def test_format_writes_amounts_as_the_locale_does(cents, currency, locale, shown):
    assert money.format(cents, currency, locale) == shown
    assert str(Money(cents, currency, locale)) == shown


def test_decimal_text_is_the_json_form():
    assert money.decimal_text(123450) == "1234.50"
    assert money.decimal_text(-5) == "-0.05"
    assert money.decimal_text(None) is None


def test_money_prints_formatted_and_keeps_its_cents():
    price = Money(1250)
    assert (str(price), f"{price}", f"[{price:>8}]") == ("€12.50", "€12.50", "[  €12.50]")
    assert price.cents == 1250 and price.currency == "EUR" and price.locale == "en_IE"
    with pytest.raises(TypeError, match="integer cents"):
        Money(12.5)  # type: ignore[arg-type]


def test_money_arithmetic_and_comparison_stay_money():
    a, b = Money(1250), Money(750)
    assert a + b == Money(2000) and isinstance(a + b, Money)
    assert a - b == Money(500) and -a == Money(-1250) and abs(-a) == a
    assert a * 2 == 2 * a == Money(2500) and a // 3 == Money(416)
    assert sum([a, b]) == Money(2000)  # Jinja's sum starts at 0
    assert b < a and a >= b and max(a, b) is a
    assert not Money(0) and a  # {% if offer.min_spend %}
    # An int beside a Money is cents, as the template context's money was before Money.
    assert a == 1250 and a > 1000 and a + 50 == Money(1300) and 2000 - a == Money(750)
    assert {a: "x"}[1250] == "x"
    # The locale only changes how it prints.
    assert Money(1250, "EUR", "fr_FR") == a and str(Money(1250, "EUR", "fr_FR")) != str(a)


def test_money_of_two_currencies_does_not_mix():
    euros, pounds = Money(100, "EUR"), Money(100, "GBP")
    assert euros != pounds
    for combine in (lambda: euros + pounds, lambda: euros - pounds, lambda: euros < pounds):
        with pytest.raises(ValueError, match="cannot combine EUR and GBP amounts"):
            combine()
    with pytest.raises(TypeError):
        euros * 1.5  # noqa: B018 - a float factor would round silently


def test_money_pickles_and_copies_for_render_workers():
    context = {"offer": {"min_spend": Money(3000, "EUR", "fr_FR")}, "products": [Money(1250)]}
    assert pickle.loads(pickle.dumps(context)) == context
    assert copy.deepcopy(context) == context
    # A fresh interpreter (as a render worker is) reads it back and prints it the same.
    root = Path(__file__).resolve().parents[1]
    shown = subprocess.run(
        [sys.executable, "-c", "import pickle, sys; print(pickle.load(sys.stdin.buffer))"],
        input=pickle.dumps(Money(3000, "EUR", "fr_FR")), capture_output=True, check=True,
        cwd=root).stdout.decode().strip()
    assert shown == f"30,00{NBSP}€"


def test_store_locale_defaults_to_en_ie_and_a_bad_one_is_refused_at_its_line(tmp_path):
    path = tmp_path / "config.yaml"
    store = ('store:\n  name: Test Shop\n  url: https://shop.example\n'
             '  postal_address: "1 Main Street, 10001 Springfield"\n')
    path.write_text(store)
    assert config.load(path, environ={}).store.locale == "en_IE"
    path.write_text(store + "  locale: fr-FR\n")
    french = config.load(path, environ={}).store
    assert french.locale == "fr_FR" and str(french.money(2000)) == f"20,00{NBSP}€"
    path.write_text(store + "  locale: klingon\n")
    with pytest.raises(ConfigError) as caught:
        config.load(path, environ={})
    assert str(caught.value).startswith(f"{path}:5: ")
    assert '"klingon" is not a locale' in str(caught.value) and "fr_FR" in str(caught.value)
