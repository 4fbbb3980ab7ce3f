"""``retain report`` as a user runs it: the documented JSON, the terminal tables, and the HTML
file opened in headless Chromium (no console errors, charts drawn, a screenshot kept in
artifacts/)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import threading
from datetime import timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from engine.cli import app
from tests.conftest import ROOT
from tests.shopdata import NOW, Shop
from tests.views.ledgerdata import Ledger

ARTIFACTS = Path(__file__).parents[2] / "artifacts"
SENT = NOW - timedelta(days=20)


@pytest.fixture
def ledger(engine):
    """Twelve mailed customers (three redeem, one orders without the code), four held out (one
    orders)."""
    shop, ledger = Shop(engine), Ledger(engine)
    for n in range(12):
        customer = shop.customer()
        tier = "drowsy" if n % 2 else "sleeping"
        delivery = ledger.delivery(customer, at=SENT + timedelta(days=n % 3),
                                   occasion=f"{tier}:{n}")
        ledger.coupon(delivery, customer, f"BACK-{n:03d}", at=SENT)
        if n < 4:
            order = shop.order(customer, at=SENT + timedelta(days=n % 3, hours=5),
                               total=4000 + 1000 * n)
            if n < 3:
                with engine.begin() as conn:
                    conn.exec_driver_sql(f"UPDATE orders SET discount_code = 'back-{n:03d}' "
                                         f"WHERE id = {order}")
    for n in range(4):
        customer = shop.customer()
        ledger.delivery(customer, at=SENT, status="held_out", occasion=f"drowsy:h{n}")
        if n == 0:
            shop.order(customer, at=SENT + timedelta(days=1), total=3000)
    from engine.shop import redemptions
    with engine.begin() as conn:
        redemptions.refresh(conn)
    return engine


def invoke(config_path: Path, *args: str):
    result = CliRunner().invoke(app, ["--config", str(config_path), "report",
                                      "--as-of", NOW.isoformat(), *args])
    assert result.exit_code == 0, result.output
    return result.output


def test_json_has_the_documented_shape(ledger, config_path):
    data = json.loads(invoke(config_path, "--json"))
    assert data["window_days"] == 5 and data["as_of"].startswith("2026-06-15T12:00")
    winback = data["campaigns"][0]
    for key in ("id", "sent", "held_out", "coupons_issued", "coupons_redeemed",
                "attributed_orders", "attributed_revenue", "discount_cost", "conversion",
                "revenue_per_recipient"):
        assert key in winback
    assert (winback["sent"], winback["held_out"]) == (12, 4)
    assert (winback["coupons_issued"], winback["coupons_redeemed"]) == (12, 3)
    assert winback["attributed_orders"] == 4
    assert winback["attributed_revenue"] == "220.00"  # 40 + 50 + 60 + 70: decimal text
    assert winback["conversion"]["mailed"] == pytest.approx(4 / 12, abs=1e-6)
    assert set(winback["conversion"]) >= {"mailed", "holdout", "lift", "ci95", "significant"}
    assert len(winback["revenue_per_recipient"]["ci95"]) == 2
    assert [s["id"] for s in winback["steps"]] == ["drowsy", "sleeping"]


def test_terminal_tables_and_bad_dates(ledger, config_path):
    text = invoke(config_path)
    assert "not significant yet" in text and "Newcombe" in text
    assert "@example.com" not in text
    late = invoke(config_path, "--from", "2026-06-01", "--json")
    assert json.loads(late)["campaigns"] == []
    bad = CliRunner().invoke(app, ["--config", str(config_path), "report", "--from", "June"])
    assert bad.exit_code != 0 and "is not a date" in bad.output


def test_the_report_process_loads_no_statistics_package(ledger, config_path):
    """statsmodels, pandas and scipy.stats held 130 MB of every report's process, matplotlib
    50 MB more: the statistics are the standard library's, the charts only for ``--html``."""
    code = ("import sys\nfrom engine.cli import app\n"
            f"app(['--config', {str(config_path)!r}, 'report', '--as-of', {NOW.isoformat()!r},"
            " '--json'], standalone_mode=False)\n"
            "print(sorted({m.split('.')[0] for m in sys.modules}"
            " & {'statsmodels', 'pandas', 'scipy', 'matplotlib'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=ROOT)
    shown, loaded = out.stdout.rstrip().rsplit("\n", 1)
    assert json.loads(shown)["campaigns"][0]["verdict"].startswith("not significant yet")
    assert loaded == "[]"


def _which_chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def _chromium() -> str:
    """Debian's chromium at its system path; installed with apt-get when missing and root."""
    found = _which_chromium()
    if found is None and shutil.which("apt-get") and os.geteuid() == 0:
        for command in (["apt-get", "install", "-y", "chromium"], ["apt-get", "update"],
                        ["apt-get", "install", "-y", "chromium"]):
            subprocess.run(command, capture_output=True, timeout=900, check=False,
                           env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
            if (found := _which_chromium()) is not None:
                break
    if found:
        return found
    if os.environ.get("CI") == "true":
        pytest.fail("no chromium, and apt-get could not install it: CI must open the report")
    pytest.skip("no chromium on PATH and apt-get could not install it "
                "(apt-get install -y chromium as root)")


@pytest.mark.slow
def test_html_report_opens_in_a_browser_with_its_charts(ledger, config_path, tmp_path):
    page_file = tmp_path / "report.html"
    invoke(config_path, "--html", str(page_file))
    html = page_file.read_text()
    # Nothing to fetch: no script, stylesheet, image or font from elsewhere (XML namespaces
    # are names, not downloads).
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html)
    assert "<script" not in html and "@import" not in html
    assert not re.search(r"url\((?!#)", html)  # only references within the page
    executable = _chromium()
    errors: list[str] = []
    failure: list[BaseException] = []

    def browse() -> None:  # in a thread of its own: the sync API refuses a running event loop
        try:
            from playwright.sync_api import sync_playwright

            ARTIFACTS.mkdir(exist_ok=True)
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=executable, headless=True)
                page = browser.new_page(viewport={"width": 1000, "height": 800})
                page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
                page.on("pageerror", lambda e: errors.append(str(e)))
                page.goto(page_file.as_uri())
                charts = page.locator("figure.chart svg")
                assert charts.count() == 3
                for index in range(3):
                    box = charts.nth(index).bounding_box()
                    assert box and box["width"] > 300 and box["height"] > 80
                    # Drawn: bars and lines are paths inside the SVG.
                    assert charts.nth(index).locator("path").count() > 10
                assert "winback" in page.locator("h2").first.inner_text()
                page.screenshot(path=str(ARTIFACTS / "report.png"), full_page=True)
                browser.close()
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test's thread
            failure.append(exc)

    thread = threading.Thread(target=browse)
    thread.start()
    thread.join()
    if failure:
        raise failure[0]
    assert errors == []
