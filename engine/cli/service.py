"""The unattended service: scheduler, serve, status, pause, resume."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

import typer

from engine import display
from engine.errors import RetainError

from . import (
    AsJson,
    Host,
    Port,
    app,
    engine_for,
    err,
    out,
    print_json,
    settings,
    show,
    table,
    transport_for,
    user_errors,
)


@app.command("scheduler")
@user_errors
def scheduler_command(
    reload_every: Annotated[float | None, typer.Option(
        "--reload-every", help="Re-read campaign files every N seconds (also on SIGHUP).")] = None,
    grace_hours: Annotated[float, typer.Option(
        "--grace-hours", help="Catch up a tick missed while down, if at most this old.")] = 6,
    standby: Annotated[bool, typer.Option(
        "--standby", help="If another scheduler leads, wait and take over when it stops.")
    ] = False,
    plan_only: Annotated[bool, typer.Option(
        "--plan-only", help="Plan on schedule and send nothing: `retain worker`s send.")] = False,
) -> None:
    """Run every enabled campaign on its schedule, until SIGTERM. Example: retain scheduler"""
    import logging

    from engine.service import leader
    from engine.service.scheduler import Scheduler

    # An unattended service reports through its log (stderr); no addresses or secrets are logged.
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: "
                        "%(message)s")
    cfg = settings()
    engine = engine_for(cfg)
    service = Scheduler(engine, cfg, None if plan_only else lambda: transport_for(cfg),
                        reload_every=reload_every,
                        grace=timedelta(hours=grace_hours))
    service.start()
    if not service.leading and not standby:
        holder = leader.current(engine)
        service.stop()
        raise RetainError(
            f"another scheduler leads ({holder.holder if holder else '?'}, lease until "
            f"{display.moment(holder.expires_at, cfg.store.zone) if holder else '?'}); only one "
            "may run on a database. "
            "Stop it first, or start this one with --standby to take over when it stops")
    service.install_signals()
    err.print(f"scheduler {'leading' if service.leading else 'on standby'}; "
              f"{display.count(len(service.next_runs()), 'campaign')} scheduled; SIGTERM stops it",
              markup=False)
    try:
        service.wait()
    finally:
        service.stop()
    err.print("scheduler stopped", markup=False)


@app.command("serve")
@user_errors
def serve_command(host: Host = "127.0.0.1", port: Port = 8080) -> None:
    """Serve the web endpoints: Shopify webhooks and one-click unsubscribe, until Ctrl-C.

    Example: retain serve --port 8080
    """
    import logging

    from engine.service import webapp

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: "
                        "%(message)s")
    cfg = settings()
    server = webapp.server(cfg, engine_for(cfg), host, port, lambda: datetime.now(UTC))
    err.print(f"serving on http://{host}:{port}/: POST {webapp.WEBHOOKS_PATH} for Shopify "
              f"webhooks, every other path the one-click unsubscribe (put it behind "
              f"{cfg.unsubscribe.url}); Ctrl-C stops it", markup=False)
    with server:
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass


@app.command("status")
@user_errors
def status_command(as_json: AsJson = False) -> None:
    """The leader, next run of each campaign, the last run, paused campaigns.

    Example: retain status
    """
    from engine.service import status

    cfg = settings()
    data = status.collect(engine_for(cfg), cfg, datetime.now(UTC))
    if as_json:
        print_json(data)
        return
    zone = cfg.store.zone
    lead = data["leader"]
    out.print(f"leader: {lead['holder']} (lease until {display.moment(lead['expires_at'], zone)})"
              if lead else "leader: none (no scheduler running)", markup=False)
    grid = table("campaign", "enabled", "schedule", "next run", "last fired", "paused",
                 ids=("campaign",))
    for c in data["campaigns"]:
        grid.add_row(c["id"], display.yes_no(c["enabled"]), display.blank(c["schedule"]),
                     display.moment(c["next_run"], zone), display.moment(c["last_fire_at"], zone),
                     c["paused"] or "")
    show(grid)
    last = data["last_run"]
    if last:
        done = ", ".join(f"{n:,} {display.words(status)}" for status, n in last["summary"].items())
        out.print(f"last run {last['id']} finished {display.moment(last['finished_at'], zone)}: "
                  f"{done or 'nothing to do'}", markup=False)
    if data["sources"]:
        grid = table("source", "kind", "last data", "lag", "rows (last, total)", "last error",
                     ids=("source",))
        for s in data["sources"]:
            grid.add_row(s["name"], s["kind"], display.moment(s["last_success"], zone)
                         if s["last_success"] else "never", s["lag"] or display.MISSING,
                         f"{s['rows_applied']:,}, {s['rows_total']:,}", s["last_error"] or "")
        show(grid)
    if data["stale"]:
        err.print(f"campaigns wait: {data['stale']}", markup=False)


@app.command("pause")
@user_errors
def pause_command(campaign: Annotated[str, typer.Argument(help="Campaign id.")],
                  reason: Annotated[str, typer.Option(help="Why (shown by status).")] = "paused "
                  "by hand") -> None:
    """Stop a campaign from running until resumed. Example: retain pause winback"""
    from engine.campaigns import validate
    from engine.service import schedule

    cfg = settings()
    known = [c.id for c in validate.check(cfg)]
    schedule.pause(engine_for(cfg), campaign, reason, datetime.now(UTC), known)
    out.print(f"{campaign} is paused; `retain resume {campaign}` starts it again", markup=False)


@app.command("resume")
@user_errors
def resume_command(campaign: Annotated[str, typer.Argument(help="Campaign id.")]) -> None:
    """Let a paused campaign run again. Example: retain resume winback"""
    from engine.service import schedule

    cfg = settings()
    if schedule.resume(engine_for(cfg), campaign):
        out.print(f"{campaign} resumed", markup=False)
    else:
        out.print(f"{campaign} was not paused", markup=False)
