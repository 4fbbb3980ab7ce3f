"""A real browser for the browser tests: Playwright driving Debian's Chromium.

Playwright cannot download its own browser builds here, so it launches the system's chromium
(``scripts/install-browser.sh`` installs it; ``RETAIN_CHROMIUM`` names another binary). Where
no browser can be had the tests are skipped with the reason, except in CI (``CI=true``), where a
missing browser is a failure.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "artifacts" / "screenshots"  # git-ignored; kept after the run to look at
# Flags for a machine without a display or a network: no sandbox (root), no GPU, no calls home.
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-quic", "--hide-scrollbars", "--force-color-profile=srgb"]


def _unavailable(reason: str):
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"browser tests cannot run in CI: {reason}", pytrace=False)
    pytest.skip(f"{reason}; run scripts/install-browser.sh (as root) to run the browser tests")


def chromium_path() -> str | None:
    named = os.environ.get("RETAIN_CHROMIUM")
    if named:
        return named if os.access(named, os.X_OK) else None
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="session")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("Playwright is not installed (pip install -e '.[dev]')")
    binary = chromium_path()
    if binary is None:
        _unavailable("no Chromium found (Debian package chromium, or RETAIN_CHROMIUM)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=binary, args=FLAGS)
        yield launched
        launched.close()


@pytest.fixture(scope="session")
def screenshots() -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for old in SCREENSHOTS.glob("*.png"):
        old.unlink()
    return SCREENSHOTS
