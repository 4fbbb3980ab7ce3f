"""A corpus of broken campaign, template and config files: each is refused with its file, line
and a sentence a marketer understands, and nothing is written to the database.

Each corpus file starts with ``# expect: LINE[:COLUMN] message``; the test copies the repository's
project into a temporary folder, puts the broken file in place and runs the real commands.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from engine.cli import app

ROOT = Path(__file__).resolve().parent.parent
CORPUS = Path(__file__).resolve().parent / "data" / "broken"
EXPECT = re.compile(r"^# expect: (\d+)(?::(\d+))? (.+)$")


def expectation(path: Path) -> tuple[int, int | None, str]:
    first = path.read_text().splitlines()[0]
    match = EXPECT.match(first)
    assert match, f"{path} must start with '# expect: LINE[:COL] message'"
    return int(match[1]), int(match[2]) if match[2] else None, match[3]


def make_project(tmp_path: Path) -> Path:
    for folder in ("templates",):
        shutil.copytree(ROOT / folder, tmp_path / folder)
    (tmp_path / "campaigns").mkdir()
    text = (ROOT / "config.yaml").read_text().replace("sqlite:///retain.db", "sqlite:///shop.db")
    (tmp_path / "config.yaml").write_text(text)
    return tmp_path


def invoke(project: Path, *args: str):
    return CliRunner().invoke(app, ["--config", str(project / "config.yaml"), *args])


def assert_located(output: str, path: Path, line: int, column: int | None, message: str):
    where = f"{path}:{line}:" if column is None else f"{path}:{line}:{column}:"
    matching = [row for row in output.splitlines() if row.startswith(where)]
    assert matching, f"expected a problem at {where} in:\n{output}"
    assert any(message in row for row in matching), f"expected {message!r} in {matching}"


CAMPAIGNS = sorted((CORPUS / "campaigns").glob("*.yaml"))


def test_corpus_is_large_enough():
    everything = [p for p in CORPUS.rglob("*") if p.is_file() and p.suffix in
                  (".yaml", ".html")]
    assert len(everything) >= 25


@pytest.mark.parametrize("broken", CAMPAIGNS, ids=lambda p: p.stem)
def test_broken_campaign_is_refused_with_its_location(tmp_path, broken):
    project = make_project(tmp_path)
    target = project / "campaigns" / broken.name
    shutil.copy(broken, target)
    line, column, message = expectation(broken)
    result = invoke(project, "validate")
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert_located(result.output, target, line, column, message)
    # The same mistake stops a run before anything is written or sent.
    run = invoke(project, "run")
    assert run.exit_code == 1
    assert not (project / "shop.db").exists()
