"""The plain-text part: prose a person reads in a plain mail client, never Markdown."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from engine.mail.plaintext import html_to_text
from engine.mail.render import CONTEXT_KEYS, Renderer, sample_contexts

TEMPLATES = Path(__file__).resolve().parents[2] / "templates"
MARKDOWN = re.compile(r"^\s*#|~~|\*\*|\]\(|^\s*\|.*\|\s*$|^[-=]{3,}$", re.M)


def test_headings_strikethrough_and_emphasis_print_as_plain_words():
    text = html_to_text("<h1>We miss you</h1><p>Was <s>€39.00</s>, now <b>€29.00</b>.</p>")
    assert text == "We miss you\n\nWas €39.00, now €29.00.\n"


def test_a_button_reads_text_colon_url_and_a_link_in_a_sentence_gives_its_url_after_it():
    text = html_to_text('<p><a class="button" href="https://shop.example/p?a=1&amp;b=2">'
                        'See it</a></p><p>Read <a href="https://shop.example/faq">our FAQ</a> '
                        'first.</p>')
    assert text == ("See it: https://shop.example/p?a=1&b=2\n\n"
                    "Read our FAQ (https://shop.example/faq) first.\n")


def test_layout_tables_flatten_and_images_and_hidden_parts_are_left_out():
    text = html_to_text(
        '<head><title>T</title><style>p { color: red }</style></head>'
        '<div class="preheader">Only for the inbox</div>'
        '<table><tr><td><a href="https://x.example/a"><img src="a.png" alt="A" width="260"></a>'
        '<p>Soap</p><p>€6.90</p></td><td><p>Towel</p></td></tr></table>'
        '<ul><li>one</li><li>two</li></ul>')
    assert text == "Soap\n\n€6.90\n\nTowel\n\n- one\n- two\n"


@pytest.mark.parametrize("kind", sorted(CONTEXT_KEYS))
def test_every_shipped_template_has_a_text_part_without_markdown(settings, kind):
    renderer = Renderer(TEMPLATES, settings.store.model_dump())
    for context in sample_contexts(kind):
        text = renderer.render(f"{kind}.html", "Hello", context).text
        assert not MARKDOWN.search(text), text
        assert "Unsubscribe" in text and context["unsubscribe_url"] in text
