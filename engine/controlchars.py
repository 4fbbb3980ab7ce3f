"""Control characters in shop data: which characters they are, and a value without them.

Owns the one rule for a value that belongs on one line (a name, a country, a product name, a
subject): ``one_line`` turns line breaks and tabs into one space and drops the characters that
have no meaning on a line and can do harm in a header or a terminal:
- C0 controls and DEL: NUL, BEL, ESC (terminal escape sequences)...; RFC 5322 forbids them in a
  header, and a CR or LF there starts a new header (header injection);
- C1 controls (U+0080-U+009F), which no text means to contain;
- Unicode's other line breaks (U+0085, U+2028, U+2029), which some parsers split lines at;
- the bidirectional embeddings, overrides and isolates (U+202A-U+202E, U+2066-U+2069) that
  reorder what follows them on screen ("Trojan Source"): the text of an Arabic or Hebrew name is
  kept and shown in its natural order; the marks U+200E/U+200F are kept.
Import normalises names with it (shop/upserts.py), composing cleans what a template shows
(delivery/compose.py), and mail/mime.py writes no header without it.
Must not import anything from ``engine``.
"""

from __future__ import annotations

import re

_BREAKS = "\t\n\v\f\r\x1c\x1d\x1e\x85\u2028\u2029"  # what str.splitlines() splits at, and tab
_BREAK_RUN = re.compile(f" *[{_BREAKS}][ {_BREAKS}]*")
_INVISIBLE = re.compile("[\x00-\x08\x0e-\x1b\x1f\x7f-\x84\x86-\x9f\u202a-\u202e\u2066-\u2069]")
_ANY = re.compile(f"[{_BREAKS}\x00-\x08\x0e-\x1b\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def has_controls(value: str) -> bool:
    """Whether ``one_line`` would change anything but surrounding spaces."""
    # isprintable() is False for every character above (controls, separators, format
    # characters) and costs ~50 ns; only then is the exact search (~1 µs) worth running.
    return not value.isprintable() and _ANY.search(value) is not None


def one_line(value: str) -> str:
    """``value`` on one line, without control characters; unchanged (the same object) when it
    has none. Runs of line breaks and spaces become one space; the ends are stripped."""
    if not has_controls(value):
        return value
    return _INVISIBLE.sub("", _BREAK_RUN.sub(" ", value)).strip()
