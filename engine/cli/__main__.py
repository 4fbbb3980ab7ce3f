"""``python -m engine.cli``: the same command line as ``retain``."""

from . import app

app()
