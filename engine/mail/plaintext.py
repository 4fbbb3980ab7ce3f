"""An email's HTML → the plain-text part a person reads in a plain mail client.

Owns the conversion: headings and paragraphs as lines of prose with a blank line between them,
list items as "- item", layout tables flattened (each cell's content on its own lines, no grid),
strikethrough and emphasis as their plain words (the template says "was"), images left out (the
product name follows each one), a link that is a paragraph of its own (a button) as
"Text: URL", a link inside a sentence as "text (URL)", and the hidden preheader, <head>, <style>
and <script> dropped. No Markdown: a reader of the text part sees no "#", "**" or "~~".
Must not: render templates, wrap lines (the MIME layer keeps lines short enough; wrapping here
would break URLs) or know campaigns.

Written over the standard library's HTMLParser rather than html2text, whose output is Markdown
by design (headings as "#", <s> as "~~", links as "[text](url)") with no switch to turn it off.
render.py also runs it over a template's flattened source, where Jinja tags are placeholder
words: ``ignorable`` says which of them print nothing (statements), so that a button wrapped in
``{% if %}`` is still recognised as a paragraph of its own.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from html.parser import HTMLParser

_BLOCKS = frozenset({"address", "article", "aside", "blockquote", "center", "dd", "div", "dl",
                     "dt", "figcaption", "figure", "footer", "form", "h1", "h2", "h3", "h4",
                     "h5", "h6", "header", "li", "main", "nav", "ol", "p", "pre", "section",
                     "table", "tbody", "td", "tfoot", "th", "thead", "tr", "ul"})
_SKIPPED = frozenset({"head", "style", "script", "title", "template"})
_VOID = frozenset({"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta",
                   "source", "track", "wbr"})
_SPACES = re.compile(r"[ \t\r\n\f]+")  # not the no-break space: "20,00 €" stays together
_BLANK_LINES = re.compile(r"\n{3,}")
_TRAILING_SPACE = re.compile(r"[ \t]+$", re.M)


def _keep(text: str) -> str:
    return text


class _Converter(HTMLParser):
    def __init__(self, ignorable: Callable[[str], str]):
        super().__init__(convert_charrefs=True)
        self.ignorable = ignorable
        self.lines: list[str] = []
        self.pieces: list[str] = []              # the current block's text
        self.links: list[tuple[int, int, str]] = []  # (first piece, end piece, href)
        self.open_link: tuple[int, str] | None = None
        self.skip: list[str] = []                # the elements whose content is dropped
        self.prefix = ""                         # "- " for a list item

    # -- the block being written --------------------------------------------------------------
    def flush(self, blank: bool = True) -> None:
        if self.open_link is not None:  # a block ends inside a link: the link ends there
            self.links.append((self.open_link[0], len(self.pieces), self.open_link[1]))
            self.open_link = None
        text = self.block_text()
        if text:
            self.lines.append(self.prefix + text)
            self.prefix = ""
        if blank:
            self.lines.append("")
        self.pieces, self.links = [], []

    def block_text(self) -> str:
        if not self.links:
            return _clean("".join(self.pieces))
        if len(self.links) == 1:
            start, end, href = self.links[0]
            label = _clean("".join(self.pieces[start:end]))
            shown = _clean(self.ignorable(label))
            if shown and shown == _clean(self.ignorable("".join(self.pieces))):
                # The link is the whole paragraph (a button): "Text: URL".
                before = "".join(self.pieces[:start])
                after = "".join(self.pieces[end:])
                return _clean(f"{before}{label}: {href}{after}")
        out, at = [], 0
        for start, end, href in self.links:
            label = _clean("".join(self.pieces[start:end]))
            out += self.pieces[at:start]
            if not _clean(self.ignorable(label)):
                out.append(label)  # an image link: the image is left out, and so is its URL
            elif label == href:
                out.append(href)
            else:
                out.append(f"{label} ({href})")
            at = end
        out += self.pieces[at:]
        return _clean("".join(out))

    # -- HTMLParser callbacks -----------------------------------------------------------------
    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self.skip:
            if tag not in _VOID:
                self.skip.append(tag)
            return
        classes = (dict(attrs).get("class") or "").split()
        if tag in _SKIPPED or "preheader" in classes:
            if tag not in _VOID:
                self.skip.append(tag)
            return
        if tag == "br":
            self.flush(blank=False)
        elif tag == "hr":
            self.flush()
            self.lines += ["----", ""]
        elif tag in _BLOCKS:
            self.flush(blank=tag not in ("li", "tr", "td", "th", "tbody", "thead", "tfoot"))
            if tag == "li":
                self.prefix = "- "
        elif tag == "a":
            href = dict(attrs).get("href") or ""
            if href and not href.startswith("#"):
                self.open_link = (len(self.pieces), href)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag not in _VOID:
            self.handle_endtag(tag)

    def handle_endtag(self, tag: str) -> None:
        if self.skip:
            if tag in self.skip:
                while self.skip and self.skip.pop() != tag:
                    pass
            return
        if tag == "a" and self.open_link is not None:
            start, href = self.open_link
            self.links.append((start, len(self.pieces), href))
            self.open_link = None
        elif tag in _BLOCKS:
            self.flush(blank=tag not in ("li", "td", "th", "tbody", "thead", "tfoot"))

    def handle_data(self, data: str) -> None:
        if not self.skip:
            self.pieces.append(data)


def _clean(text: str) -> str:
    return _SPACES.sub(" ", text).strip()


def html_to_text(markup: str, ignorable: Callable[[str], str] = _keep) -> str:
    """The plain-text part for ``markup``; ``ignorable`` removes, from a copy of a block's text,
    what prints nothing (the placeholders of Jinja statements in a template's source)."""
    converter = _Converter(ignorable)
    converter.feed(markup)
    converter.close()
    converter.flush()
    return tidy("\n".join(converter.lines))


def tidy(text: str) -> str:
    """Trailing spaces dropped, runs of blank lines made one, one final newline."""
    text = _TRAILING_SPACE.sub("", text)
    return _BLANK_LINES.sub("\n\n", text).strip() + "\n"
