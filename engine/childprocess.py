"""How the engine starts a fresh interpreter that runs one of its own functions.

Owns the command line (``python -c "from <module> import <function>; <function>()"``) and the
environment (this checkout's engine first on ``PYTHONPATH``, so the child runs the same code as
its parent, installed or not). Why not multiprocessing: it would run the caller's main script
again (``spawn``) or copy this process's threads and locks (``fork``). Users: the render workers
(delivery/renderworkers.py) and the predictions' refit (shop/refit.py). Must not start, feed or
wait for the process: its caller does, with what it sends on stdin.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = str(Path(__file__).resolve().parent.parent)  # the folder that holds the engine package


def command(module: str, function: str) -> list[str]:
    """The arguments that run ``module.function()`` in a fresh interpreter."""
    return [sys.executable, "-c", f"from {module} import {function}; {function}()"]


def environment() -> dict[str, str]:
    """This process's environment with this checkout's engine first on ``PYTHONPATH``."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join(
        filter(None, [ROOT, os.environ.get("PYTHONPATH")]))}
