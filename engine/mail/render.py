"""One campaign template + one customer's context → a finished email: subject, HTML, text.

Owns: rendering the subject (CR/LF refused), the HTML with its CSS inlined and the plain-text
part, fast enough for a whole audience. Must not: open a session, read the clock, send, log
customer data. The sandbox and filters are in templating.py, what each kind may use and lint()
in contract.py, the message bytes in mime.py.

    renderer = Renderer("templates", store={"name": ..., "url": ..., "postal_address": ...,
                                           "currency": "EUR", "locale": "en_IE"})
    email = renderer.render("winback.html", "{{ customer.first_name }}, 15 % off", context)
    email.subject, email.html, email.text

The context is plain data (dicts, lists, str, int, Money, None), one key a concept; contract.py's
docstring lists every key. ``store`` defaults to the renderer's; ``subject`` (the rendered
subject, for ``<title>``) is added by ``render``.

Fast path, because inlining CSS and converting HTML to text cost 10-20 times the Jinja render
(bench/render.py): for each template, once per Renderer,
1. flatten ``{% extends %}``: every Jinja tag except extends/block/super() becomes a placeholder
   word, Jinja itself resolves the inheritance, the placeholders come back;
2. inline the CSS into that flat source with css_inline, placeholders protected (a statement
   between table rows becomes an HTML comment so the HTML parser leaves it in place);
3. derive a text template from the same flat source with plaintext.py, placeholders kept;
4. verify: render the first real context and every sample of its kind both ways (render, then
   inline and convert) and compare after normalising entities and whitespace. A template the
   fast path cannot reproduce (a class set by a variable, an include with styled content) falls
   back to the slow path, with a warning in the log.
Per email it is then two Jinja renders and no HTML parsing.
"""

from __future__ import annotations

import html
import logging
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import css_inline
import jinja2
from jinja2.sandbox import SandboxedEnvironment

from engine.errors import TemplateError
from engine.mail import links
from engine.mail.contract import (
    CONTEXT_KEYS,
    OFFER_KEYS,
    WHY_SENTENCE,
    empty_offer,
    lint,
    lint_subject,
    sample_context,
    sample_contexts,
)
from engine.mail.plaintext import html_to_text, tidy
from engine.mail.templating import RENDER_ERRORS, Sandbox, located
from engine.money import DEFAULT_CURRENCY, DEFAULT_LOCALE

__all__ = ["CONTEXT_KEYS", "OFFER_KEYS", "WHY_SENTENCE", "RenderedEmail", "Renderer",
           "RendererCache", "empty_offer", "html_to_text", "lint", "lint_subject",
           "sample_context", "sample_contexts"]

log = logging.getLogger(__name__)

_PLACEHOLDER = "rtjx"  # followed by a number and "x": one word, even as an attribute name
_PLACEHOLDER_RE = re.compile(_PLACEHOLDER + r"(\d+)x")
# A placeholder after css_inline: maybe in a comment (escaped inside <title>), maybe an
# attribute name that gained ="".
_RESTORE_RE = re.compile(r'(?:<!--|&lt;!--)?' + _PLACEHOLDER + r'(\d+)x(?:-->|--&gt;)?(?:="")?')
_JINJA_TAG = re.compile(r"\{%-?\s*raw\s*-?%\}.*?\{%-?\s*endraw\s*-?%\}"
                        r"|\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}", re.S)
_INHERITANCE_TAG = re.compile(r"\{%-?\s*(?:extends|block|endblock)\b|\{\{-?\s*super\(\)\s*-?\}\}")
# A table whose rows start after a loop: the HTML parser would put its implied <tbody> after the
# loop's comment, that is inside the loop. Writing the <tbody> first keeps the loop inside it.
_BARE_TABLE = re.compile(r"(<table\b[^>]*>\s*)((?:\s|<!--" + _PLACEHOLDER + r"\d+x-->)*)(?=<tr\b)")
_MARKDOWN_ESCAPE = re.compile(r"\\([\\`*_{}\[\]()#+\-.!])")
_WHITESPACE = re.compile(r"\s+")
# Stands for the preview text until the email's first paragraph is known (one word, no markup).
_FIRST_PARAGRAPH_MARK = "rtjxpreheaderx"
_PARAGRAPH = re.compile(r"<p\b[^>]*>(.*?)</p>", re.S | re.I)
_TAG = re.compile(r"<[^>]+>")
PREVIEW_LENGTH = 140  # characters an inbox shows at most, on a wide screen
_TABLE_TAG_SPACE = re.compile(r"\s*(</?(?:table|thead|tbody|tfoot|tr|td|th)\b[^>]*>)\s*")


