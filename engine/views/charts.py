"""The report's charts, drawn by matplotlib as inline SVG: nothing to fetch when viewed.

Owns three figures over a ``results.Report``: sends and attributed revenue per day; conversion,
mailed vs held out, with each share's 95 % Wilson interval and the lift's Newcombe interval in
the label; coupons issued and redeemed per campaign step. Each comes back as an ``<svg>``
element (text is drawn as paths, so no font is needed either). Must not query or compute
figures beyond what the report holds (the Wilson bars are lift.py's), nor write files.
"""

from __future__ import annotations

import io
from datetime import date

import matplotlib

matplotlib.use("Agg")  # no display: files only

import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.dates import DateFormatter, DayLocator  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from engine.views.lift import wilson  # noqa: E402
from engine.views.results import Outcome, Report  # noqa: E402

MAILED_COLOUR, HOLDOUT_COLOUR, REVENUE_COLOUR = "#2f6fb0", "#b8b8b8", "#d9822b"
plt.rcParams.update({"svg.fonttype": "path", "svg.hashsalt": "retain-report",
                     "font.size": 9, "axes.spines.top": False, "axes.spines.right": False})


def _svg(figure) -> str:
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg", bbox_inches="tight", metadata={"Date": None})
    plt.close(figure)
    text = buffer.getvalue()
    return text[text.index("<svg"):]


def _empty(message: str) -> str:
    figure, axes = plt.subplots(figsize=(6.4, 1.2))
    axes.axis("off")
    axes.text(0.5, 0.5, message, ha="center", va="center", color="#666666")
    return _svg(figure)


def per_day(report: Report) -> str:
    """Bars: emails sent per day; line: attributed revenue per day (store currency)."""
    days = sorted(set(report.sends_per_day) | set(report.revenue_per_day))
    if not days:
        return _empty("No sends in this period yet.")
    x = [date.fromisoformat(d) for d in days]
    figure, sends = plt.subplots(figsize=(7.5, 3))
    sends.bar(x, [report.sends_per_day.get(d, 0) for d in days], width=0.7,
              color=MAILED_COLOUR, label="emails sent")
    span = (x[-1] - x[0]).days + 1
    sends.xaxis.set_major_locator(DayLocator(interval=max(1, span // 8 + (span % 8 > 0))))
    sends.yaxis.set_major_locator(MaxNLocator(integer=True))
    sends.xaxis.set_major_formatter(DateFormatter("%d %b"))
    sends.set_ylabel("emails sent")
    revenue = sends.twinx()
    revenue.spines["right"].set_visible(True)
    revenue.plot(x, [report.revenue_per_day.get(d, 0) / 100 for d in days], color=REVENUE_COLOUR,
                 marker="o", label=f"attributed revenue ({report.currency})")
    revenue.set_ylabel(f"attributed revenue ({report.currency})")
    revenue.set_ylim(bottom=0)
    figure.legend(loc="lower center", ncols=2, frameon=False, bbox_to_anchor=(0.5, -0.12))
    sends.set_title("Sends and attributed revenue per day")
    return _svg(figure)


def conversion(report: Report) -> str:
    """Per campaign, the share who ordered within the window: mailed vs held out."""
    measured = [c for c in report.campaigns if c.mailed.n and c.holdout.n]
    if not measured:
        return _empty("No campaign has both mailed and held-out customers yet.")
    figure, axes = plt.subplots(figsize=(7.5, 0.9 + 0.8 * len(measured)))
    for row, campaign in enumerate(reversed(measured)):
        for offset, group, colour, name in ((0.18, campaign.mailed, MAILED_COLOUR, "mailed"),
                                            (-0.18, campaign.holdout, HOLDOUT_COLOUR,
                                             "held out")):
            low, high = wilson(group.converted, group.n)
            axes.barh(row + offset, group.rate * 100, height=0.34, color=colour,
                      label=name if row == 0 else None)
            axes.errorbar(group.rate * 100, row + offset, xerr=[[(group.rate - low) * 100],
                                                                [(high - group.rate) * 100]],
                          fmt="none", ecolor="#333333", capsize=3)
    axes.set_yticks(range(len(measured)), [_label(c) for c in reversed(measured)])
    axes.set_xlabel(f"ordered within {report.window_days} days (%), with 95 % intervals")
    axes.legend(frameon=False, loc="upper left", bbox_to_anchor=(1, 1))
    axes.set_title("Conversion: mailed vs held out")
    return _svg(figure)


def _label(campaign: Outcome) -> str:
    c = campaign.conversion
    if c.lift is None:
        return campaign.id
    return (f"{campaign.id}\nlift {c.lift * 100:+.1f} pts "
            f"[{c.low * 100:+.1f}, {c.high * 100:+.1f}]")


def redemptions(report: Report) -> str:
    """Coupons issued and redeemed, per campaign step (or per campaign without steps)."""
    bars = [(f"{c.id} · {s.id}", s) for c in report.campaigns for s in c.steps] + \
        [(c.id, c) for c in report.campaigns if not c.steps]
    bars = [(name, o) for name, o in bars if o.coupons_issued]
    if not bars:
        return _empty("No coupons issued in this period.")
    figure, axes = plt.subplots(figsize=(7.5, 0.9 + 0.55 * len(bars)))
    rows = range(len(bars))
    axes.barh([r + 0.18 for r in rows], [o.coupons_issued for _, o in bars], height=0.34,
              color=HOLDOUT_COLOUR, label="issued")
    axes.barh([r - 0.18 for r in rows], [o.coupons_redeemed for _, o in bars], height=0.34,
              color=MAILED_COLOUR, label="redeemed")
    axes.set_yticks(list(rows), [name for name, _ in bars])
    axes.invert_yaxis()
    axes.set_xlabel("coupons")
    axes.legend(frameon=False, loc="upper left", bbox_to_anchor=(1, 1))
    axes.set_title("Redemptions per coupon step")
    return _svg(figure)
