"""The pages a customer sees behind the unsubscribe link, one function a state.

Owns the HTML of each state, branded like the emails (the store's name in the header band, its
postal address in the footer, the same colours and type): ``ask`` (unsubscribe, or pause all
mail for 30 or 90 days instead), ``unsubscribed`` (says so; no second button), ``paused`` (until
when; leaving for good is still offered), and ``invalid`` (a broken or altered link). Any web
server can serve them: ``optout.app`` does, and so can a larger web app. Dates are written in the
store's locale and time zone. Must not: read or write the database, or decide anything.
"""

from __future__ import annotations

from datetime import datetime
from html import escape

from babel.dates import format_date

from engine.config import Store
from engine.consent.preferences import PAUSE_DAYS

_STYLE = """
body { margin: 0; background: #f4f1ea; color: #2b2b2b; font: 17px/1.5 Georgia, 'Times New Roman',
  serif; }
.band { background: #2f6b3a; padding: 20px 24px; }
.band a { color: #fff; font-size: 22px; font-weight: bold; letter-spacing: 1px;
  text-decoration: none; }
main { max-width: 560px; margin: 0 auto; background: #fff; padding: 32px 24px; }
h1 { margin: 0 0 16px; color: #1f3d25; font-size: 26px; line-height: 1.25; }
p { margin: 0 0 16px; }
form { margin: 0 0 12px; }
button { font: bold 16px Arial, Helvetica, sans-serif; border-radius: 4px; padding: 12px 20px;
  cursor: pointer; border: 2px solid #2f6b3a; width: 100%; max-width: 360px; }
.leave { background: #2f6b3a; color: #fff; }
.pause { background: #fff; color: #2f6b3a; margin-bottom: 8px; }
.choices { margin: 24px 0 0; padding: 24px 0 0; border-top: 1px solid #e4dfd4; }
footer { max-width: 560px; margin: 0 auto; padding: 20px 24px; color: #6b6b6b; font-size: 13px; }
footer a { color: #6b6b6b; }
"""


def _page(store: Store, title: str, body: str) -> str:
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)} · {escape(store.name)}</title><style>{_STYLE}</style></head>"
        f'<body><div class="band"><a href="{escape(store.url)}">{escape(store.name)}</a></div>'
        f"<main><h1>{escape(title)}</h1>{body}</main>"
        f'<footer><p><a href="{escape(store.url)}">{escape(store.name)}</a>, '
        f"{escape(store.postal_address)}</p></footer></body></html>")


def _leave_form(token: str, label: str) -> str:
    return ('<form method="post">'
            f'<input type="hidden" name="token" value="{escape(token)}">'
            '<input type="hidden" name="List-Unsubscribe" value="One-Click">'
            f'<button class="leave" type="submit">{escape(label)}</button></form>')


def _day(store: Store, moment: datetime) -> str:
    return format_date(moment.astimezone(store.zone).date(), "long", locale=store.locale)


def ask(store: Store, token: str) -> str:
    """The footer link's page: leave, or pause instead. Nothing changes until a button."""
    pauses = "".join(
        '<form method="post">'
        f'<input type="hidden" name="token" value="{escape(token)}">'
        f'<button class="pause" type="submit" name="pause" value="{days}">'
        f"Pause all emails for {days} days</button></form>" for days in PAUSE_DAYS)
    return _page(store, "Unsubscribe?", (
        f"<p>Press the button to stop all marketing emails from {escape(store.name)}.</p>"
        f"{_leave_form(token, 'Unsubscribe')}"
        '<div class="choices"><p>Just too many emails at the moment? Take a break instead: '
        "we will not write to you until it ends, and you keep your place with us.</p>"
        f"{pauses}</div>"))


def unsubscribed(store: Store) -> str:
    return _page(store, "You are unsubscribed", (
        f"<p>{escape(store.name)} will not send you marketing emails any more. It may take a "
        "moment for an email already on its way to stop.</p>"
        f'<p>Changed your mind? You can sign up again at <a href="{escape(store.url)}">'
        f"{escape(store.url)}</a>.</p>"))


def paused(store: Store, until: datetime, token: str) -> str:
    day = _day(store, until)
    return _page(store, f"Your emails are paused until {day}", (
        f"<p>We will not send you marketing emails until {day}. After that you will hear "
        f"from {escape(store.name)} again.</p>"
        '<div class="choices"><p>Would you rather leave for good?</p>'
        f"{_leave_form(token, 'Unsubscribe instead')}</div>"))


def invalid(store: Store) -> str:
    return _page(store, "This link is not valid", (
        "<p>The unsubscribe link is incomplete or was changed. Use the link from the email "
        "itself, or reply to it and we will remove you.</p>"))


def message(store: Store, title: str, text: str) -> str:
    """A plain notice in the same frame (a wrong method, a malformed request)."""
    return _page(store, title, f"<p>{escape(text)}</p>")
