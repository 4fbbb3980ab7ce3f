"""Campaigns before they send: validate, plan, preview, why, simulate."""

from __future__ import annotations

import sys
from datetime import date, datetime, time
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from . import (
    CUSTOMER_HELP,
    AsJson,
    AsOf,
    CampaignIds,
    CustomerRef,
    app,
    as_of_moment,
    engine_for,
    err,
    out,
    print_json,
    settings,
    skipped_cell,
    user_errors,
)


@app.command("validate")
@user_errors
def validate_command() -> None:
    """Check config.yaml, every campaign and every template. Example: retain validate"""
    from engine.campaigns import validate

    cfg = settings()
    found = validate.check(cfg)
    out.print(f"ok: config.yaml and {len(found)} campaigns are valid "
              f"({', '.join(c.id for c in found)})")


@app.command("plan")
@user_errors
def plan_command(campaigns: CampaignIds = None, as_of: AsOf = None, as_json: AsJson = False,
                 sample: Annotated[int, typer.Option(help="Recipients to show.")] = 5) -> None:
    """Show who would get what, without sending or writing. Example: retain plan winback"""
    from engine.campaigns import planner, validate

    cfg = settings()
    now = as_of_moment(as_of, cfg)
    chosen = validate.load(cfg, campaigns)
    result = planner.summarize(engine_for(cfg), cfg, chosen, now, sample=sample)
    if as_json:
        print_json({"as_of": now.isoformat(), "campaigns": [p.as_dict() for p in result]})
        return
    table = Table("campaign", "kind", "in segment", "recipients", "held out", "suppressed",
                  "skipped", "offers", "offer value", "budget",
                  title=f"Plan as of {now:%Y-%m-%d %H:%M %Z}")
    for p in result:
        c, budget = p.counts, p.campaign.budget
        limit = " / ".join(x for x in (budget.max_offers and f"{budget.max_offers} offers",
                                       budget.max_value and f"{budget.max_value}") if x)
        table.add_row(p.campaign.id, p.campaign.kind, str(c.in_segment), str(c.planned),
                      str(c.held_out), str(c.suppressed), skipped_cell(c), str(c.offers),
                      p.offer_value(), limit or "-")
    out.print(table)
    for p in result:
        out.print(f"[bold]{p.campaign.id}[/bold]: {p.segment()}", markup=True)
        for warning in p.warnings:
            err.print(f"warning: {p.campaign.id}: {warning}", markup=False)
        for example in p.sample:
            offer = example["offer"] or {}
            what = ", ".join(example["products"]) or offer.get("kind", "")
            out.print(f"  customer {example['customer']}: {example['occasion']} {what}",
                      markup=False)


PreviewFormat = StrEnum("PreviewFormat", ["html", "text", "eml"])


@app.command("preview")
@user_errors
def preview_command(
    campaign: Annotated[str, typer.Argument(help="Campaign id.")],
    customer: Annotated[str, typer.Option("--customer", help=CUSTOMER_HELP)],
    as_of: AsOf = None,
    format: Annotated[PreviewFormat, typer.Option("--format")] = PreviewFormat.html,
    out_file: Annotated[Path | None, typer.Option("--out", help="Write to this file.")] = None,
    open_browser: Annotated[bool, typer.Option("--open", help="Open in the browser.")] = False,
) -> None:
    """The real email for a real customer. Example: retain preview winback --customer 42 --open"""
    from engine.campaigns import validate
    from engine.views import preview

    cfg = settings()
    now = as_of_moment(as_of, cfg)
    chosen = validate.load(cfg, [campaign])[0]
    result = preview.build(engine_for(cfg), cfg, chosen, customer, now)
    if result.warning:
        err.print(f"warning: customer {result.customer_id} {result.warning}", markup=False)
    body = {"html": result.html.encode(), "text": result.text.encode(), "eml": result.eml}[format]
    if open_browser and out_file is None:
        import tempfile
        out_file = Path(tempfile.mkstemp(suffix=f".{format.value}", prefix="retain-preview-")[1])
    if out_file is not None:
        out_file.write_bytes(body)
        err.print(f"wrote {out_file} (subject: {result.subject})", markup=False)
        if open_browser:
            import webbrowser
            webbrowser.open(out_file.resolve().as_uri())
        return
    sys.stdout.write(body.decode("utf-8", errors="replace"))




@app.command("why")
@user_errors
def why_command(
    customer: CustomerRef,
    campaign: Annotated[str | None, typer.Argument(help="Only this campaign.")] = None,
    as_of: AsOf = None,
    as_json: AsJson = False,
) -> None:
    """Why a customer would or would not get each campaign. Example: retain why 42 winback"""
    from engine.campaigns import validate
    from engine.views import explain

    cfg = settings()
    now = as_of_moment(as_of, cfg)
    chosen = validate.load(cfg, [campaign] if campaign else None)
    customer_id, answers = explain.explain(engine_for(cfg), cfg, chosen, customer, now)
    if as_json:
        print_json({"customer": customer_id, "as_of": now.isoformat(),
                    "campaigns": [a.as_dict() for a in answers]})
        return
    if any(a.why == explain.Why.stale_data for a in answers):
        err.print("campaigns wait: the shop's data is stale (retain status says why)",
                  markup=False)
    table = Table("campaign", "priority", "answer", "because",
                  title=f"Customer {customer_id} as of {now:%Y-%m-%d %H:%M %Z}")
    for a in answers:
        table.add_row(a.campaign, str(a.priority), a.why.value.replace("_", " "), a.detail)
    out.print(table)


@app.command("simulate")
@user_errors
def simulate_command(
    start: Annotated[str, typer.Option("--from", help="First day (or datetime).")],
    end: Annotated[str, typer.Option("--to", help="Last day (included) or datetime.")],
    as_json: AsJson = False,
    sample: Annotated[int, typer.Option(help="Recipients listed per campaign and day.")] = 5,
) -> None:
    """Replay the schedule over a period without sending or writing.

    Example: retain simulate --from 2026-12-01 --to 2026-12-07
    """
    from engine.campaigns import validate
    from engine.views import simulate

    cfg = settings()
    first = as_of_moment(start, cfg)
    if len(start) == 10:  # a bare date starts at midnight, not at its end
        first = datetime.combine(date.fromisoformat(start), time(0), tzinfo=cfg.store.zone)
    last = as_of_moment(end, cfg)
    result = simulate.replay(engine_for(cfg), cfg, validate.load(cfg), first, last, sample)
    if as_json:
        print_json(result.as_dict())
        return
    table = Table("day", "campaign", "tick", "recipients", "held out", "deferred", "capped",
                  "sample (customer: occasion)",
                  title=f"Simulated {len(result.ticks)} ticks, {start} to {end}: nothing sent")
    for day, ticks in result.days():
        for tick in ticks:
            c = tick.counts
            shown = ", ".join(f"{s['customer']}: {s['occasion']}" for s in tick.sample[:3])
            table.add_row(day, tick.campaign_id, f"{tick.at:%H:%M}", str(c.planned),
                          str(c.held_out), str(c.deferred), str(c.capped), shown)
    out.print(table)
