"""Reading one CSV import file: bytes → header and rows → typed cell values.

Owns: opening a file (UTF-8 with or without BOM; the header picks comma, semicolon or tab),
matching header names case-insensitively, streaming rows one at a time (padded to the header's
width, blank lines passed over), and the cell parsers (quantities, dates in the store's zone,
yes/no, email, tags, currency, time zone, status tables; amounts are read by money.parse, with
the file's decimal mark kept by ``Amounts``: a spreadsheet writes one mark throughout). A
bad cell raises CsvError naming the file, the row (the header is row 1, as in a spreadsheet) and
the column. Must not know what a column means for the shop (csvformats.py maps rows to records)
nor touch the database.

What the database cannot hold is refused here, before any row is written: amounts above
money.MAX_CENTS (money.parse refuses them), quantities above MAX_QUANTITY, dates outside
MIN_YEAR..MAX_YEAR (year 1 in Paris is year 0 in UTC), NUL bytes (PostgreSQL text cannot hold
them) outside the columns in ``cleaned`` (names, made one line when written). Quotes are read
strictly: a quote left open would make the rest of the file one value, and one closed some lines
later would swallow the rows between; both are refused at the row and column where the quote
opens.
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

from engine import money
from engine.errors import CsvError
from engine.money import AmountError
from engine.tables import OrderStatus

T = TypeVar("T")

MAX_QUANTITY = 100_000
MIN_YEAR, MAX_YEAR = 1900, 2999
YES = frozenset({"yes", "y", "true", "1", "subscribed"})
NO = frozenset({"no", "n", "false", "0", "unsubscribed", "not_subscribed", ""})


class BadCell(ValueError):
    """A cell that cannot be read; the message says what is wrong and how to write it."""


class CsvFile:
    """One import file, read as a stream of rows; only one chunk of rows is ever in memory."""

    def __init__(self, path: str | Path, decimal_comma: bool = False):
        self.path = Path(path)
        self.name = str(path)
        self.amounts = Amounts(decimal_comma)
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
        self._record_line = ""  # the first physical line of the record being read
        self._record_has_nul = False
        # Columns whose values are cleaned of control characters, NUL included, before they are
        # written (names: csvformats sets it); a NUL anywhere else refuses the row.
        self.cleaned: frozenset[str] = frozenset()
        lines = self._text_lines()
        first = next(lines, "")
        # The header decides the delimiter: spreadsheets in comma-decimal locales write ';'.
        self.delimiter = delimiter = max((",", ";", "\t"), key=first.count)
        self._reader = csv.reader(itertools.chain([first], lines), delimiter=delimiter,
                                  strict=True)
        # Shopify's product descriptions can outgrow csv's 128 KiB default for one cell.
        csv.field_size_limit(max(csv.field_size_limit(), 16 * 1024 * 1024))
        header = [cell.strip() for cell in self._next_cells() or []]
        if not any(header):
            empty = "the file is empty" if self.size <= len(first.encode()) else \
                "the first row is empty"
            raise CsvError(f"{empty}; its first row must name the columns", self.name, 1)
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
        self._record_line, self._record_has_nul = "", False
        try:
            return next(self._reader, None)
        except csv.Error as exc:
            column = None
            if "end of data" in str(exc) or "expected after" in str(exc):
                column = self._column_name(_quote_trouble(self._record_line, self.delimiter))
            if "end of data" in str(exc):
                message = ("a quote opens here and is never closed, so the rest of the file "
                           "would be one value; close it (write \"\" for a quote inside a "
                           "quoted value)")
            elif "expected after" in str(exc):
                message = ("text follows a closing quote; put the whole value in quotes and "
                           "write \"\" for each quote inside it")
            elif "new-line character" in str(exc):
                line = self._record_line
                column = self._column_name(_cell_at(line[:line.find("\r")], self))
                message = ("a carriage return (\\r) splits a value that is not in quotes; "
                           "save the file again from your spreadsheet")
            else:
                message = f"cannot be read as CSV ({exc}); check the quotes around values"
            raise CsvError(message, self.name, self._row_being_read(), column) from None

    def _column_name(self, position: int) -> str | None:
        if not self.header:
            return None
        return self.header[position] if position < len(self.header) else \
            f"{position + 1} (beyond the header)"

    def _row_being_read(self) -> int:
        return self.rows_read + 2 if self.header else 1

    def rows(self) -> Iterator[Row]:
        width = len(self.header)
        reader = self._reader
        line = reader.line_num
        while (cells := self._next_cells()) is not None:
            spanned, line = reader.line_num - line, reader.line_num
            if not any(cells):
                continue  # a blank line (spreadsheets leave them at the end) holds no record
            if spanned > 1:  # a quoted value over several lines: legal, unless it holds rows
                self._refuse_swallowed_rows(cells, width)
            if self._record_has_nul:
                self._refuse_nul(cells)
            self.rows_read += 1
            if len(cells) < width:  # some writers drop trailing empty cells
                cells.extend([""] * (width - len(cells)))
            elif len(cells) > width and any(cell.strip() for cell in cells[width:]):
                raise CsvError(f"has {len(cells)} cells but the header names {width} columns; "
                               "quote values that contain the delimiter", self.name,
                               self.rows_read + 1)
            yield Row(self, self.rows_read + 1, cells)

    def _refuse_swallowed_rows(self, cells: list[str], width: int) -> None:
        """A value whose later lines each look like a row of the file was opened by a quote
        that closes too late: the rows in between would be lost inside it."""
        for position, cell in enumerate(cells):
            later = cell.split("\n")[1:]
            if later and width > 1 and all(
                    part.count(self.delimiter) >= width - 1 for part in later if part.strip()):
                raise CsvError(
                    f"a quote opens here and closes only {len(later)} line(s) further down, "
                    "so the rows in between would become part of this value; close the quote "
                    "(write \"\" for a quote inside a quoted value)", self.name,
                    self.rows_read + 2, self._column_name(position))

    def _refuse_nul(self, cells: list[str]) -> None:
        """PostgreSQL stores no NUL: one outside a cleaned column refuses the row."""
        for position, cell in enumerate(cells):
            name = self._column_name(position)
            if "\x00" in cell and (name or "").lower() not in self.cleaned:
                raise CsvError("holds a NUL character (byte 0x00), which a database cannot "
                               "store; export the file again or remove it", self.name,
                               self.rows_read + 2, name)

    def _text_lines(self) -> Iterator[str]:
        # Decoding line by line (not via a text wrapper) so a bad byte is reported at its row.
        for number, raw in enumerate(self._binary, 1):
            if number == 1 and raw.startswith(codecs.BOM_UTF8):
                raw = raw[len(codecs.BOM_UTF8):]
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise CsvError(
                    f"the file is not UTF-8 text (byte 0x{raw[exc.start]:02x} cannot be read); "
                    "save it as 'CSV UTF-8' from your spreadsheet and import it again",
                    self.name, self._row_being_read(),
                    self._column_name(_cell_at(text_before(raw, exc.start), self))) from None
            if not self._record_line:
                self._record_line = text
            if "\x00" in text:
                if not self.header:
                    raise CsvError("the header holds a NUL character (byte 0x00); export the "
                                   "file again", self.name, 1)
                self._record_has_nul = True
            yield text


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

    def amount(self, column: str, default: Any = None, need: str | None = None) -> Any:
        """An amount in cents, read with the file's decimal mark (``Amounts``)."""
        amounts = self.source.amounts
        if amounts.mark is None:
            amounts.settle(self._cell(column), self.number, self.source.spelling(column))
        return self.value(column, amounts.parse, default, need)

    def value(self, column: str, parse: Callable[[str], T], default: Any = None,
              need: str | None = None) -> T:
        """Parse the cell; an empty cell gives ``default``, or fails when ``need`` says why."""
        text = self._cell(column)
        if not text:
            if need:
                self.fail(column, f"is empty; {need}")
            return default
        try:
            return parse(text)
        except (BadCell, AmountError) as exc:
            self.fail(column, str(exc))

    def _cell(self, column: str) -> str:
        position = self.source.positions[column]  # rows() pads every row to the header's width
        text = self.cells[position].strip() if position >= 0 else ""
        if text[:1] == "'" and self.source.format == "shopify":
            text = self.text(column)
        return text