@dataclass(frozen=True, slots=True)
class RenderedEmail:
    subject: str
    html: str
    text: str


@dataclass(slots=True)
class _Prepared:
    """What one template needs per email: the templates to render and what is left to do."""
    html: jinja2.Template
    text: jinja2.Template | None  # None: convert each rendered HTML with plaintext.py
    inline_each: bool  # True: css_inline each rendered HTML (slow path)


class Renderer:
    """Renders emails from the templates in ``templates_dir``; prepares each template once."""

    def __init__(self, templates_dir: str | Path, store: dict[str, Any], *, fast: bool = True,
                 utm: dict[str, str] | None = None):
        """``utm`` ({source, medium}) tags every link of every email; None leaves them as is."""
        self.templates_dir = Path(templates_dir)
        self.store = dict(store)
        self.fast = fast
        self.utm = dict(utm) if utm else None
        self.env = Sandbox(self.templates_dir,
                           currency=self.store.get("currency", DEFAULT_CURRENCY),
                           locale=self.store.get("locale", DEFAULT_LOCALE))
        self._inliner = css_inline.CSSInliner(keep_at_rules=True, load_remote_stylesheets=False)
        self._prepared: dict[str, _Prepared] = {}
        self._subjects: dict[str, jinja2.Template] = {}

    def render(self, template_name: str, subject: str, context: dict[str, Any],
               preheader: str | None = None) -> RenderedEmail:
        """Subject, inlined HTML and text for one recipient; TemplateError if the template fails.

        ``preheader`` (Jinja, like the subject) is the inbox's preview line; without one, the
        context's ``preview_text``, else the email's own first paragraph.
        """
        context = {"store": self.store, **context}
        context["subject"] = self.render_subject(subject, context)
        shown = self.render_line(preheader, context, "preheader") if preheader else \
            context.get("preview_text")
        context["preview_text"] = shown or _FIRST_PARAGRAPH_MARK
        prepared = self._prepared.get(template_name) or self._prepare(template_name, context)
        try:
            markup = self.env.render(prepared.html, context)
            if prepared.inline_each:
                markup = self._inliner.inline(markup)
            if prepared.text is None:
                text = html_to_text(markup)
            else:
                text = tidy(self.env.render(prepared.text, context))
        except RENDER_ERRORS as exc:
            # The flattened copy has no useful line numbers: the full render locates the error.
            self.render_slow(template_name, context)
            raise located(exc, self.templates_dir / template_name) from None
        if not shown:
            markup = markup.replace(_FIRST_PARAGRAPH_MARK, html.escape(first_paragraph(markup)), 1)
        if self.utm is not None:
            campaign_id = (context.get("campaign") or {}).get("id") or "email"
            markup, text = links.tag(markup, text, campaign_id, self.utm["source"],
                                     self.utm["medium"], (context.get("unsubscribe_url"),))
        return RenderedEmail(context["subject"], markup, text)

    def uses_fast_path(self, template_name: str) -> tuple[bool, bool]:
        """(HTML inlined once, text derived once) for a template already rendered."""
        prepared = self._prepared[template_name]
        return not prepared.inline_each, prepared.text is not None

    def render_line(self, source: str, context: dict[str, Any], what: str) -> str:
        """A one-line Jinja string (a subject, a preheader) rendered; whitespace runs joined."""
        template = self._subjects.get(source)
        try:
            if template is None:
                template = self._subjects[source] = self.env.from_string(source)
            line = self.env.render(template, context).strip()
        except RENDER_ERRORS as exc:
            raise located(exc, what) from None
        return line if what == "subject" else " ".join(line.split())

    def render_subject(self, subject: str, context: dict[str, Any]) -> str:
        """The subject line for this context; a line break in it (header injection) is refused."""
        line = self.render_line(subject, context, "subject")
        if "\r" in line or "\n" in line:
            raise TemplateError("the rendered subject contains a line break; remove line breaks "
                                "from the subject and from the values it prints", "subject")
        if not line:
            raise TemplateError("the rendered subject is empty; write a subject", "subject")
        return line

    def render_slow(self, template_name: str, context: dict[str, Any]) -> tuple[str, str]:
        """(HTML, text) by render → inline → plain text: the reference the fast path must equal."""
        context = {"store": self.store, "subject": "", **context}
        template = self._template(template_name)
        try:
            markup = self._inliner.inline(self.env.render(template, context))
        except RENDER_ERRORS as exc:
            raise located(exc, template.filename) from None
        return markup, html_to_text(markup)

    def _template(self, template_name: str) -> jinja2.Template:
        try:
            return self.env.get_template(template_name)
        except jinja2.TemplateNotFound:
            raise TemplateError(f'no template named "{template_name}" in {self.templates_dir}; '
                                "create it or fix the campaign's template name",
                                self.templates_dir / template_name) from None
        except jinja2.TemplateSyntaxError as exc:
            raise located(exc, exc.filename) from None

    def _prepare(self, template_name: str, context: dict[str, Any]) -> _Prepared:
        slow = _Prepared(self._template(template_name), None, inline_each=True)
        prepared = slow
        if self.fast:
            try:
                prepared = self._fast(template_name)
            except (jinja2.TemplateError, ValueError) as exc:
                log.warning("%s: no fast path (%s); rendering each email in full",
                            template_name, exc)
            else:
                prepared = self._verified(template_name, prepared, slow, context)
                if prepared is None:  # nothing rendered to compare with: decide next time
                    return slow
        self._prepared[template_name] = prepared
        return prepared

    def _fast(self, template_name: str) -> _Prepared:
        tags: list[str] = []
        flat = self._flatten(template_name, tags)

        def mark(match: re.Match[str]) -> str:
            pos = match.start()
            in_markup = flat.rfind("<", 0, pos) > flat.rfind(">", 0, pos)
            if not in_markup and tags[int(match.group(1))].startswith("{%"):
                return f"<!--{match.group(0)}-->"
            return match.group(0)

        marked = _BARE_TABLE.sub(r"\1<tbody>\2", _PLACEHOLDER_RE.sub(mark, flat))
        inlined = self._inliner.inline(marked)
        html_source = _RESTORE_RE.sub(lambda m: tags[int(m.group(1))], inlined)
        html_template = self.env.from_string(
            "{% autoescape true %}" + html_source + "{% endautoescape %}")
        text_template = self.env.from_string(_text_source(flat, tags))
        return _Prepared(html_template, text_template, inline_each=False)

    def _flatten(self, template_name: str, tags: list[str]) -> str:
        """The template with its parents merged in and every other Jinja tag a placeholder."""

        def protect(name: str) -> str:
            source, _, _ = self.env.loader.get_source(self.env, name)  # type: ignore[union-attr]
            if _PLACEHOLDER in source:
                raise ValueError(f'the template contains "{_PLACEHOLDER}"')

            def swap(match: re.Match[str]) -> str:
                tag = match.group(0)
                if tag.startswith("{#"):
                    return ""
                if _INHERITANCE_TAG.match(tag):
                    return tag
                tags.append(tag)
                return f"{_PLACEHOLDER}{len(tags) - 1}x"

            return _JINJA_TAG.sub(swap, source)

        merger = SandboxedEnvironment(loader=jinja2.FunctionLoader(protect), autoescape=False)
        return merger.get_template(template_name).render()

    def _verified(self, template_name: str, fast: _Prepared, slow: _Prepared,
                  context: dict[str, Any]) -> _Prepared | None:
        """``fast`` where it equals ``slow`` for this context and the samples of its kind."""
        kind = context.get("campaign", {}).get("kind")
        checks = [context] + [{**sample, "store": self.store, "subject": "Sample"}
                              for sample in (sample_contexts(kind) if kind in CONTEXT_KEYS else [])]
        html_ok = text_ok = True
        compared = 0
        for check in checks:
            try:
                want_html, want_text = self.render_slow(template_name, check)
            except TemplateError:
                continue  # the slow path fails too: render() reports it with its line
            try:
                got_html = self.env.render(fast.html, check)
                got_text = tidy(self.env.render(fast.text, check))  # type: ignore[arg-type]
            except RENDER_ERRORS:
                html_ok = text_ok = False
                break
            compared += 1
            html_ok = html_ok and _same_html(got_html, want_html)
            text_ok = text_ok and _same_text(got_text, want_text)
        if html_ok and text_ok and not compared:
            return None
        if not (html_ok and text_ok):
            log.warning("%s: the fast path differs from a full render (%s); using the full "
                        "render", template_name, "HTML" if not html_ok else "text")
        return _Prepared(fast.html if html_ok else slow.html,
                         fast.text if html_ok and text_ok else None,
                         inline_each=not html_ok)


