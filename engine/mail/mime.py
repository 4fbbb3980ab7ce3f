"""A rendered email → the bytes of one multipart/alternative message, ready for SMTP.

Owns: the message format: headers (From, To, Reply-To, Subject, Date, Message-ID, MIME-Version,
then the caller's List-Unsubscribe, List-Unsubscribe-Post, List-Id, X-Campaign-Id...), a
text/plain part then a text/html part, both UTF-8 (the HTML inside a multipart/related part
with its inline pictures when it has any, each named by its Content-ID), CRLF line endings
throughout (what SMTP wants; aiosmtpd refuses bare LF lines as "too long"), no line over 998 bytes.
Must not: render, send, read the clock (``date`` is a parameter) or put addresses in errors.

Data in headers: the subject carries customer data, so it is made safe here whatever the caller
did (controlchars.one_line: line breaks become spaces, NUL and other controls go); a control
character in any other header is a bug and raises ValueError; a recipient address that cannot be
written in a header raises InputError (``ascii_address``, which compose.py checks first).
Bodies lose their control characters other than tab and line breaks (RFC 2045 forbids NUL).

The bytes are assembled directly: ``email.message.EmailMessage`` + ``as_bytes()`` costs ~15 times
more (measured ~260 against ~3,800 messages/s), and folding one header with the email policy
(``policy.header_factory(...).fold()``) ~240 µs, more than the rest of the message (~200 µs).
Addresses and dates go through ``email.utils``; header words that are not ASCII or that no line
could hold (a 2,000-character name) become RFC 2047 encoded words made by the stdlib's
``email.charset`` (each at most 75 characters, split between characters, on lines of at most
76); an ASCII word such as a URL is never split. Bodies are sent as they are when they are ASCII
with short lines (HTML gets there with character references), else through ``binascii``
(quoted-printable, or base64 when shorter, as for mostly-Japanese text). Tests read the result
back with the stdlib parser. The MIME boundary is derived from the Message-ID, so the same
inputs give the same bytes; it starts with "=_", which quoted-printable and base64 cannot
produce, and a plain body that contains it is quoted-printable-encoded.
"""

from __future__ import annotations

import binascii
import hashlib
import itertools
import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from email.charset import Charset
from email.utils import format_datetime, formataddr
from typing import Protocol

from engine.controlchars import has_controls, one_line
from engine.errors import InputError
from engine.mail.pictures import Picture

MAX_LINE = 998  # RFC 5322: bytes a line, CRLF excluded
_HEADER_NAME = re.compile(r"^[!-9;-~]+$")  # printable ASCII except ":"
_RAW_TEXT_ELEMENT = re.compile(r"<(?:style|script)\b.*?</(?:style|script)", re.S | re.I)
# Would end the address, start another header or break the SMTP command.
_ADDRESS_BREAKER = re.compile(r"[\s<>,\x00-\x1f\x7f]")
_UTF8 = Charset("utf-8")  # encoded words: "B" or "Q", whichever is shorter
ENCODED_WORD = 75  # RFC 2047: characters an encoded word may have ...
RFC2047_LINE = 76  # ... and a line that holds one
# Bytes a body may not carry (RFC 2045: no NUL; no other control but tab, CR and LF). None of
# them occurs inside a UTF-8 sequence, so deleting them from the bytes is safe.
_BODY_CONTROLS = bytes([*range(0x00, 0x09), 0x0B, 0x0C, *range(0x0E, 0x20), 0x7F])
_RESERVED = frozenset({"from", "to", "cc", "bcc", "reply-to", "subject", "date", "message-id",
                       "mime-version", "content-type", "content-transfer-encoding"})


class Rendered(Protocol):
    """What render.RenderedEmail provides."""
    subject: str
    html: str
    text: str