class Amounts:
    """The decimal mark of one file's amounts. Told (``--decimal-comma``), or settled by the
    first amount that shows one ("12,50": comma; "12.50": point; "12" and "1,234" show none);
    an amount written with the other mark after that is refused with both rows, since a file
    that mixes them cannot be read safely. Until a mark is settled, amounts read as 1234.50."""

    def __init__(self, decimal_comma: bool = False):
        self.told = decimal_comma
        self.mark: str | None = "comma" if decimal_comma else None
        self.where = ""  # "row 2 (column 'price')": where the mark was settled

    def settle(self, text: str, row: int, column: str) -> None:
        """Take the mark ``text`` shows, if any, as the file's (while none is settled)."""
        if text and not text.isdigit() and (found := money.decimal_mark(text)) is not None:
            self.mark, self.where = found, f"row {row} (column '{column}')"

    def parse(self, text: str) -> int:
        try:
            return money.parse(text, self.mark == "comma")
        except AmountError as exc:
            raise BadCell(self._why(text, str(exc))) from None

    def _why(self, text: str, said: str) -> str:
        other = money.decimal_mark(text)
        if self.told:
            return f"{said} (the file is read with --decimal-comma)"
        if self.mark is not None and other is not None and other != self.mark:
            return (f'"{text}" has a decimal {other}, but {self.where} has a decimal '
                    f"{self.mark}: the file mixes both; export it again with one of them")
        if self.mark is None and _reads_with_comma(text):
            return f"{said}; if the file writes amounts like 1.234,50, import it with " \
                   "--decimal-comma"
        return said


