"""The campaign tags on an email's links (UTM), added after rendering.

Owns: adding ``utm_source``, ``utm_medium``, ``utm_campaign`` (the campaign's id) and
``utm_content`` to every http(s) link of a rendered email, in the HTML and in the text part
alike, so the shop's analytics can tell which email and which link brought a visit. The
content tag names the link by what it says ("see-it", "visit-the-shop"; an image link by its
alt text), so each link of an email has its own. Tags already in a link (the marketer's own)
are kept; the unsubscribe link and mailto: links are never tagged. Must not: render, know the
database or campaigns beyond their id.
"""

from __future__ import annotations

import html
import re
from collections.abc import Collection, Mapping
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

_ANCHOR = re.compile(r'(<a\b[^>]*?\bhref=")([^"]*)("[^>]*>)(.*?)</a>', re.S | re.I)
_ALT = re.compile(r'\balt="([^"]*)"', re.I)
_TAG = re.compile(r"<[^>]+>")
_NOT_SLUG = re.compile(r"[^a-z0-9]+")
_URL = re.compile(r"https?://[^\s<>()\"]+")
CONTENT_LENGTH = 40  # characters of utm_content at most


def content_tag(inner_html: str) -> str:
    """A link's utm_content: its words as a slug, or its image's alt text, or "link"."""
    words = html.unescape(_TAG.sub(" ", inner_html))
    if not words.strip():
        alt = _ALT.search(inner_html)
        words = html.unescape(alt.group(1)) if alt else ""
    slug = _NOT_SLUG.sub("-", words.lower()).strip("-")[:CONTENT_LENGTH].strip("-")
    return slug or "link"


def tagged_url(url: str, tags: Mapping[str, str]) -> str:
    """``url`` with ``tags`` added to its query; a tag it already has is kept as it is."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    present = {name for name, _ in query}
    query += [(name, value) for name, value in tags.items() if name not in present]
    return urlunsplit(parts._replace(query=urlencode(query)))


def tag(markup: str, text: str, campaign_id: str, source: str, medium: str,
        untouched: Collection[str] = ()) -> tuple[str, str]:
    """(HTML, text) with every http(s) link tagged, except those in ``untouched``.

    A URL of the text part gets the tags of the first HTML link to the same URL.
    """
    base = {"utm_source": source, "utm_medium": medium, "utm_campaign": campaign_id}
    first: dict[str, str] = {}

    def retag(match: re.Match[str]) -> str:
        url = html.unescape(match.group(2))
        if not url.lower().startswith(("http://", "https://")) or url in untouched:
            return match.group(0)
        new = tagged_url(url, {**base, "utm_content": content_tag(match.group(4))})
        first.setdefault(url, new)
        return (f"{match.group(1)}{html.escape(new)}{match.group(3)}{match.group(4)}</a>")

    markup = _ANCHOR.sub(retag, markup)

    def retag_text(match: re.Match[str]) -> str:
        url = match.group(0)
        trail = ""
        while url and url[-1] in ".,;:!?":  # sentence punctuation after a URL is not part of it
            url, trail = url[:-1], url[-1] + trail
        return first.get(url, url) + trail

    return markup, _URL.sub(retag_text, text)
