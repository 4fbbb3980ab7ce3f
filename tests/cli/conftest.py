"""How the command-line tests run ``retain``: in-process (CliRunner), or as a real process in a
real terminal of a given width (a pseudo-terminal), as a person at a keyboard would."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import struct
import subprocess
import sys
import termios
from pathlib import Path

import pytest
from typer.testing import CliRunner

from engine.cli import app

RETAIN = Path(sys.executable).parent / "retain"
_ESCAPES = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def invoke(config_path: Path, *args: str):
    return CliRunner().invoke(app, ["--config", str(config_path), *args])


def fresh_environment(**extra: str) -> dict[str, str]:
    """A new shell's environment: none of retain's variables, the virtualenv not activated."""
    venv = str(RETAIN.parent)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("RETAIN_") and k not in ("COLUMNS", "LINES", "VIRTUAL_ENV")}
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if p != venv)
    return {**env, **extra}


def in_terminal(columns: int, *args: str, cwd: Path, rows: int = 50) -> tuple[int, str]:
    """Run ``retain ARGS`` with stdout and stderr on a terminal ``columns`` wide; returns the
    exit code and what the terminal showed, without colour codes."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
    env = fresh_environment(TERM="xterm-256color")
    process = subprocess.Popen([str(RETAIN), *args], stdin=slave, stdout=slave, stderr=slave,
                               cwd=cwd, env=env, close_fds=True)
    os.close(slave)
    shown = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        shown += chunk
    os.close(master)
    code = process.wait()
    return code, _ESCAPES.sub("", shown.decode("utf-8", "replace")).replace("\r\n", "\n")


@pytest.fixture
def cli(config_path):
    """``cli("plan", "--json")``: the command run in-process on the test's config.yaml."""
    return lambda *args: invoke(config_path, *args)
