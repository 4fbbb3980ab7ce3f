"""Every kind of email, as the demo sends it, opened in Chromium at a phone's and a desktop's
width: nothing overflows, every picture loads, the coupon code stays on one line and is selected
whole, and the inbox preview line is the email's own words, never the team's description.

The emails are the ``.eml`` files the demo's loopback SMTP server wrote, opened as a mail client
opens them: the HTML part with its inline pictures (``cid:``). Screenshots of each go to
artifacts/screenshots/ (git-ignored), to look at.
"""

from __future__ import annotations

import base64
import email
import email.policy
import io
import re
from collections import defaultdict
from datetime import UTC, datetime

import pytest
from rich.console import Console

from engine import config, db
from engine.campaigns import models
from engine.consent import pages
from engine.demo.showcase import run
from tests.browser.conftest import ROOT

NOW = datetime(2026, 6, 16, 8, 0, tzinfo=UTC)  # 10:00 in Paris, a Tuesday (bundles day)
WIDTHS = (375, 600)
PHONE = 320  # the narrowest phone: the coupon code must still fit on one line
PER_KIND = 3  # customers per kind of email
pytestmark = pytest.mark.slow  # a demo shop and a browser: tens of seconds


@pytest.fixture(scope="module")
def emails(tmp_path_factory) -> dict[str, list[email.message.EmailMessage]]:
    """The demo's emails, up to PER_KIND of each kind (a gift and a nudge are two kinds)."""
    folder = tmp_path_factory.mktemp("demo")
    text = (ROOT / "config.yaml").read_text().replace("sqlite:///retain.db", "sqlite:///demo.db")
    (folder / "config.yaml").write_text(text.replace("outbox: outbox", f"outbox: {folder}/out"))
    for name in ("campaigns", "templates"):
        (folder / name).symlink_to(ROOT / name)
    settings = config.load(folder / "config.yaml", environ={})
    engine = db.connect(settings.database.url)
    run(engine, settings, NOW, customers=500, console=Console(file=io.StringIO()))
    engine.dispose()
    found: dict[str, list] = defaultdict(list)
    for path in sorted((folder / "out").glob("*.eml")):
        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        kind = message["X-Campaign-Id"]
        if kind == "spend-gift":
            kind += "-nudge" if message["Subject"].startswith("Only") else "-gift"
        if len(found[kind]) < PER_KIND:
            found[kind].append(message)
    return dict(found)


def descriptions() -> dict[str, str]:
    return {c.id: c.description for c in models.load_folder(ROOT / "campaigns")}


def opened(message) -> str:
    """The HTML part as a mail client shows it: ``cid:`` pictures from the message itself."""
    markup = message.get_body(("html",)).get_content()
    for part in message.walk():
        if part["Content-ID"]:
            cid = part["Content-ID"].strip("<>")
            data = base64.b64encode(part.get_payload(decode=True)).decode()
            markup = markup.replace(f"cid:{cid}", f"data:{part.get_content_type()};base64,{data}")
    return markup


CHECKS = """() => {
  const images = [...document.images];
  const code = document.querySelector('.coupon-code');
  let codeLines = 0, codeFits = true;
  if (code) {
    const range = document.createRange();
    range.selectNodeContents(code);
    codeLines = new Set([...range.getClientRects()].map(r => Math.round(r.top))).size;
    codeFits = code.scrollWidth <= code.clientWidth + 1;
  }
  return {
    overflow: document.documentElement.scrollWidth - window.innerWidth,
    broken: images.filter(i => !i.complete || i.naturalWidth === 0).map(i => i.alt),
    unlabelled: images.filter(i => !i.alt || !i.getAttribute('width')).length,
    code: code ? code.textContent.trim() : null, codeLines, codeFits,
    preheader: (document.querySelector('.preheader') || {}).textContent || '',
  };
}"""


def test_every_kind_of_email_is_there(emails):
    assert set(emails) == {"winback", "new-arrivals", "spend-gift-gift", "spend-gift-nudge",
                           "bundles", "post_purchase", "review_apology", "review_thanks",
                           "abandoned_checkout", "vip"}


def test_every_email_fits_loads_its_pictures_and_keeps_its_code_whole(browser, emails,
                                                                      screenshots):
    described = descriptions()
    problems = []
    page = browser.new_page(viewport={"width": PHONE, "height": 800})
    for kind, messages in sorted(emails.items()):
        for number, message in enumerate(messages, start=1):
            page.set_viewport_size({"width": PHONE, "height": 800})
            page.set_content(opened(message), wait_until="load")
            for width in (PHONE, *WIDTHS):  # one page, resized: the pictures load once
                page.set_viewport_size({"width": width, "height": 800})
                seen = page.evaluate(CHECKS)
                where = f"{kind} #{number} at {width} px"
                if seen["overflow"] > 0:
                    problems.append(f"{where}: {seen['overflow']} px wider than the screen")
                if seen["broken"] or seen["unlabelled"]:
                    problems.append(f"{where}: images not loaded {seen['broken']} or without "
                                    f"alt/width ({seen['unlabelled']})")
                if seen["code"] is not None:
                    if seen["codeLines"] != 1 or not seen["codeFits"]:
                        problems.append(f"{where}: the code {seen['code']} does not fit on one "
                                        "line")
                    page.dblclick(".coupon-code")
                    selected = page.evaluate("() => window.getSelection().toString().trim()")
                    page.evaluate("() => window.getSelection().removeAllRanges()")
                    if selected != seen["code"]:
                        problems.append(f"{where}: a double-click selects {selected!r}, not "
                                        "the whole code")
                preheader = " ".join(seen["preheader"].split())
                campaign = message["X-Campaign-Id"]
                if not preheader or preheader == described[campaign]:
                    problems.append(f"{where}: the preview line is {preheader!r}")
                if width in WIDTHS:
                    page.screenshot(path=str(screenshots / f"{kind}-{number}-{width}.png"),
                                    full_page=True)
    page.close()
    assert problems == []


def test_the_unsubscribe_pages_fit_a_phone(browser, screenshots):
    settings = config.load(ROOT / "config.yaml", environ={})
    store = settings.store
    shown = {"ask": pages.ask(store, "1.marketing.x"), "unsubscribed": pages.unsubscribed(store),
             "paused": pages.paused(store, NOW, "1.marketing.x"), "invalid": pages.invalid(store)}
    page = browser.new_page()
    for name, markup in shown.items():
        page.set_content(markup)
        for width in WIDTHS:
            page.set_viewport_size({"width": width, "height": 700})
            overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
            assert overflow <= 0, (name, width)
            assert store.postal_address in page.inner_text("footer")
            page.screenshot(path=str(screenshots / f"unsubscribe-{name}-{width}.png"),
                            full_page=True)
    page.close()
    assert re.search(r"Pause all emails for 30 days", shown["ask"])
