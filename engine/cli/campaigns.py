"""Campaigns before they send: validate, plan, preview, why, simulate."""

from __future__ import annotations

import sys
from datetime import date, datetime, time
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from engine import display

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
    show,
    table,
    transport_for,
    user_errors,
    warn,
)


@app.command("validate")
@user_errors
def validate_command() -> None:
    """Check config.yaml, every campaign and every template. Example: retain validate"""
    from engine.campaigns import validate

    cfg = settings()
    found = validate.check(cfg)
    out.print(f"ok: config.yaml and {display.count(len(found), 'campaign')} are valid "
              f"({', '.join(c.id for c in found)})", markup=False)


@app.command("plan")
@user_errors
def plan_command(campaigns: CampaignIds = None, as_of: AsOf = None, as_json: AsJson = False,
                 sample: Annotated[int, typer.Option(help="Recipients to show.")] = 5) -> None:
    """Show who would get what, without sending or writing. Example: retain plan winback"""
    from engine.campaigns import planner, validate

    cfg = settings()
    now = as_of_moment(as_of, cfg)
    chosen = validate.load(cfg, campaigns, warn=warn)
    result = planner.summarize(engine_for(cfg), cfg, chosen, now, sample=sample)
    if as_json:
        print_json({"as_of": now, "campaigns": [p.as_dict() for p in result]})
        return
    grid = table("campaign", "in segment", "eligible", "recipients", "held out", "suppressed",
                 "offers", "offer value", ids=("campaign",),
                 title=f"Plan as of {display.moment(now, cfg.store.zone)}")
    for p in result:
        c = p.counts
        grid.add_row(p.campaign.id, f"{p.in_segment:,}", f"{c.eligible:,}", f"{c.planned:,}",
                     f"{c.held_out:,}", f"{c.suppressed:,}", f"{c.offers:,}",
                     str(cfg.store.money(c.offer_value_cents)))
    show(grid)
    for p in result:
        out.print(p.sentence(cfg.store), markup=False)
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
    send_to: Annotated[str | None, typer.Option(
        "--send-to", help="Send it to this address, subject marked [TEST], outside the ledger.")
    ] = None,
) -> None:
    """The real email for a real customer. Example: retain preview winback --customer 42 --open

    Example: retain preview winback --customer 42 --send-to me@my-shop.example
    """
    from engine.campaigns import validate
    from engine.views import preview

    cfg = settings()
    now = as_of_moment(as_of, cfg)
    chosen = validate.load(cfg, [campaign], warn=warn)[0]
    result = preview.build(engine_for(cfg), cfg, chosen, customer, now, send_to=send_to)
    if result.warning:
        err.print(f"warning: customer {result.customer_id} {result.warning}", markup=False)
    if send_to:
        transport = transport_for(cfg)
        try:
            said = preview.send(cfg, result, transport)
        finally:
            transport.close()
        out.print(f"sent “{result.subject}” to {send_to} ({said})", markup=False)
        return
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
    chosen = validate.load(cfg, [campaign] if campaign else None, warn=warn)
    customer_id, answers = explain.explain(engine_for(cfg), cfg, chosen, customer, now)
    if as_json:
        print_json({"customer": customer_id, "as_of": now,
                    "campaigns": [a.as_dict() for a in answers]})
        return
    if any(a.why == explain.Why.stale_data for a in answers):
        err.print("campaigns wait: the shop's data is stale (retain status says why)",
                  markup=False)
    grid = table("campaign", "priority", "answer", "because", ids=("campaign",),
                 title=f"Customer {customer_id} as of {display.moment(now, cfg.store.zone)}")
    for a in answers:
        grid.add_row(a.campaign, str(a.priority), display.words(a.why), a.detail)
    show(grid)


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
    zone = cfg.store.zone
    grid = table("day", "time", "campaign", "recipients", "held out", "deferred", "capped",
                 "sample (customer: occasion)", ids=("campaign", "day"),
                 title=f"What would be sent from {display.moment(first, zone)} to "
                       f"{display.moment(last, zone)}: {display.count(len(result.ticks), 'tick')}"
                       " of the schedule, replayed on a copy of the database (no email leaves, "
                       "nothing is written)")
    for day, ticks in result.days():
        for tick in ticks:
            c = tick.counts
            shown = "\n".join(f"{s['customer']}: {s['occasion']}" for s in tick.sample[:3])
            grid.add_row(day, f"{tick.at:%H:%M %Z}", tick.campaign_id, f"{c.planned:,}",
                         f"{c.held_out:,}", f"{c.deferred:,}", f"{c.capped:,}",
                         shown or display.MISSING)
    show(grid)
