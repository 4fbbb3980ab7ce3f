"""Reading one CSV import file: bytes → header and rows → typed cell values.

Owns: opening a file (UTF-8 with or without BOM; the header picks comma, semicolon or tab),
matching header names case-insensitively, streaming rows one at a time (padded to the header's
width, blank lines passed over), and the cell parsers (quantities, dates in the store's zone,
yes/no, email, tags, currency, time zone, status tables; amounts are read by money.parse). A
bad cell raises CsvError naming the file, the row (the header is row 1, as in a spreadsheet) and
the column. Must not know what a column means for the shop (csvformats.py maps rows to records)
nor touch the database.
"""

from __future__ import annotations

import codecs
import csv
import itertools
import re
from collections.abc import Callable, Iterator
from datetime import datetime, tzinfo
from functools import lru_cache
from pathlib import Path
from typing import Any, NoReturn, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from engine.errors import CsvError
from engine.money import AmountError
from engine.tables import OrderStatus

T = TypeVar("T")

YES = frozenset({"yes", "y", "true", "1", "subscribed"})
NO = frozenset({"no", "n", "false", "0", "unsubscribed", "not_subscribed", ""})


class BadCell(ValueError):
    """A cell that cannot be read; the message says what is wrong and how to write it."""


class CsvFile:
    """One import file, read as a stream of rows; only one chunk of rows is ever in memory."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.name = str(path)
        self.rows_read = 0   # data rows handed out so far (the header not counted)
        self.skipped = 0     # rows the format says carry nothing to import (counted, reported)
        self.format = "generic"  # csvformats.choose_format settles it from the header
        try:
            self._binary = open(self.path, "rb")  # noqa: SIM115 - closed by __exit__
            self.size = self.path.stat().st_size
        except OSError as exc:
            raise CsvError(f"cannot read the file ({exc.strerror}); check the path",
                           self.name) from None
        self.header: list[str] = []
        lines = self._text_lines()
        first = next(lines, "")
        # The header decides the delimiter: spreadsheets in comma-decimal locales write ';'.
        delimiter = max((",", ";", "\t"), key=first.count)
        self._reader = csv.reader(itertools.chain([first], lines), delimiter=delimiter)
        # Shopify's product descriptions can outgrow csv's 128 KiB default for one cell.
        csv.field_size_limit(max(csv.field_size_limit(), 16 * 1024 * 1024))
        header = [cell.strip() for cell in self._next_cells() or []]
        if not any(header):
            raise CsvError("the file is empty; its first row must name the columns", self.name)
        self.header = header
        self.index: dict[str, int] = {}
        for position, cell in enumerate(self.header):
            if cell.lower() in self.index:
                raise CsvError(f"column '{cell}' appears twice in the header; rename one",
                               self.name, 1)
            self.index[cell.lower()] = position
        # Column name as the code spells it → position, or -1; filled on first use (hot path).
        self.positions = _Positions(self.index)

    def __enter__(self) -> CsvFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self._binary.close()

    def bytes_read(self) -> int:
        return self._binary.tell()

    def has(self, column: str) -> bool:
        return self.positions[column] >= 0

    def spelling(self, column: str) -> str:
        """The column's name as this file writes it."""
        position = self.index.get(column.lower())
        return column if position is None else self.header[position]


    def _next_cells(self) -> list[str] | None:
        try:
            return next(self._reader, None)
        except csv.Error as exc:
            raise CsvError(f"cannot be read as CSV ({exc}); check the quotes around values",
                           self.name, self._row_being_read()) from None

    def _row_being_read(self) -> int:
        return self.rows_read + 2 if self.header else 1

    def rows(self) -> Iterator[Row]:
        width = len(self.header)
        while (cells := self._next_cells()) is not None:
            if not any(cells):
                continue  # a blank line (spreadsheets leave them at the end) holds no record
            self.rows_read += 1
            if len(cells) < width:  # some writers drop trailing empty cells
                cells.extend([""] * (width - len(cells)))
            elif len(cells) > width and any(cell.strip() for cell in cells[width:]):
                raise CsvError(f"has {len(cells)} cells but the header names {width} columns; "
                               "quote values that contain the delimiter", self.name,
                               self.rows_read + 1)
            yield Row(self, self.rows_read + 1, cells)

    def _text_lines(self) -> Iterator[str]:
        # Decoding line by line (not via a text wrapper) so a bad byte is reported at its row.
        for number, raw in enumerate(self._binary, 1):
            if number == 1 and raw.startswith(codecs.BOM_UTF8):
                raw = raw[len(codecs.BOM_UTF8):]
            try:
                yield raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise CsvError(
                    f"the file is not UTF-8 text (byte 0x{raw[exc.start]:02x} cannot be read); "
                    "save it as 'CSV UTF-8' from your spreadsheet and import it again",
                    self.name, self._row_being_read()) from None


