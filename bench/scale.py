"""The 1 M-customer figures of README "Performance": metrics, a segment, every shipped
campaign's plan and the report, on SQLite and PostgreSQL, with each step's peak memory.

For each size (``--sizes``, customers; ten orders each) and each database, generates the shop
(bench/_shopgen.py: SQL only), then runs each step in a fresh process of its own, so the peak
resident memory (VmHWM) printed beside it is that step's, not the generator's:

  - metrics, full rebuild (customer_metrics from every order, and the predictions beside it);
  - metrics after 1,000 new orders of 1,000 customers (the incremental path a scheduler tick
    takes: only the changed customers, then the population-relative scores);
  - a 4-condition segment (bench/segments.py's FOUR_CONDITIONS): count and a sample;
  - the plan of each shipped campaign in campaigns/ (runner.run without a transport: audience,
    decisions, offers, recorded in the ledger), in priority order as a run plans them, so the
    frequency cap shared by a run applies as it would;
  - the report over what was planned (results.build).

Prints one JSON line per step, then a Markdown table (step × database at the largest size) and
the peak memory of each step across sizes, which must stay flat. Figures are printed, never
asserted. Import speed is bench/import.py's; render, send and worker figures are
bench/render.py's and bench/workers.py's.

    python bench/scale.py                                  # 10 k, 100 k, 1 M customers, SQLite
    scripts/with-postgres.sh sh -c 'python bench/scale.py --postgres "$RETAIN_TEST_POSTGRES_URL"'
    python bench/scale.py --sizes 20000 --no-sqlite --postgres URL   # (a throwaway database)
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from _shopgen import NOW  # noqa: E402 - the generator's fixed "today"
from sqlalchemy import func, select, text  # noqa: E402

from engine import config, db, tables, yamlfile  # noqa: E402

# Each step imports what it uses inside step(), as `retain` does: a step's peak memory is then
# its own (the report's statistics and charts libraries alone take ~90 MB; the planner and
# the mail stack are not a metrics refresh's).


def settings_for(url: str):
    return config.load(ROOT / "config.yaml", database_url=url, environ={})


def campaign_ids() -> list[str]:
    """The shipped campaigns, in the order a run plans them (highest priority first)."""
    from engine.campaigns import validate

    chosen = validate.load(settings_for("sqlite://"))
    return [c.id for c in sorted(chosen, key=lambda c: -c.priority)]


def step(name: str, url: str) -> dict:
    """Run one step in this (fresh) process; its figures. Each step imports only what it uses,
    so its peak memory is its own (a metrics refresh does not load the planner and mail)."""
    settings, engine = settings_for(url), db.connect(url)
    detail: dict = {}
    started = time.perf_counter()
    if name == "metrics_full":
        from engine.shop import metrics

        with engine.begin() as conn:
            # Both caches forgotten: the metrics are rebuilt and the predictions refitted, also
            # on a shop whose metrics were rebuilt as of the same moment before (--steps).
            conn.execute(text("DELETE FROM meta WHERE key IN ('metrics_as_of', "
                              "'predictions_key')"))
        started = time.perf_counter()
        metrics.refresh(engine, settings, NOW)
    elif name == "metrics_incremental":
        from engine.shop import metrics

        at = NOW - timedelta(minutes=5)
        with engine.begin() as conn:
            # Ids new on every run (--steps measures the same shop again).
            conn.execute(text(
                "INSERT INTO orders (external_id, customer_id, created_at, local_date, status, "
                "total_cents, currency) SELECT 'late-' || :run || '-' || id, id, :at, :day, "
                "'paid', 4200, "
                "'EUR' FROM customers WHERE id % (SELECT count(*) / 1000 FROM customers) = 0 "
                "LIMIT 1000"),
                {"at": at if engine.dialect.name != "sqlite"
                 else at.strftime("%Y-%m-%d %H:%M:%S.%f"), "day": NOW.date(),
                 "run": str(time.time_ns())})
            db.bump_data_version(conn)
        started = time.perf_counter()
        metrics.refresh(engine, settings, NOW + timedelta(minutes=1))
    elif name == "segment":
        from segments import FOUR_CONDITIONS

        from engine.shop import segments

        segment = segments.parse(yamlfile.parse(FOUR_CONDITIONS, "segment"), "segment")
        detail["count"] = segments.evaluate(engine, settings, segment, NOW)["count"]
        again = time.perf_counter()  # the same question again: the database's cache is warm
        segments.evaluate(engine, settings, segment, NOW)
        detail["again_s"] = round(time.perf_counter() - again, 2)
        started += time.perf_counter() - again  # "seconds" is the first answer's
    elif name.startswith("plan:"):
        from engine.campaigns import validate
        from engine.delivery import runner

        campaign = validate.load(settings, [name.split(":", 1)[1]])
        report = runner.run(engine, settings, campaign, NOW + timedelta(minutes=1), None)
        detail = {k: v for c in report.as_dict()["campaigns"]
                  for k, v in c.items() if isinstance(v, int) and v}
    elif name == "report":
        from engine.views import results

        report = results.build(engine, settings, NOW + timedelta(days=1))
        detail["campaigns"] = len(report.as_dict()["campaigns"])
    else:
        raise SystemExit(f"unknown step {name}")
    seconds = time.perf_counter() - started
    engine.dispose()
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kilobytes
    # A process the step started (the predictions' refit, engine/shop/refit.py) is a process
    # of its own: its peak is printed beside the step's, the larger of the two in the tables.
    child_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    if child_mb:
        detail["own_mb"], detail["child_mb"] = round(peak_mb), round(child_mb)
    return {"step": name, "seconds": round(seconds, 2), "peak_mb": round(max(peak_mb, child_mb)),
            **detail}


def apart(name: str, url: str) -> dict:
    done = subprocess.run([sys.executable, __file__, "--step", name, "--url", url],
                          capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"step {name} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def measure(label: str, url: str, size: int, only: list[str] | None) -> list[dict]:
    rows = []
    for name in ["metrics_full", "metrics_incremental", "segment",
                 *[f"plan:{c}" for c in campaign_ids()], "report"]:
        if only and name not in only:
            continue
        row = {"db": label, "customers": size, **apart(name, url)}
        print(json.dumps(row), flush=True)
        rows.append(row)
    return rows


def count_customers(url: str) -> int:
    engine = db.connect(url, check_revision=False)
    try:
        with engine.connect() as conn:
            return conn.execute(select(func.count()).select_from(tables.Customer)).scalar_one()
    except Exception:  # no shop there yet
        return -1
    finally:
        engine.dispose()


def generate(size: int, sqlite_path: Path | None, postgres: str | None) -> None:
    command = [sys.executable, str(ROOT / "bench" / "_shopgen.py"), "--customers", str(size)]
    command += ["--db", str(sqlite_path)] if sqlite_path else ["--postgres", postgres]
    started = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    print(f"# generated {size:,} customers, {size * 10:,} orders "
          f"({'SQLite' if sqlite_path else 'PostgreSQL'}) in "
          f"{time.perf_counter() - started:.0f} s", flush=True)


def table(rows: list[dict]) -> None:
    largest = max(r["customers"] for r in rows)
    names = list(dict.fromkeys(r["step"] for r in rows))
    dbs = list(dict.fromkeys(r["db"] for r in rows))
    at = {(r["db"], r["customers"], r["step"]): r for r in rows}
    print(f"\n| step ({largest:,} customers, {largest * 10:,} orders) | "
          + " | ".join(dbs) + " |")
    print("| --- |" + " --- |" * len(dbs))
    for name in names:
        cells = []
        for label in dbs:
            r = at.get((label, largest, name))
            extra = ", ".join(f"{k} {v:,}" for k, v in r.items()
                              if k not in ("db", "customers", "step", "seconds", "peak_mb"))
            cells.append(f"{r['seconds']:.1f} s, {r['peak_mb']} MB" + (f" ({extra})" if extra
                                                                       else "") if r else "—")
        print(f"| {name} | " + " | ".join(cells) + " |")
    sizes = sorted({r["customers"] for r in rows})
    print("\npeak memory of each step's process, MB, by customers:")
    print("| step | " + " | ".join(f"{label} {s:,}" for label in dbs for s in sizes) + " |")
    print("| --- |" + " --- |" * (len(dbs) * len(sizes)))
    for name in names:
        print(f"| {name} | " + " | ".join(
            str(at[(label, s, name)]["peak_mb"]) if (label, s, name) in at else "—"
            for label in dbs for s in sizes) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000,1000000",
                        help="customer counts, comma-separated (ten orders each)")
    parser.add_argument("--postgres", metavar="URL", help="also on this (emptied) database")
    parser.add_argument("--no-sqlite", action="store_true")
    parser.add_argument("--folder", type=Path, default=ROOT / "bench",
                        help="where the SQLite files go (scale-<N>.db, reused when present)")
    parser.add_argument("--steps", help="only these steps, comma-separated (e.g. "
                        "metrics_full,metrics_incremental), on the shop already there")
    parser.add_argument("--step", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.step:
        print(json.dumps(step(args.step, args.url)))
        return
    rows: list[dict] = []
    only = args.steps.split(",") if args.steps else None
    for size in [int(s) for s in args.sizes.split(",")]:
        # Afresh, unless --steps: the steps write metrics, plans and ledger.
        if not args.no_sqlite:
            path = args.folder / f"scale-{size}.db"
            if not only or count_customers(f"sqlite:///{path}") != size:
                generate(size, path, None)
            rows += measure("SQLite", f"sqlite:///{path}", size, only)
        if args.postgres:
            if not only or count_customers(args.postgres) != size:
                generate(size, None, args.postgres)
            rows += measure("PostgreSQL", args.postgres, size, only)
    table(rows)


if __name__ == "__main__":
    main()