def build_message(rendered: Rendered, *, from_addr: str, from_name: str, to_addr: str,
                  reply_to: str | None, message_id: str, date: datetime,
                  headers: Mapping[str, str] | None = None,
                  pictures: Sequence[Picture] = ()) -> bytes:
    """The message as bytes with CRLF line endings.

    ``headers`` adds List-Unsubscribe, List-Unsubscribe-Post, List-Id, X-Campaign-Id and the
    like (not the headers this function writes itself). ``pictures`` are attached inline
    beside the HTML, which shows them as ``src="cid:..."``. A recipient address that cannot be
    written in a header raises InputError; a bad header name or value is a ValueError (a bug).
    The subject is made one line, without control characters, whatever it holds.
    """
    if date.tzinfo is None:
        raise ValueError("date must be timezone-aware")
    message_id = message_id if message_id.startswith("<") else f"<{message_id}>"
    if not re.fullmatch(r"<[^<>\s]+@[^<>\s]+>", message_id):
        raise ValueError(f"malformed Message-ID {message_id!r}")
    lines = [
        _header("From", formataddr((from_name, ascii_address(from_addr, "sender")), "utf-8")),
        _header("To", ascii_address(to_addr, "recipient")),
    ]
    if reply_to:
        lines.append(_header("Reply-To", ascii_address(reply_to, "reply-to")))
    lines += [
        _header("Subject", one_line(rendered.subject)),
        _header("Date", format_datetime(date)),
        _header("Message-ID", message_id),
        _header("MIME-Version", "1.0"),
    ]
    for name, value in (headers or {}).items():
        if not _HEADER_NAME.match(name) or name.lower() in _RESERVED:
            raise ValueError(f"header name {name!r} is not allowed here")
        lines.append(_header(name, value))
    boundary = "=_" + hashlib.blake2b(message_id.encode(), digest_size=12).hexdigest()
    lines.append(_header("Content-Type", f'multipart/alternative; boundary="{boundary}"'))
    head = "\r\n".join(lines).encode("ascii")
    html_part = _part(boundary, "text/html", rendered.html)
    if pictures:
        inner = boundary + "r"
        html_part = b"".join([
            b"--", boundary.encode(), b"\r\n",
            f'Content-Type: multipart/related; boundary="{inner}"; type="text/html"\r\n\r\n'
            .encode("ascii"),
            _part(inner, "text/html", rendered.html),
            *(_inline(inner, picture) for picture in pictures),
            b"--", inner.encode(), b"--\r\n\r\n",
        ])
    return b"".join([
        head, b"\r\n\r\n",
        b"This is a multipart message in MIME format.\r\n",
        _part(boundary, "text/plain", rendered.text),
        html_part,
        b"--", boundary.encode(), b"--\r\n",
    ])


def _inline(boundary: str, picture: Picture) -> bytes:
    name = picture.cid.split("@", 1)[0] + "." + picture.content_type.rsplit("/", 1)[-1]
    return b"".join([
        b"--", boundary.encode(), b"\r\n",
        f"Content-Type: {picture.content_type}\r\nContent-Transfer-Encoding: base64\r\n"
        f"Content-ID: <{picture.cid}>\r\n"
        f'Content-Disposition: inline; filename="{name}"\r\n\r\n'.encode("ascii"),
        _base64(picture.data), b"\r\n",
    ])


def _part(boundary: str, content_type: str, body: str) -> bytes:
    encoding, encoded = _encode_body(body, content_type == "text/html", boundary.encode())
    return b"".join([
        b"--", boundary.encode(), b"\r\n",
        f'Content-Type: {content_type}; charset="utf-8"\r\n'
        f"Content-Transfer-Encoding: {encoding}\r\n\r\n".encode("ascii"),
        encoded if encoded.endswith(b"\r\n") else encoded + b"\r\n",
        b"\r\n",  # belongs to the next boundary line (RFC 2046), not to the body
    ])


def _encode_body(body: str, html: bool, boundary: bytes) -> tuple[str, bytes]:
    """(Content-Transfer-Encoding, bytes): the cheapest form that is correct.

    ASCII with short lines needs no encoding ("7bit"). HTML becomes ASCII when its other
    characters are written as character references ("€" → "&#8364;"), which costs ~10 µs where
    binascii's quoted-printable costs ~150 µs for 7 KB; not inside <style> or <script>, where
    references are not decoded. Otherwise quoted-printable keeps Latin text readable, and base64
    wins when most bytes are not ASCII (Japanese).
    """
    if "\r" in body:
        body = body.replace("\r\n", "\n").replace("\r", "\n")
    text = body.replace("\n", "\r\n")
    if not text.endswith("\r\n"):
        text += "\r\n"
    data = text.encode("utf-8")
    cleaned = data.translate(None, _BODY_CONTROLS)  # ~5 µs for 8 KB; a regex takes ~20
    if len(cleaned) != len(data):
        data, text = cleaned, cleaned.decode("utf-8")
    if html and not data.isascii() and all(
            block.isascii() for block in _RAW_TEXT_ELEMENT.findall(text)):
        referenced = text.encode("ascii", "xmlcharrefreplace")
        if _plain_ok(referenced, boundary):
            return "7bit", referenced
    if data.isascii() and _plain_ok(data, boundary):
        return "7bit", data
    encoded = binascii.b2a_qp(data, istext=True)
    if len(encoded) > len(data) * 1.4:
        return "base64", _base64(data)
    return "quoted-printable", encoded


