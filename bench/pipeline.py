"""Messages per second through the whole pipeline: plan, record, render, MIME, send.

On the synthetic demo shop (engine.demo.build_shop, 20,000 customers by default, every campaign
in campaigns/), prints:
  - each stage alone, on one core: planning (audience + decisions), recording the plan in the
    ledger, building the render context + rendering, building the MIME bytes, and sending
    ready messages through SmtpTransport into the minimal sink (one connection);
  - the whole run, ``runner.run`` from an empty ledger to the last reply, into
    (a) the minimal asyncio sink of bench/smtp_sink.py over loopback (SmtpTransport), with
        N = 0, 1 and one-per-core render worker processes, and
    (b) MemoryTransport (no network),
    with messages/s, when the first page went out (the end of planning, roughly), the peak
    memory (max RSS) of the run's process, and the CPU each process spent per message: the
    run's, its render workers', the sink's. On a shared machine the wall-clock rate moves with
    the other jobs; CPU per message does much less, and 1000 / (CPU ms per message) × cores is
    the rate the same work would reach with the cores to itself.
The shop and its metrics are built once (timed, reported apart: they are not per-run work);
each measurement then runs in a fresh child process on its own copy of that database.

    .venv/bin/python bench/pipeline.py [--customers 20000] [--repeat 1] [--connections 4]
                                       [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import importlib.util
import json
import os
import pstats
import resource
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from engine import config, db
from engine.campaigns import planner, validate
from engine.delivery import compose, ledger, runner
from engine.demo import showcase as demo
from engine.shop import metrics
from engine.transport import MemoryTransport, OutgoingMessage, SendStatus
from engine.transport.smtp import SmtpTransport

ROOT = Path(__file__).resolve().parent.parent
NOW = datetime(2026, 6, 15, 12, 0, tzinfo=UTC)
SEND_SAMPLE = 3000  # messages kept in memory for the "send alone" stage


def _smtp_bench():
    """bench/smtp.py (its sink process helper), loaded by path: bench/ is not a package."""
    spec = importlib.util.spec_from_file_location("bench_smtp", Path(__file__).parent / "smtp.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def settings_in(folder: Path, database: str) -> config.Settings:
    text = (ROOT / "config.yaml").read_text().replace("sqlite:///retain.db",
                                                      f"sqlite:///{database}")
    (folder / "config.yaml").write_text(text)
    return config.load(folder / "config.yaml", environ={})


def prepare(folder: Path, customers: int) -> None:
    for name in ("campaigns", "templates"):
        shutil.copytree(ROOT / name, folder / name)
    settings = settings_in(folder, "shop.db")
    engine = db.connect(settings.database.url)
    start = time.perf_counter()
    stats = demo.build_shop(engine, settings, NOW, customers=customers)
    built = time.perf_counter() - start
    start = time.perf_counter()
    metrics.summary(engine, settings, NOW)
    computed = time.perf_counter() - start
    engine.dispose()
    print(f"shop: {stats.customers:,} customers, {stats.orders:,} orders; built in {built:.1f} s, "
          f"metrics in {computed:.1f} s (not counted below)", flush=True)


def fresh_copy(folder: Path) -> None:
    """run.db: a copy of shop.db with an empty ledger (sqlite3's backup copes with WAL)."""
    target = folder / "run.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{target}{suffix}").unlink(missing_ok=True)
    with sqlite3.connect(folder / "shop.db") as source, sqlite3.connect(target) as copy:
        source.backup(copy)
    copy.close()


# -- child process: one measurement ------------------------------------------------------------