def first_paragraph(markup: str) -> str:
    """The text of the first non-empty ``<p>`` of an email, cut at a word near PREVIEW_LENGTH."""
    for match in _PARAGRAPH.finditer(markup):
        text = " ".join(html.unescape(_TAG.sub(" ", match.group(1))).split())
        text = re.sub(r" ([,.;:!?])", r"\1", text)  # a tag closed before punctuation
        if text:
            if len(text) <= PREVIEW_LENGTH:
                return text
            return text[:PREVIEW_LENGTH].rsplit(" ", 1)[0].rstrip(",;:") + "…"
    return ""


def _text_source(flat: str, tags: list[str]) -> str:
    """A Jinja template for the text part: plaintext.py over the flat source, tags put back."""

    def statements_removed(text: str) -> str:  # what a block prints, without its statements
        return _PLACEHOLDER_RE.sub(
            lambda m: "" if tags[int(m.group(1))].startswith("{%") else m.group(0), text)

    text = html_to_text(flat, statements_removed)
    pieces, last = [], 0
    for match in _PLACEHOLDER_RE.finditer(text):
        pieces += [_literal(text[last:match.start()]), tags[int(match.group(1))]]
        last = match.end()
    pieces.append(_literal(text[last:]))
    return "".join(pieces)


def _literal(text: str) -> str:
    """Text that Jinja must print as is, even if it looks like a tag."""
    if any(mark in text for mark in ("{{", "{%", "{#")):
        return "{% raw %}" + text + "{% endraw %}"
    return text


