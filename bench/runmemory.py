"""Peak memory of one whole `retain run` process that rebuilds the metrics and refits the
predictions (README "Performance", targets not met).

On bench/scale.py's shop of N customers (bench/_shopgen.py, ``runmemory-N.db``, made when
absent; its own file, with an empty ledger), for each size: a copy of the shop with its
metrics and predictions caches forgotten, then ``retain run --allow-stale`` (the
command line itself, in a fresh process) at the generator's "today" plus a minute, every
shipped campaign, sending through SMTP into the minimal sink of bench/smtp_sink.py. Prints the
run's peak resident memory (ru_maxrss of its own process: the render workers and the sink are
apart), its largest child's (the predictions' refit, engine/shop/refit.py, or a render
worker), its seconds and the messages sent. Figures are printed, never asserted.

    python bench/runmemory.py --sizes 10000,100000 --folder /tmp/shops
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from _shopgen import NOW  # noqa: E402 - the generator's fixed "today"


def child(arguments: list[str]) -> None:
    """`retain` with these arguments in this process; then its peak memory and time."""
    from engine.cli import app

    started = time.perf_counter()
    app(arguments, prog_name="retain", standalone_mode=False)
    seconds = time.perf_counter() - started
    print(json.dumps({"seconds": round(seconds, 1), "peak_mb": round(
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        # its largest child: the predictions' refit (engine/shop/refit.py) or a render worker
        "child_peak_mb": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)}))


def measure(shop: Path, folder: Path) -> dict:
    from smtp import server_process

    for name in ("campaigns", "templates"):
        shutil.copytree(ROOT / name, folder / name, dirs_exist_ok=True)
    config = folder / "config.yaml"  # the shipped one, without its sending rate limit
    config.write_text((ROOT / "config.yaml").read_text().replace(
        "rate_per_second: 200", "rate_per_second: 1000000"))
    run = folder / "run.db"
    with sqlite3.connect(shop) as source, sqlite3.connect(run) as copy:
        source.backup(copy)
        copy.execute("DELETE FROM meta WHERE key IN ('metrics_as_of', 'predictions_key')")
    copy.close()
    at = (NOW + timedelta(minutes=1)).isoformat()
    with server_process("sink") as port:
        done = subprocess.run(
            [sys.executable, __file__, "--child", "--config", str(config), "--db",
             f"sqlite:///{run}", "run", "--as-of", at, "--allow-stale", "--json"],
            capture_output=True, text=True,
            env={**os.environ, "RETAIN_SMTP_PORT": str(port)})
    if done.returncode:
        raise SystemExit(f"retain run failed:\n{done.stderr}")
    *report, figures = done.stdout.splitlines()  # the run's report, then the child's line
    sent = sum(c["sent"] for c in json.loads("\n".join(report))["campaigns"])
    return {**json.loads(figures), "sent": sent}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--sizes", default="10000,100000",
                        help="customer counts, comma-separated (ten orders each)")
    parser.add_argument("--folder", type=Path, default=ROOT / "bench",
                        help="where the shops are kept (runmemory-<N>.db, made when absent)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args, rest = parser.parse_known_args()
    if args.child:
        child(rest)
        return
    for size in [int(s) for s in args.sizes.split(",")]:
        shop = args.folder / f"runmemory-{size}.db"
        if not shop.exists():
            subprocess.run([sys.executable, str(ROOT / "bench" / "_shopgen.py"), "--customers",
                            str(size), "--db", str(shop)], check=True, capture_output=True)
        with tempfile.TemporaryDirectory(prefix="retain-runmemory-") as tmp:
            row = {"customers": size, **measure(shop, Path(tmp))}
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
