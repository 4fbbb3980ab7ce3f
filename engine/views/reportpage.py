"""The report for people: terminal tables (rich) and one self-contained HTML file.

Owns how ``results.Report`` reads: one table per campaign (and its steps), money in the store's
locale, rates as percentages, the lift with its interval and the verdict; the HTML page holds the
same tables and charts.py's inline SVG charts, with its CSS inline, so it opens from a file with
no network. Must not query or compute figures (results.py, lift.py do), nor write (the caller
writes the page where it is asked to).
"""

from __future__ import annotations

from typing import Any

from jinja2 import Environment, select_autoescape
from rich.table import Table

from engine import money
from engine.config import Settings
from engine.views import lift
from engine.views.lift import Difference
from engine.views.results import Outcome, Report


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x * 100:.1f} %"


def _pts(d: Difference) -> str:
    if d.lift is None:
        return "-"
    return f"{d.lift * 100:+.1f} pts [{d.low * 100:+.1f}, {d.high * 100:+.1f}]"


def rows(outcome: Outcome, settings: Settings) -> list[tuple[str, str]]:
    """The figures of one campaign or step, labelled, as people read them."""
    def m(cents: float | None) -> str:
        return "-" if cents is None else money.format(round(cents), settings.store.currency,
                                                      settings.store.locale)

    conversion, revenue = outcome.conversion, outcome.revenue_per_recipient
    revenue_lift = "-" if revenue.lift is None else \
        f"{m(revenue.lift)} [{m(revenue.low)}, {m(revenue.high)}]"
    incremental = outcome.incremental_orders
    return [
        ("sent / delivered / bounced", f"{outcome.sent} / {outcome.delivered} / "
                                       f"{outcome.bounced}"),
        ("unsubscribed after it", str(outcome.unsubscribed)),
        ("held out", str(outcome.held_out)),
        ("coupons issued / redeemed / expired",
         f"{outcome.coupons_issued} / {outcome.coupons_redeemed} / {outcome.coupons_expired}"),
        ("redeemed after expiry (honoured)", str(outcome.coupons_redeemed_after_expiry)),
        ("attributed orders (by coupon)",
         f"{outcome.attributed_orders} ({outcome.attributed_by_coupon})"),
        ("attributed revenue", m(outcome.attributed_revenue)),
        ("discount cost", m(outcome.discount_cost)),
        ("conversion mailed / holdout", f"{_pct(conversion.mailed)} / "
                                        f"{_pct(conversion.holdout)}"),
        ("lift, 95 % interval", _pts(conversion)),
        ("revenue per recipient mailed / holdout", f"{m(revenue.mailed)} / "
                                                   f"{m(revenue.holdout)}"),
        ("revenue lift per recipient, 95 % interval", revenue_lift),
        ("incremental orders / revenue",
         "-" if incremental is None else f"{incremental:+.1f} / "
                                         f"{m(outcome.incremental_revenue)}"),
        ("verdict", outcome.verdict),
    ]


def tables(report: Report, settings: Settings) -> list[Table]:
    """One rich table per campaign, with a column per step where it has several."""
    result = []
    for outcome in report.campaigns:
        table = Table("", outcome.id if not outcome.steps else "all",
                      *(step.id for step in outcome.steps),
                      title=f"{outcome.id} (window {report.window_days} days)",
                      title_justify="left")
        columns = [rows(outcome, settings)] + [rows(step, settings) for step in outcome.steps]
        for index, (label, _) in enumerate(columns[0]):
            table.add_row(label, *(column[index][1] for column in columns))
        result.append(table)
    return result


NOTES = (f"Conversion: the share who ordered within the window; its lift's interval is the "
         f"{lift.CONVERSION_METHOD}. Revenue per recipient: {lift.REVENUE_METHOD}. "
         "Held-out customers are watched from when their delivery was planned.")

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Campaign report as of {{ as_of }}</title>
<style>
body { font: 14px/1.45 system-ui, sans-serif; color: #222; margin: 2rem auto; max-width: 60rem;
       padding: 0 1rem; }
h1 { font-size: 1.5rem; } h2 { font-size: 1.2rem; margin-top: 2rem; }
table { border-collapse: collapse; margin: .5rem 0 1rem; }
th, td { border-bottom: 1px solid #ddd; padding: .25rem .6rem; text-align: left; }
td:not(:first-child), th:not(:first-child) { text-align: right; }
figure { margin: 1rem 0; } figure svg { max-width: 100%; height: auto; }
.note { color: #555; font-size: .9rem; }
</style></head>
<body>
<h1>Did it work? Campaign report</h1>
<p class="note">As of {{ as_of }}; orders counted within {{ window_days }} days after each
delivery{% if since %}; deliveries from {{ since }}{% endif %}{% if until %} to {{ until }}
{%- endif %}. {{ notes }}</p>
<figure class="chart" id="per-day">{{ per_day | safe }}</figure>
<figure class="chart" id="conversion">{{ conversion | safe }}</figure>
<figure class="chart" id="redemptions">{{ redemptions | safe }}</figure>
{% for campaign in campaigns %}
<h2>{{ campaign.id }}</h2>
<table><thead><tr><th></th>{% for head in campaign.heads %}<th>{{ head }}</th>{% endfor %}
</tr></thead><tbody>
{% for row in campaign.rows %}<tr>{% for cell in row %}<td>{{ cell }}</td>{% endfor %}</tr>
{% endfor %}</tbody></table>
{% else %}<p>No deliveries in this period.</p>{% endfor %}
</body></html>
"""

_ENV = Environment(autoescape=select_autoescape(default=True, default_for_string=True))


def html(report: Report, settings: Settings) -> str:
    """The whole report as one HTML document: tables and inline SVG charts."""
    from engine.views import charts  # imported here: matplotlib (50 MB) only for the page

    campaigns: list[dict[str, Any]] = []
    for outcome in report.campaigns:
        columns = [rows(outcome, settings)] + [rows(step, settings) for step in outcome.steps]
        heads = ["all", *(step.id for step in outcome.steps)] if outcome.steps else [outcome.id]
        campaigns.append({"id": outcome.id, "heads": heads, "rows": [
            [label, *(column[i][1] for column in columns)]
            for i, (label, _) in enumerate(columns[0])]})
    return _ENV.from_string(PAGE).render(
        as_of=f"{report.as_of:%Y-%m-%d %H:%M %Z}", window_days=report.window_days,
        since=report.since and f"{report.since:%Y-%m-%d}",
        until=report.until and f"{report.until:%Y-%m-%d}", notes=NOTES, campaigns=campaigns,
        per_day=charts.per_day(report), conversion=charts.conversion(report),
        redemptions=charts.redemptions(report))