def _reads_with_comma(text: str) -> bool:
    try:
        money.parse(text, decimal_comma=True)
    except AmountError:
        return False
    return True


class _Positions(dict):
    def __init__(self, index: dict[str, int]):
        super().__init__()
        self.index = index

    def __missing__(self, column: str) -> int:
        self[column] = self.index.get(column.lower(), -1)
        return self[column]


def text_before(raw: bytes, end: int) -> str:
    """The decodable text of ``raw`` before byte ``end`` (where a bad byte sits)."""
    return raw[:end].decode("utf-8", errors="replace")


def _cell_at(prefix: str, source: CsvFile) -> int:
    """The position of the cell that ``prefix`` (the start of a line) ends in."""
    if not source.header:
        return 0
    return len(next(csv.reader([prefix], delimiter=source.delimiter), [""])) - 1


def _quote_trouble(line: str, delimiter: str) -> int:
    """The position of the cell where a quote goes wrong in ``line``, the first line of a
    record: a quote that does not close on the line, or text after a closing quote."""
    cell, i, end = 0, 0, len(line.rstrip("\r\n"))
    while i < end:
        if line[i] == '"':  # a quoted value: find its closing quote ("" is a quote inside)
            i += 1
            while True:
                j = line.find('"', i, end)
                if j < 0:
                    return cell
                if line[j + 1:j + 2] == '"':
                    i = j + 2
                    continue
                i = j + 1
                break
            if i < end and line[i] != delimiter:
                return cell
        following = line.find(delimiter, i, end)
        if following < 0:
            return cell
        i, cell = following + 1, cell + 1
    return cell


_DIGIT_OR_PLUS = frozenset("0123456789+")
_SPACED_OFFSET = re.compile(r" ([+-]\d\d:?\d\d)$")
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")


@lru_cache(maxsize=1024)
def quantity(text: str) -> int:
    if not text.isdigit() or not text.isascii() or int(text) == 0:
        raise BadCell(f'"{text}" is not a quantity; write a whole number like 2')
    if len(text) > 6 and int(text) > MAX_QUANTITY:
        raise BadCell(f'"{text}" is more than {MAX_QUANTITY:,}, the largest quantity the '
                      "engine stores; check the column holds quantities")
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
        if not MIN_YEAR <= value.year <= MAX_YEAR:
            raise BadCell(f'"{text}" is not a date between {MIN_YEAR} and {MAX_YEAR}; check the '
                          "year")
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
    except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a name too long for a path
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
