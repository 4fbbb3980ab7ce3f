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


TEMPLATES = sorted((CORPUS / "templates").glob("*.html"))


@pytest.mark.parametrize("broken", TEMPLATES, ids=lambda p: p.stem)
def test_broken_template_is_refused_with_its_location(tmp_path, broken):
    project = make_project(tmp_path)
    kind, _ = broken.stem.split("__")
    target = project / "templates" / broken.name
    shutil.copy(broken, target)
    (project / "campaigns" / "c.yaml").write_text(
        f"id: c\nkind: {kind}\ntemplate: {broken.name}\nsubject: Hello\n" +
        {"winback": "steps: [{tier: drowsy, coupon: {percent_off: 10}}]\n",
         "new_product": ""}[kind])
    line, _, message = expectation_of_template(broken)
    result = invoke(project, "validate")
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    assert_located(result.output, target, line, None, message)
    assert invoke(project, "run").exit_code == 1
    assert not (project / "shop.db").exists()


def expectation_of_template(path: Path) -> tuple[int, None, str]:
    match = re.match(r"^\{# expect: (\d+) ?(.*?) ?#\}$", path.read_text().splitlines()[0])
    assert match, f"{path} must start with '{{# expect: LINE message #}}'"
    return int(match[1]), None, match[2]


CONFIGS = sorted((CORPUS / "config").glob("*.yaml"))


@pytest.mark.parametrize("broken", CONFIGS, ids=lambda p: p.stem)
def test_broken_config_is_refused_with_its_location(tmp_path, broken, monkeypatch):
    monkeypatch.delenv("SHOP_SMTP_SECRET_FOR_TEST", raising=False)
    project = make_project(tmp_path)
    shutil.copy(broken, project / "config.yaml")
    line, _, message = expectation(broken)
    for command in (["validate"], ["run"], ["segment", str(project / "config.yaml")]):
        result = invoke(project, *command)
        assert result.exit_code == 1
        assert "Traceback" not in result.output
        assert f"{project / 'config.yaml'}:{line}: " in result.output, result.output
        assert message in result.output
    assert not list(project.glob("*.db"))


def test_subject_with_unknown_variable_points_at_the_subject_line(tmp_path):
    project = make_project(tmp_path)
    target = project / "campaigns" / "c.yaml"
    target.write_text("id: c\nkind: winback\ntemplate: winback.html\n"
                      "subject: '{{ custome.first_name }}, come back'\n"
                      "steps: [{tier: drowsy, coupon: {percent_off: 10}}]\n")
    result = invoke(project, "validate")
    assert result.exit_code == 1
    assert_located(result.output, target, 4, None, 'unknown variable "custome"')


def test_every_problem_is_listed_not_only_the_first(tmp_path):
    project = make_project(tmp_path)
    for name in ("unknown_key.yaml", "bad_cron.yaml", "bad_tier.yaml"):
        shutil.copy(CORPUS / "campaigns" / name, project / "campaigns" / name)
    result = invoke(project, "validate")
    assert result.exit_code == 1
    assert "3 problem(s) found" in result.output