def _same_html(a: str, b: str) -> bool:
    return normalise_html(a) == normalise_html(b)


def _same_text(a: str, b: str) -> bool:
    return normalise_text(a) == normalise_text(b)


def normalise_html(markup: str) -> str:
    """Entities decoded, whitespace collapsed, and dropped around table tags (where browsers
    ignore it): equal for HTML that displays the same."""
    return _TABLE_TAG_SPACE.sub(r"\1", _WHITESPACE.sub(" ", html.unescape(markup))).strip()


def normalise_text(text: str) -> str:
    """Markdown escapes removed, whitespace runs collapsed."""
    return _WHITESPACE.sub(" ", _MARKDOWN_ESCAPE.sub(r"\1", text)).strip()


class RendererCache:
    """Keeps one Renderer while the templates on disk and the store are unchanged.

    Preparing a template (flatten, inline, derive the text, verify) takes tens of milliseconds;
    a scheduler running every few minutes for a year should not pay it on every run, so it holds
    one cache for its lifetime and hands it to each run. Editing, adding or removing a template
    file makes a fresh Renderer. Whoever needs a renderer once (``retain run``, a preview)
    makes a cache of its own, or none; nothing is shared behind the caller's back.
    """

    def __init__(self) -> None:
        self._key: tuple | None = None
        self._renderer: Renderer | None = None
        self._lock = threading.Lock()

    def get(self, templates_dir: str | Path, store: dict[str, Any],
            utm: dict[str, str] | None = None) -> Renderer:
        folder = Path(templates_dir)
        files = tuple(sorted((p.name, p.stat().st_mtime_ns, p.stat().st_size)
                             for p in folder.glob("**/*") if p.is_file()))
        key = (str(folder.resolve()), tuple(sorted(store.items())),
               tuple(sorted((utm or {}).items())), files)
        with self._lock:
            if self._renderer is None or key != self._key:
                # One set of templates at a time: an old version is dropped.
                self._key, self._renderer = key, Renderer(folder, store, utm=utm)
            return self._renderer
