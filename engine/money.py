"""Money: amounts as integer cents, read from a shop's text and shown in the store's locale.

Owns the one way to read an amount and the one way to show it:
- ``parse``: a shop's amount text ("1234.50", "1,234.50") → integer cents; with
  ``decimal_comma``, as French and German spreadsheets write it ("1.234,50", "1 234,50");
  ``decimal_mark`` says which mark a text shows ("12,50": comma; "1,234": it cannot tell);
  an amount over MAX_CENTS is refused; each refusal says what is wrong and how to write it;
- ``cents``: an amount in currency units (a campaign's ``Decimal``) → cents, half up;
- ``format``: cents → text in a currency and locale through Babel ("€20.00" in ``en_IE``,
  "20,00 €" in ``fr_FR``; Babel puts a no-break space there, so the amount never wraps);
- ``decimal_text``: cents → "1234.50", the machine form JSON output keeps;
- ``Money``: the frozen value templates receive. It prints formatted (``{{ offer.min_spend }}``
  → "€30.00"), keeps ``.cents`` for arithmetic, compares, adds and subtracts as Money, and
  pickles (render workers receive it).

Amounts are stored in hundredths of the currency unit in every currency (tables.py), so a
currency without minor units still round-trips: 1234 yen is 123400 here and prints "¥1,234".
Foundation module: imports nothing else from ``engine``; must not read config.yaml (callers pass
the store's currency and locale).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from functools import lru_cache

from babel import Locale, UnknownLocaleError
from babel.numbers import format_currency

DEFAULT_CURRENCY = "EUR"
DEFAULT_LOCALE = "en_IE"  # English wording with the euro before the amount: "€1,234.50"

_AMOUNT = re.compile(r"(\d{1,3}(?:,\d{3})+|\d+)(?:\.(\d{1,2}))?")
# The largest amount the engine takes (10,000,000.00): money columns are INTEGER cents, 32 bits on
# PostgreSQL (21,474,836.47 at most).
MAX_CENTS = 1_000_000_000
# Decimal comma: thousands grouped by a dot, a space or the no-break spaces spreadsheets write.
_COMMA_AMOUNT = re.compile(r"(\d{1,3}(?:[. \u00a0\u202f]\d{3})+|\d+)(?:,(\d{1,2}))?")
_NOT_DIGITS = re.compile(r"\D")
# "€12", "12 €", "EUR 12": a currency sign (one character) or code (three capitals) beside it.
_WITH_CURRENCY = re.compile(r"\s*([^\d\s.,-]|[A-Z]{3})?\s*(\d[\d., \u00a0\u202f]*)\s*"
                            r"([^\d\s.,-]|[A-Z]{3})?\s*")


class AmountError(ValueError):
    """Text that is not an amount; the message says what is wrong and how to write it."""


@lru_cache(maxsize=8192)  # a shop has a few thousand price points, repeated on every order
def parse(text: str, decimal_comma: bool = False) -> int:
    """'1234.50' or '1,234.50' → 123450; with ``decimal_comma``, '1.234,50' or '1 234,50'.
    Without it a lone comma is refused: '1,234' could be either."""
    if decimal_comma:
        return _parse_comma(text)
    whole, dot, fraction = text.partition(".")
    if whole.isdigit() and whole.isascii() and (
            not dot or len(fraction) <= 2 and fraction.isdigit() and fraction.isascii()):
        # The common spelling, read without a regex: this runs a million times an import.
        amount = int(whole) * 100 + (int(fraction) * (10 if len(fraction) == 1 else 1)
                                     if dot else 0)
        return amount if len(whole) < 7 else _at_most_max(amount, text)
    match = _AMOUNT.fullmatch(text)
    if match is None:
        comma = _COMMA_AMOUNT.fullmatch(text)
        if comma is not None and comma[2] is not None:
            whole = _NOT_DIGITS.sub("", comma[1])
            raise AmountError(f'"{text}" has a decimal comma; write {whole}.{comma[2]}')
        raise AmountError(_not_an_amount(text, "1234.50"))
    whole, fraction = match.groups()
    if fraction is None and "," in whole:
        raise AmountError(f'"{text}" is ambiguous (a thousands or a decimal comma?); '
                          "write it like 1234.00")
    return _at_most_max(int(whole.replace(",", "")) * 100 + int((fraction or "0").ljust(2, "0")),
                        text)


def _at_most_max(amount: int, text: str) -> int:
    if amount > MAX_CENTS:
        raise AmountError(f'"{text}" is more than {MAX_CENTS // 100:,}.00, the largest amount '
                          "the engine takes; check the column holds amounts")
    return amount


def _parse_comma(text: str) -> int:
    match = _COMMA_AMOUNT.fullmatch(text)
    if match is None:
        if decimal_mark(text) == "point":
            whole, _, fraction = text.replace(",", "").partition(".")
            raise AmountError(f'"{text}" has a decimal point, not a decimal comma; write '
                              f"{whole},{fraction}")
        if re.fullmatch(r"\d+,\d{3,}", text):
            raise AmountError(f'"{text}" has more than two decimals; write at most two, '
                              "like 1234,50")
        raise AmountError(_not_an_amount(text, "1234,50"))
    whole, fraction = match.groups()
    return _at_most_max(int(_NOT_DIGITS.sub("", whole)) * 100 +
                        int((fraction or "0").ljust(2, "0")), text)


def decimal_mark(text: str) -> str | None:
    """Which decimal mark ``text`` shows: "comma" ("12,50", "1.234,50"), "point" ("12.50",
    "1,234.50"), or None when it shows none or could be either ("12", "1,234", "1.234")."""
    match = _AMOUNT.fullmatch(text)
    if match is not None and match[2] is not None:
        return "point"
    match = _COMMA_AMOUNT.fullmatch(text)
    if match is not None and match[2] is not None:
        return "comma"
    return None


def _not_an_amount(text: str, example: str) -> str:
    """Why ``text`` is no amount: a currency sign or code beside it ("€12", "12 EUR"), or
    anything else."""
    match = _WITH_CURRENCY.fullmatch(text)
    if match is not None and (match[1] or match[3]) and all(
            not part or part.isupper() or unicodedata.category(part) == "Sc"
            for part in (match[1], match[3])):
        return (f'"{text}" is not an amount; write it without the currency sign, like '
                f"{match[2].strip()}")
    return f'"{text}" is not an amount; write it like {example}'


def cents(amount: Decimal | int | float) -> int:
    """An amount in currency units (49.9, Decimal("49.90")) → cents, rounded half up."""
    return int((Decimal(str(amount)) * 100).quantize(Decimal(1), rounding=ROUND_HALF_UP))


@lru_cache(maxsize=4096)  # an audience sees the same few prices again and again
def format(amount_cents: int, currency: str = DEFAULT_CURRENCY,
           locale: str = DEFAULT_LOCALE) -> str:
    """Cents → the amount as the locale writes it: "€12.50", "-£1.50", "12,50 €"."""
    return format_currency(Decimal(amount_cents).scaleb(-2), currency, locale=locale)


def decimal_text(amount_cents: int | None) -> str | None:
    """Cents → "123.45" (always two decimals, no currency), the form JSON output uses."""
    if amount_cents is None:
        return None
    return str(Decimal(amount_cents).scaleb(-2).quantize(Decimal("0.01")))


def check_locale(name: str) -> str:
    """``name`` as Babel spells it ("en_IE"); ValueError saying how to write one otherwise."""
    try:
        return str(Locale.parse(name.replace("-", "_")))
    except (UnknownLocaleError, ValueError, TypeError):
        raise ValueError(f'"{name}" is not a locale Babel knows; write a language and country '
                         'like "en_IE", "fr_FR" or "de_DE"') from None


@dataclass(frozen=True, slots=True, eq=False)
class Money:
    """An amount of one currency, printed as its locale writes it.

    ``str()`` (and so Jinja's ``{{ }}``) gives the formatted amount; ``.cents`` the integer.
    Money adds to and subtracts Money of the same currency, multiplies and floor-divides by
    whole numbers, and compares with Money. A plain int beside a Money counts as cents, as the
    template context's money did before it became Money, so ``0 + price`` (Jinja's ``sum``) and
    an old template's ``price > 5000`` keep working. Mixing currencies is a ValueError. The
    locale only decides how it prints: Money of equal cents and currency is equal.
    """

    cents: int
    currency: str = DEFAULT_CURRENCY
    locale: str = DEFAULT_LOCALE

    def __post_init__(self) -> None:
        if not isinstance(self.cents, int) or isinstance(self.cents, bool):
            raise TypeError(f"Money needs integer cents, got {self.cents!r}")

    def __str__(self) -> str:
        return format(self.cents, self.currency, self.locale)

    def __format__(self, spec: str) -> str:  # f"{price:>12}" pads the formatted text
        return str(self).__format__(spec)

    def __bool__(self) -> bool:
        return self.cents != 0

    def __hash__(self) -> int:
        return hash(self.cents)  # equal to the int it equals

    def _with(self, amount_cents: int) -> Money:
        return Money(amount_cents, self.currency, self.locale)

    def _cents_of(self, other: object) -> int | None:
        """Other's cents: another Money of the same currency, or an int (cents); else None."""
        if isinstance(other, Money):
            if other.currency != self.currency:
                raise ValueError(f"cannot combine {self.currency} and {other.currency} amounts")
            return other.cents
        if isinstance(other, int) and not isinstance(other, bool):
            return other
        return None

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Money) and other.currency != self.currency:
            return False
        theirs = self._cents_of(other)
        return NotImplemented if theirs is None else self.cents == theirs

    def __lt__(self, other: object) -> bool:
        theirs = self._cents_of(other)
        return NotImplemented if theirs is None else self.cents < theirs

    def __le__(self, other: object) -> bool:
        theirs = self._cents_of(other)
        return NotImplemented if theirs is None else self.cents <= theirs

    def __gt__(self, other: object) -> bool:
        theirs = self._cents_of(other)
        return NotImplemented if theirs is None else self.cents > theirs

    def __ge__(self, other: object) -> bool:
        theirs = self._cents_of(other)
        return NotImplemented if theirs is None else self.cents >= theirs

    def __add__(self, other: object) -> Money:
        theirs = self._cents_of(other)
        return NotImplemented if theirs is None else self._with(self.cents + theirs)

    __radd__ = __add__

    def __sub__(self, other: object) -> Money:
        theirs = self._cents_of(other)
        return NotImplemented if theirs is None else self._with(self.cents - theirs)

    def __rsub__(self, other: object) -> Money:
        theirs = self._cents_of(other)
        return NotImplemented if theirs is None else self._with(theirs - self.cents)

    def __mul__(self, factor: object) -> Money:
        if isinstance(factor, int) and not isinstance(factor, bool):
            return self._with(self.cents * factor)
        return NotImplemented

    __rmul__ = __mul__

    def __floordiv__(self, divisor: object) -> Money:
        if isinstance(divisor, int) and not isinstance(divisor, bool):
            return self._with(self.cents // divisor)
        return NotImplemented

    def __neg__(self) -> Money:
        return self._with(-self.cents)

    def __abs__(self) -> Money:
        return self._with(abs(self.cents))
