"""Emails per second rendered on one core, for the new_product digest with 4 products.

Prints, for varied customers (names, prices, URLs differ per email):
  - Jinja alone: the sandboxed render of the template, nothing else;
  - fast path: Renderer.render (subject + HTML inlined once per template + text template);
  - full, fast path: the same + engine.mime.build_message (bytes ready for SMTP);
  - full, css_inline per email: Renderer(fast=False): render → css_inline → html2text → MIME;
  - naive: render → premailer → html2text → EmailMessage.as_bytes (on fewer emails; premailer
    comes with the dev extra, the engine does not use it);
  - the one-off cost of preparing a template (flatten, inline, derive text, verify);
  - peak memory (max RSS of the process, and tracemalloc's peak over a full run).
Rates use CPU time of this process (time.process_time), the median of --repeat runs, so other
work on the machine disturbs them less than wall-clock time would.

    .venv/bin/python bench/render.py [--emails 3000] [--naive-emails 150] [--repeat 3]
"""

from __future__ import annotations

import argparse
import copy
import email.policy
import random
import resource
import statistics
import time
import tracemalloc
from collections.abc import Callable
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path

import premailer

from engine import config
from engine.mail.mime import build_message
from engine.mail.render import Renderer, html_to_text, sample_context
from engine.money import Money

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = "new_product.html"
SUBJECT = "{{ customer.first_name or 'Hello' }}, {{ products|length }} new things for you"
NOW = datetime(2026, 6, 15, 12, 0, tzinfo=UTC)
NAMES = ["Élodie", "Zoë", "O'Brien", "", "李", "Ann & Bob", "Émile", "Jörg", "Ana-María", "Sam"]


def contexts(count: int) -> list[dict]:
    rng = random.Random(1)
    base = sample_context("new_product")
    out = []
    for i in range(count):
        context = copy.deepcopy(base)
        context["customer"].update(id=i, first_name=rng.choice(NAMES),
                                   email=f"customer{i}@example.com")
        for product in context["products"]:
            product["price"] = Money(rng.randint(500, 20000))
            product["compare_at_price"] = rng.choice([None, product["price"] + Money(700)])
        context["unsubscribe_url"] = f"https://maison-verte.example/u?t={rng.getrandbits(64):x}"
        out.append(context)
    return out


def message(renderer: Renderer, context: dict, index: int) -> bytes:
    rendered = renderer.render(TEMPLATE, SUBJECT, context)
    return build_message(
        rendered, from_addr="hello@maison-verte.example", from_name="Maison Verte",
        to_addr=context["customer"]["email"], reply_to="care@maison-verte.example",
        message_id=f"<{index}.new-product@maison-verte.example>", date=NOW,
        headers={"List-Unsubscribe": f"<{context['unsubscribe_url']}>",
                 "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
                 "List-Id": "Maison Verte <new-product.maison-verte.example>",
                 "X-Campaign-Id": "new-product"})


def naive(renderer: Renderer, context: dict, index: int) -> bytes:
    template = renderer.env.get_template(TEMPLATE)
    subject = renderer.render_subject(SUBJECT, {**context, "store": renderer.store})
    markup = renderer.env.render(template, {**context, "store": renderer.store,
                                            "subject": subject})
    markup = premailer.Premailer(markup, allow_network=False, strip_important=False,
                                 keep_style_tags=True, disable_validation=True).transform()
    msg = EmailMessage(policy=email.policy.SMTP)
    msg["From"] = "Maison Verte <hello@maison-verte.example>"
    msg["To"] = context["customer"]["email"]
    msg["Subject"] = subject
    msg["Message-ID"] = f"<{index}.new-product@maison-verte.example>"
    msg.set_content(html_to_text(markup))
    msg.add_alternative(markup, subtype="html")
    return msg.as_bytes()


def rate(label: str, work: Callable[[dict, int], object], items: list[dict], repeat: int) -> None:
    rates = []
    for _ in range(repeat):
        started = time.process_time()
        for index, context in enumerate(items):
            work(context, index)
        rates.append(len(items) / (time.process_time() - started))
    print(f"{label:<44} {statistics.median(rates):>8,.0f} emails/s   "
          f"(runs: {', '.join(f'{r:,.0f}' for r in rates)}; {len(items):,} emails)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--emails", type=int, default=3000)
    parser.add_argument("--naive-emails", type=int, default=150)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    settings = config.load(ROOT / "config.yaml", environ={})
    store = settings.store.model_dump(include={"name", "url", "postal_address", "currency"})
    items = contexts(args.emails)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    fast = Renderer(ROOT / "templates", store)
    started = time.process_time()
    sample = message(fast, items[0], 0)
    prepare = time.process_time() - started
    print(f"template preparation (once per Renderer)     {prepare * 1000:>8.0f} ms CPU; "
          f"fast path used for HTML/text: {fast.uses_fast_path(TEMPLATE)}")
    print(f"message size                                 {len(sample):>8,} bytes "
          f"(HTML {len(fast.render(TEMPLATE, SUBJECT, items[0]).html):,} characters)")

    jinja = fast.env.get_template(TEMPLATE)
    rate("Jinja alone (sandboxed render)",
         lambda c, i: fast.env.render(jinja, {**c, "store": store, "subject": "x"}),
         items, args.repeat)
    rate("fast path: subject + HTML + text",
         lambda c, i: fast.render(TEMPLATE, SUBJECT, c), items, args.repeat)
    rate("full, fast path: + MIME bytes", lambda c, i: message(fast, c, i), items, args.repeat)
    slow = Renderer(ROOT / "templates", store, fast=False)
    slow_items = items[: max(args.emails // 5, 100)]
    rate("full, css_inline + html2text per email", lambda c, i: message(slow, c, i),
         slow_items, args.repeat)
    rate("naive: premailer + html2text + EmailMessage",
         lambda c, i: naive(fast, c, i), items[: args.naive_emails], 1)

    tracemalloc.start()
    for index, context in enumerate(items):
        message(fast, context, index)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak memory: tracemalloc peak over {len(items):,} full fast-path emails "
          f"{peak / 2**20:.1f} MB; max RSS {rss_after:.0f} MB "
          f"(after building the {len(items):,} contexts: {rss_before:.0f} MB)")


if __name__ == "__main__":
    main()
