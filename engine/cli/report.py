"""``retain report``: did the campaigns work? Terminal tables, JSON or an HTML file."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Annotated

import typer

from . import AsJson, AsOf, app, as_of_moment, engine_for, out, print_json, settings, user_errors


def _day_start(value: str | None, zone, option: str, next_day: bool = False) -> datetime | None:
    if not value:
        return None
    try:
        day = date.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f'"{value}" is not a date; write it like 2026-06-30',
                                 param_hint=option) from None
    return datetime.combine(day + timedelta(days=1 if next_day else 0), time(0), tzinfo=zone)


@app.command("report")
@user_errors
def report_command(
    campaigns: Annotated[list[str] | None, typer.Argument(
        help="Campaign ids (default: every campaign in the ledger).")] = None,
    since: Annotated[str | None, typer.Option("--from", metavar="DATE",
                                              help="Deliveries from this day on.")] = None,
    until: Annotated[str | None, typer.Option("--to", metavar="DATE",
                                              help="Deliveries up to this day, included.")] = None,
    as_of: AsOf = None,
    as_json: AsJson = False,
    html: Annotated[Path | None, typer.Option(
        "--html", metavar="FILE", help="Also write the report with charts to this file.")] = None,
) -> None:
    """Redemptions, attributed revenue and lift over the holdout, per campaign.

    Example: retain report winback --from 2026-06-01 --html report.html
    """
    from engine.views import reportpage, results

    cfg = settings()
    zone = cfg.store.zone
    report = results.build(engine_for(cfg), cfg, as_of_moment(as_of, cfg), campaigns,
                           _day_start(since, zone, "--from"),
                           _day_start(until, zone, "--to", next_day=True))
    if html is not None:
        html.write_text(reportpage.html(report, cfg), encoding="utf-8")
    if as_json:
        print_json(report.as_dict())
        return
    for table in reportpage.tables(report, cfg):
        out.print(table)
    if not report.campaigns:
        out.print("No deliveries in this period.", markup=False)
    out.print(reportpage.NOTES, markup=False)
    if html is not None:
        out.print(f"HTML report with charts: {html}", markup=False)