def child(folder: Path, scenario: str, profile: bool, connections: int) -> dict:
    settings = settings_in(folder, "run.db")
    settings = settings.model_copy(update={"smtp": settings.smtp.model_copy(
        update={"max_connections": connections})})
    engine = db.connect(settings.database.url)
    campaigns = validate.load(settings)
    profiler = cProfile.Profile() if profile else None
    if profiler:
        profiler.enable()
    if scenario == "stages":
        figures = stages(engine, settings, campaigns)
    else:
        figures = whole_run(engine, settings, campaigns, scenario)
    if profiler:
        profiler.disable()
        pstats.Stats(profiler, stream=sys.stderr).sort_stats("tottime").print_stats(30)
    figures["peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return figures


def whole_run(engine, settings, campaigns, scenario: str) -> dict:
    scenario, processes = scenario.split(":")
    options = {"render_processes": int(processes)}
    if scenario == "sink":
        with _smtp_bench().server_process("sink") as port:
            smtp = settings.smtp.model_copy(update={"port": port, "rate_per_second": 1e9})
            local = settings.model_copy(update={"smtp": smtp})
            with SmtpTransport(smtp, local_hostname="bench.local") as transport:
                figures = _timed_run(engine, local, campaigns, transport, **options)
            before = _children_cpu()
        # The sink's own CPU, counted once it has exited.
        figures["sink_cpu_ms"] = (_children_cpu() - before) * 1000 / figures["messages"]
        return figures
    transport = MemoryTransport()
    # Keep memory flat: the bench needs the count, not the messages.
    return _timed_run(engine, settings, campaigns, transport,
                      progress=lambda _n: transport.sent.clear(), **options)


def _timed_run(engine, settings, campaigns, transport, progress=None, **options) -> dict:
    first_page: list[float] = []

    def on_progress(n: int) -> None:  # the first page handed to the senders: planning is over
        if not first_page:
            first_page.append(time.perf_counter())
        if progress:
            progress(n)

    start, cpu, workers = time.perf_counter(), time.process_time(), _children_cpu()
    report = runner.run(engine, settings, campaigns, NOW, transport, progress=on_progress,
                        **options)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    workers = _children_cpu() - workers  # the render workers, waited for by the run
    sent = sum(c.sent for c in report.campaigns.values())
    counts = ledger.counts(engine)
    assert all(status != "sending" for c in counts.values() for status in c), counts
    return {"messages": sent, "seconds": seconds, "rate": sent / seconds,
            "cpu_ms": cpu * 1000 / sent, "workers_cpu_ms": workers * 1000 / sent,
            "sink_cpu_ms": 0.0, "planning": first_page[0] - start}


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def stages(engine, settings, campaigns) -> dict:
    out: dict[str, float] = {}
    start = time.perf_counter()
    plans = {c.id: [b for b in planner.plan(engine, settings, c, NOW)] for c in campaigns}
    rows = sum(len(b) for bs in plans.values() for b in bs)
    out["plan_seconds"] = time.perf_counter() - start
    start = time.perf_counter()
    for c in campaigns:
        ledger.record_plan(engine, iter(plans[c.id]), NOW)
    out["record_seconds"] = time.perf_counter() - start
    out["plan_rows"] = rows
    del plans
    composer = compose.Composer(settings, {c.id: c for c in campaigns}, engine)
    renderer, by_id = composer.renderer, composer.campaigns
    render_s = mime_s = 0.0
    count = 0
    sample: list[OutgoingMessage] = []
    ids = ledger.due(engine, [c.id for c in campaigns], NOW, limit=10**9)
    for first in range(0, len(ids), runner.PAGE):
        with engine.connect() as conn:
            page = compose.fetch(conn, ids[first:first + runner.PAGE])
        for delivery_id, campaign_id, customer_id, payload in page.rows:
            t0 = time.perf_counter()
            campaign, customer = by_id[campaign_id], page.customers[customer_id]
            campaign = compose.for_message(campaign, payload)  # a flow step's own template
            context = compose.context(settings, campaign, customer, payload,
                                      page.codes.get(delivery_id), NOW, page.products)
            rendered = renderer.render(campaign.template, compose.subject_for(campaign, payload),
                                       context)
            t1 = time.perf_counter()
            message_id = compose.message_id(settings, delivery_id, campaign_id)
            data = compose.mime(settings, rendered, customer, message_id, campaign_id, NOW)
            t2 = time.perf_counter()
            render_s += t1 - t0
            mime_s += t2 - t1
            count += 1
            if len(sample) < SEND_SAMPLE:
                sample.append(OutgoingMessage(composer.mail_from, customer["email"], data,
                                              message_id))
    out.update(messages=count, render_seconds=render_s, mime_seconds=mime_s)
    with _smtp_bench().server_process("sink") as port:
        smtp = settings.smtp.model_copy(update={"port": port, "rate_per_second": 1e9,
                                                "max_connections": 1})
        with SmtpTransport(smtp, local_hostname="bench.local") as transport:
            start = time.perf_counter()
            for message in sample:
                assert transport.send(message).status is SendStatus.sent
            out["send_seconds"] = time.perf_counter() - start
    out["send_messages"] = len(sample)
    return out


# -- parent ----------------------------------------------------------------------------------

def measure(folder: Path, scenario: str, profile: bool, connections: int) -> dict:
    fresh_copy(folder)
    command = [sys.executable, __file__, "--child", scenario, "--folder", str(folder),
               "--connections", str(connections)]
    if profile:
        command.append("--profile")
    done = subprocess.run(command, check=True, stdout=subprocess.PIPE, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=1, help="runs per whole-run figure")
    parser.add_argument("--profile", action="store_true", help="cProfile each child (stderr)")
    parser.add_argument("--connections", type=int, default=4, help="smtp.max_connections")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(Path(args.folder), args.child, args.profile, args.connections)))
        return
    with tempfile.TemporaryDirectory(prefix="retain-bench-") as tmp:
        folder = Path(tmp)
        prepare(folder, args.customers)
        s = measure(folder, "stages", args.profile, args.connections)
        n = s["messages"]
        print(f"\nstages alone ({n:,} messages, {s['plan_rows']:,} ledger rows; one core):")
        print(f"  {'plan (audience + decisions)':36} {n / s['plan_seconds']:10,.0f} msg/s "
              f"({s['plan_seconds']:.2f} s)")
        print(f"  {'record the plan in the ledger':36} {n / s['record_seconds']:10,.0f} msg/s "
              f"({s['record_seconds']:.2f} s)")
        print(f"  {'context + render':36} {n / s['render_seconds']:10,.0f} msg/s")
        print(f"  {'MIME bytes':36} {n / s['mime_seconds']:10,.0f} msg/s")
        print(f"  {'send ready messages, 1 connection':36} "
              f"{s['send_messages'] / s['send_seconds']:10,.0f} msg/s (into the sink)")
        print(f"  {'peak memory':36} {s['peak_mb']:10,.0f} MB")
        print("\nwhole run (runner.run: plan + record + claim/render/send/record), "
              f"median of {args.repeat}:")
        cores = os.cpu_count() or 1
        print(f"  ({cores} cores; smtp.max_connections {args.connections} sender threads; "
              "N render processes)")
        for scenario, label in [(f"sink:{n}", f"SmtpTransport → sink, N={n}")
                                for n in sorted({0, 1, cores})] + [
                                (f"memory:{cores}", f"MemoryTransport, N={cores}")]:
            runs = [measure(folder, scenario, args.profile, args.connections)
                    for _ in range(args.repeat)]
            rate = statistics.median(r["rate"] for r in runs)
            seconds = statistics.median(r["seconds"] for r in runs)
            peak = max(r["peak_mb"] for r in runs)
            median = {key: statistics.median(r[key] for r in runs) for key in runs[0]}
            cpu = median["cpu_ms"] + median["workers_cpu_ms"] + median["sink_cpu_ms"]
            print(f"  {label:28} {rate:6,.0f} msg/s  ({runs[0]['messages']:,} in {seconds:.1f} s, "
                  f"first page sent at {median['planning']:.1f} s; peak {peak:,.0f} MB)\n"
                  f"  {'':28} CPU ms/msg: run {median['cpu_ms']:.2f} + render workers "
                  f"{median['workers_cpu_ms']:.2f} + sink {median['sink_cpu_ms']:.2f} = "
                  f"{cpu:.2f} → {cores * 1000 / cpu:,.0f} msg/s if {cores} cores were ours",
                  flush=True)


if __name__ == "__main__":
    main()