class Row:
    """One data row; reads cells by column name and reports bad ones with row and column."""

    __slots__ = ("source", "number", "cells")

    def __init__(self, source: CsvFile, number: int, cells: list[str]):
        self.source, self.number, self.cells = source, number, cells

    def text(self, column: str) -> str:
        """The cell, stripped; "" when the file has no such column."""
        position = self.source.positions[column]
        if position < 0:
            return ""
        value = self.cells[position].strip()
        # Shopify prefixes ids, zips and phones with ' so spreadsheets keep them as text.
        if value[:1] == "'" and self.source.format == "shopify" and value[1:2] in _DIGIT_OR_PLUS:
            return value[1:]
        return value

    def fail(self, column: str, message: str) -> NoReturn:
        raise CsvError(message, self.source.name, self.number, self.source.spelling(column))

    def value(self, column: str, parse: Callable[[str], T], default: Any = None,
              need: str | None = None) -> T:
        """Parse the cell; an empty cell gives ``default``, or fails when ``need`` says why."""
        position = self.source.positions[column]  # rows() pads every row to the header's width
        text = self.cells[position].strip() if position >= 0 else ""
        if text[:1] == "'" and self.source.format == "shopify":
            text = self.text(column)
        if not text:
            if need:
                self.fail(column, f"is empty; {need}")
            return default
        try:
            return parse(text)
        except (BadCell, AmountError) as exc:
            self.fail(column, str(exc))


class _Positions(dict):
    def __init__(self, index: dict[str, int]):
        super().__init__()
        self.index = index

    def __missing__(self, column: str) -> int:
        self[column] = self.index.get(column.lower(), -1)
        return self[column]


_DIGIT_OR_PLUS = frozenset("0123456789+")
_SPACED_OFFSET = re.compile(r" ([+-]\d\d:?\d\d)$")
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")


@lru_cache(maxsize=1024)
def quantity(text: str) -> int:
    if not text.isdigit() or int(text) == 0:
        raise BadCell(f'"{text}" is not a quantity; write a whole number like 2')
    return int(text)


def moment_in(zone: tzinfo) -> Callable[[str], datetime]:
    """A parser of ISO dates and datetimes; no offset means the store's local time."""
    def moment(text: str) -> datetime:
        if " +" in text or " -" in text:  # Shopify writes "2025-10-07 09:50:26 +0200"
            text = _SPACED_OFFSET.sub(r"\1", text)
        try:
            value = datetime.fromisoformat(text)
        except ValueError:
            raise BadCell(f'"{text}" is not a date; write 2025-10-07, 2025-10-07 09:50 or '
                          "2025-10-07T09:50:26+02:00") from None
        return value if value.tzinfo else value.replace(tzinfo=zone)
    return moment


def yes_no(text: str) -> bool:
    word = text.lower()
    if word in YES or word in NO:
        return word in YES
    raise BadCell(f'"{text}" is not yes or no; write yes, no, true or false')


def email(text: str) -> str:
    if _EMAIL.fullmatch(text) is None:
        # The value is not repeated: error output may end up in logs, addresses must not.
        raise BadCell("is not an email address (it needs one @, a domain, and no spaces)")
    return text


def tags(text: str) -> str:
    words = (word.strip().lower() for word in text.split(","))
    return ",".join(dict.fromkeys(word for word in words if word))


@lru_cache(maxsize=64)
def currency(text: str) -> str:
    if not re.fullmatch(r"[A-Za-z]{3}", text):
        raise BadCell(f'"{text}" is not a currency code; write three letters like EUR')
    return text.upper()


@lru_cache(maxsize=256)
def timezone_name(text: str) -> str:
    try:
        ZoneInfo(text)
    except (ZoneInfoNotFoundError, ValueError):
        raise BadCell(f'"{text}" is not a time zone; write a name like Europe/Paris') from None
    return text


def status_from(table: dict[str, OrderStatus]) -> Callable[[str], OrderStatus]:
    def status(text: str) -> OrderStatus:
        found = table.get(text.lower())
        if found is None:
            raise BadCell(f'"{text}" is not an order status; write one of '
                          f"{', '.join(sorted(table))}")
        return found
    return status
