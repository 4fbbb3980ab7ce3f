"""The layering of engine/ is a contract import-linter checks (pyproject.toml, `make lint`).

Each test lints a copy of the package, so a deliberate bad import shows the contract failing
without touching the real tree.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def lint(tree: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(LINT_IMPORTS), "--no-cache"], cwd=tree, capture_output=True,
                          text=True, timeout=120)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    shutil.copytree(ROOT / "engine", tmp_path / "engine",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def add_line(module: Path, line: str) -> None:
    module.write_text(module.read_text() + f"\n{line}  # noqa\n")


def test_the_real_tree_keeps_every_contract():
    result = lint(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_a_lower_stage_importing_a_higher_one_breaks_the_contract(tree: Path):
    assert lint(tree).returncode == 0
    add_line(tree / "engine" / "shop" / "metrics.py", "from engine.delivery import ledger")
    result = lint(tree)
    assert result.returncode == 1
    assert "engine.shop is not allowed to import engine.delivery" in result.stdout
    assert "engine.shop.metrics -> engine.delivery.ledger" in result.stdout


def test_siblings_on_one_layer_are_independent(tree: Path):
    add_line(tree / "engine" / "consent" / "optout.py", "from engine.shop import metrics")
    result = lint(tree)
    assert result.returncode == 1
    assert "engine.consent.optout -> engine.shop.metrics" in result.stdout


def test_mail_must_not_touch_the_database(tree: Path):
    add_line(tree / "engine" / "mail" / "render.py", "from engine import db")
    result = lint(tree)
    assert result.returncode == 1
    assert "Mail is pure: no database BROKEN" in result.stdout


def test_a_new_top_level_module_must_be_given_a_layer(tree: Path):
    (tree / "engine" / "stray.py").write_text('"""Belongs nowhere yet."""\n')
    result = lint(tree)
    assert result.returncode != 0
    assert "engine.stray" in result.stdout + result.stderr