def _plain_ok(data: bytes, boundary: bytes) -> bool:
    # Splitting is linear; a regex for "a run of 999 non-newlines" backtracks at every byte.
    # ``data`` has CRLF line endings only (see _encode_body).
    return max(map(len, data.split(b"\r\n"))) <= MAX_LINE and boundary not in data


def _base64(data: bytes) -> bytes:
    """base64 in 76-character lines, CRLF-terminated."""
    return b"".join(binascii.b2a_base64(data[i:i + 57], newline=False) + b"\r\n"
                    for i in range(0, len(data), 57))


def _header(name: str, value: str) -> str:
    """``Name: value`` folded at spaces within 76 characters; words that are not ASCII (or that
    no line could hold) become RFC 2047 encoded words, so "Maison Verte é <list.example>" keeps
    its ASCII list id."""
    if has_controls(value):
        raise ValueError(f"the {name} header contains a line break or another control character")
    longest = MAX_LINE - len(name) - 2  # a word this long still fits on the header's first line
    words = value.split(" ")
    if not value.isascii() or (len(value) > longest and max(map(len, words)) > longest):
        words = _encoded_words(words, longest, first=RFC2047_LINE - len(name) - 2)
    lines, line = [], f"{name}:"
    for word in words:
        if len(line) + 1 + len(word) > RFC2047_LINE and line.strip() and not line.endswith(":"):
            lines.append(line)
            line = ""
        line += " " + word
    lines.append(line)
    if any(len(part) > MAX_LINE for part in lines):
        raise ValueError(f"the {name} header has a word over {MAX_LINE} characters")
    return "\r\n".join(lines)


def _encoded_words(words: list[str], longest: int, first: int) -> list[str]:
    """Each run of words that are not ASCII or are longer than ``longest`` becomes encoded words
    (the spaces inside a run are encoded with it). The first word of the header is at most
    ``first`` characters: it shares its line with the name."""
    out: list[str] = []
    run: list[str] = []
    for word in [*words, None]:
        if word is not None and (not word.isascii() or len(word) > longest):
            run.append(word)
            continue
        if run:
            text, run = " ".join(run), []
            limit = ENCODED_WORD if out else first
            encoded = _UTF8.header_encode(text)  # one word (~4 µs) is the usual case ...
            if len(encoded) <= limit:
                out.append(encoded)
            else:  # ... else words of at most ``limit`` characters (~13 µs)
                sizes = itertools.chain([limit], itertools.repeat(ENCODED_WORD))
                out += _UTF8.header_encode_lines(text, sizes)
        if word is not None:
            out.append(word)
    return out


def ascii_address(address: str, role: str = "recipient") -> str:
    """The address as it may appear in a header: an internationalised domain in its ASCII form.
    InputError (naming the role, never the address) when it cannot be written in one."""
    address = address.strip()
    local, _, domain = address.rpartition("@")
    if not local or not domain or _ADDRESS_BREAKER.search(address):
        raise InputError(f"the {role} address is not a valid email address; fix it in the data")
    if not local.isascii():
        raise InputError(f"the {role} address has non-ASCII characters before the @, which "
                         "needs SMTPUTF8 and is not supported; use an ASCII address")
    if not domain.isascii():
        try:
            domain = domain.encode("idna").decode("ascii")
        except UnicodeError:
            raise InputError(f"the {role} address has a domain that cannot be encoded; "
                             "fix it in the data") from None
    return f"{local}@{domain}"
