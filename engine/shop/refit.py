"""Where the predictions are refitted: in a process of their own, unless this one has their
libraries already.

Fitting the predictions (predict.py) needs numpy and scipy: 61 MB imported, which a Python
process never gives back. A scheduler that refits once a day would then carry them for the
whole year while it plans and sends, and one ``retain run`` peaks at 185 MB instead of 110.
So when this process has not imported numpy yet, the refit runs in a child process, a fresh
interpreter (childprocess.py, as the render workers are started) that reads what to do on
stdin, writes the predictions and exits; this process waits for it. When numpy is
already here (``retain predict``, the test suite), the database lives in this process's memory
or the extra is not installed (the note says so), the refit runs here, as before.

Owns: choosing the process, starting the child, and logging its outcome here (the child's note
is in ``meta``). Must not fit, score or write predictions itself (predict.py does), nor read
the clock: ``now`` is passed on.
"""

from __future__ import annotations

import logging
import pickle
import subprocess
import sys
from datetime import datetime

from sqlalchemy import Engine

from engine import childprocess, db
from engine.config import Settings

log = logging.getLogger(__name__)


def refresh(engine: Engine, settings: Settings, now: datetime) -> None:
    """``predict.refresh`` in the process that suits: see the module's docstring."""
    from engine.shop import predict

    with engine.connect() as conn:
        if predict.current(conn, settings):
            return
    if "numpy" in sys.modules or _in_memory(engine) or not predict.available():
        with engine.begin() as conn:
            predict.refresh(conn, settings, now)
        return
    # The URL may hold a password: it travels on the child's stdin, never in its arguments.
    job = pickle.dumps((engine.url.render_as_string(hide_password=False), settings, now))
    child = subprocess.run(childprocess.command(__name__, "_refit"), input=job,
                           env=childprocess.environment(), stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE)
    with engine.connect() as conn:
        note = db.get_meta(conn, "predictions_note") or ""
        done = predict.current(conn, settings)
    if not done:  # the child died before writing (killed, out of memory): nothing to keep
        log.warning("no predictions as of %s: the refit's process ended with code %s: %s",
                    f"{now:%Y-%m-%d}", child.returncode, _last_line(child.stderr))
    elif note.startswith("no predictions"):  # the child's note, as predict.py would log it
        log.warning("%s", note)


def _refit() -> None:
    """The child's whole work: one refresh of the predictions, in its own transaction."""
    from engine.shop import predict

    url, settings, now = pickle.load(sys.stdin.buffer)
    logging.disable(logging.WARNING)  # the parent logs the outcome, once, in its own format
    engine = db.connect(url, check_revision=False, create=False)
    try:
        with engine.begin() as conn:
            predict.refresh(conn, settings, now)
    finally:
        engine.dispose()


def _last_line(stderr: bytes) -> str:
    lines = stderr.decode(errors="replace").strip().splitlines()
    return lines[-1] if lines else "no message"


def _in_memory(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite" and db.sqlite_file(engine) is None
