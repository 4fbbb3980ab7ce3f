"""Evaluation on a real transaction log: CDNOW, as shipped inside the ``lifetimes`` package.

CDNOW (Fader & Hardie's benchmark): every purchase of the 23,570 customers who first bought
CDs at CDNOW in January-March 1997, up to June 1998. ``lifetimes`` ships the whole log
(``CDNOW_master.txt``) and a 1-in-10 sample (``CDNOW_sample.txt``); nothing is downloaded.
The log goes through the real import (``retain import customers|orders`` on CSV files), then
``retain predict evaluate``'s function runs on it; a plain Pareto/NBD (lifetimes' reference
implementation, its P(no purchase in the horizon) as the churn score) is scored beside it on
the same histories. Figures are printed (README "Predictions" quotes them), never asserted
here; tests/shop/test_predict.py runs the sample through this script.

    python bench/cdnow.py                       # the whole log, split 1997-10-01, 90 days
    python bench/cdnow.py --sample --json
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import tempfile
import time
import warnings
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine import config, db  # noqa: E402 - after the path fix: runs from a checkout
from engine.shop import importer, predict  # noqa: E402
from engine.views import predictions  # noqa: E402

NOW = datetime(1998, 7, 1, tzinfo=UTC)  # the log ends on 1998-06-30


def log_path(sample: bool):
    from importlib.resources import files

    return files("lifetimes.datasets") / ("CDNOW_sample.txt" if sample else "CDNOW_master.txt")


def write_csvs(folder: Path, sample: bool) -> tuple[Path, Path]:
    """The log as the generic import format: one customer file, one order a purchase row."""
    rows = []
    for line in log_path(sample).read_text().splitlines():
        cells = line.split()
        if not cells or not cells[-1].replace(".", "").isdigit():
            continue  # the master file's header
        customer, day, amount = cells[0], cells[-3], cells[-1]
        rows.append((customer, f"{day[:4]}-{day[4:6]}-{day[6:]}", amount))
    customers, orders = folder / "customers.csv", folder / "orders.csv"
    with customers.open("w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["customer_id", "email"])
        for cid in sorted({r[0] for r in rows}):
            out.writerow([cid, f"cdnow-{cid}@example.com"])
    with orders.open("w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["order_id", "customer_id", "created_at", "total"])
        for n, (cid, day, amount) in enumerate(rows):
            out.writerow([f"o{n}", cid, day, amount])
    return customers, orders


def pareto_nbd(engine, settings, split: date, horizon: int) -> tuple[object, dict]:
    """Plain Pareto/NBD (lifetimes) on the same histories: P(no purchase) as the score."""
    import numpy as np
    from lifetimes import ParetoNBDFitter
    from sqlalchemy import select

    from engine.shop.counted import counted

    moment = datetime.combine(split, datetime.min.time(), tzinfo=settings.store.zone)
    with engine.connect() as conn:
        history, _ = predict.histories(conn, settings, moment - timedelta(microseconds=1),
                                       horizon)
        end = moment + timedelta(days=horizon)
        orders = predict.orders
        back = conn.execute(select(orders.c.customer_id).distinct().where(
            counted(end), orders.c.created_at >= moment)).scalars().all()
    left = ~np.isin(history.customer_id, np.array(back, dtype=np.int64))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = ParetoNBDFitter().fit(history.x, history.t_x, history.T)
        quiet = np.asarray(model.conditional_probability_of_n_purchases_up_to_time(
            0, horizon, history.x, history.t_x, history.T))
    return predictions.measure("pareto_nbd_p_no_order", "P(no order) >= 0.5", quiet,
                               quiet >= 0.5, left), dict(model.params_)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sample", action="store_true", help="the 1-in-10 sample (2,357)")
    parser.add_argument("--split", default="1997-10-01")
    parser.add_argument("--horizon", type=int, default=90)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--no-pareto", action="store_true", help="skip the lifetimes baseline")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        text = (ROOT / "config.yaml").read_text()
        (folder / "config.yaml").write_text(
            text.replace("sqlite:///retain.db", "sqlite:///cdnow.db"))
        settings = config.load(folder / "config.yaml", environ={})
        settings = settings.model_copy(update={"store": settings.store.model_copy(
            update={"timezone": "UTC"})})
        engine = db.connect(settings.database.url)
        started = time.perf_counter()
        for kind, path in zip(("customers", "orders"), write_csvs(folder, args.sample),
                              strict=True):
            importer.import_file(engine, settings, kind, path, "generic", now=NOW)
        loaded = time.perf_counter() - started
        split = date.fromisoformat(args.split)
        started = time.perf_counter()
        report = predictions.evaluate(engine, settings, split, NOW, args.horizon)
        report["seconds"] = {"import": round(loaded, 1),
                             "evaluate": round(time.perf_counter() - started, 1)}
        if not args.no_pareto:
            started = time.perf_counter()
            row, params = pareto_nbd(engine, settings, split, args.horizon)
            report["scores"].append(row)
            report["pareto_nbd"] = params
            report["seconds"]["pareto_nbd"] = round(time.perf_counter() - started, 1)
        engine.dispose()
    report["log"] = "CDNOW_sample.txt" if args.sample else "CDNOW_master.txt"
    if args.json:
        print(json.dumps(report, indent=2, default=float))
        return
    print(f"{report['log']} (lifetimes): {report['customers']} customers before "
          f"{report['split']}, {report['leavers']} placed no order in the "
          f"{report['horizon_days']} days from it; {report['seconds']}")
    print(f"{'score':24} {'flags when':22} {'prec':>6} {'recall':>6} {'error':>6} {'miss':>6} "
          f"{'F1':>6} {'AUC':>6}")
    for r in report["scores"]:
        print(f"{r['score']:24} {r['rule']:22} {r['precision']:6.3f} {r['recall']:6.3f} "
              f"{r['error_rate']:6.3f} {r['miss_rate']:6.3f} {r['f1']:6.3f} {r['auc']:6.3f}")
    print("model:", json.dumps(report["model"], default=lambda v: round(float(v), 3)))


if __name__ == "__main__":
    main()
