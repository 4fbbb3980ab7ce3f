"""`make demo` ends with commands to look closer: each works as printed from a fresh shell (no
virtualenv activated, no RETAIN_* variables), on the demo's database."""

from __future__ import annotations

import shlex
import subprocess

from tests.cli.conftest import RETAIN, fresh_environment


def test_the_demo_prints_commands_that_work_from_a_fresh_shell(project):
    env = fresh_environment(BROWSER="true")  # `--open` runs `true FILE` instead of a browser
    demo = subprocess.run(
        [str(RETAIN), "--config", "config.yaml", "--db", "sqlite:///demo.db", "demo",
         "--customers", "300", "--as-of", "2026-06-15"],
        cwd=project, env=env, capture_output=True, text=True, timeout=300)
    assert demo.returncode == 0, demo.stderr
    printed = demo.stdout.split("Look closer:", 1)[1].splitlines()
    commands = [line.strip() for line in printed if line.startswith("  ")]
    assert len(commands) >= 4, demo.stdout
    for command in commands:
        done = subprocess.run(shlex.split(command), cwd=project, env=env, capture_output=True,
                              text=True, timeout=300)
        assert done.returncode == 0, f"{command}\n{done.stdout}\n{done.stderr}"
        assert "no database" not in done.stderr
    assert not (project / "test.db").exists()  # none of them opened config.yaml's database
