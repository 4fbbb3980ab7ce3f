"""What a marketer reads: tables that never cut an id, numbers that say what they count, and
no Python showing through (dicts, None, True, UTC for a Paris shop, "1 rows", <bool>).

The shop's store is in Europe/Paris; NOW is 2026-06-15 12:00 UTC, 14:00 CEST.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from engine.consent import suppressions
from tests.cli.conftest import in_terminal, invoke
from tests.shopdata import NOW, Shop

LONG_ID = "spend-gift-for-our-most-loyal-customers"
AS_OF = ["--as-of", "2026-06-15T14:00"]


@pytest.fixture
def shop(engine, project, config_path) -> dict[str, int]:
    """A small shop whose ledger has deliveries, a campaign with a long id, mail to files."""
    gift = project / "campaigns" / "spend_gift.yaml"
    gift.write_text(gift.read_text().replace("id: spend-gift", f"id: {LONG_ID}"))
    config_path.write_text(config_path.read_text() + "\ndelivery:\n  transport: file\n")
    shop = Shop(engine)
    shop.product("YOGA-001", price=4900)
    people = {}
    people["drowsy"] = shop.customer(first_name="Zoé", timezone="Europe/Paris")
    shop.order(people["drowsy"], days_ago=70, items={"YOGA-001": 4900})
    people["spender"] = shop.customer()
    shop.order(people["spender"], days_ago=2, total=16000)
    people["prospect"] = shop.customer()  # no order: no recency, no tier
    people["gone"] = shop.customer()
    shop.order(people["gone"], days_ago=300, total=2000)
    suppressions.unsubscribe(engine, people["gone"], NOW, source="one-click")
    result = invoke(config_path, "run", *AS_OF)
    assert result.exit_code == 0, result.output
    return people


def screens(project: Path, shop: dict[str, int]) -> dict[str, list[str]]:
    return {
        "plan": ["plan", *AS_OF],
        "run": ["run", "--dry-run", *AS_OF],
        "deliveries": ["deliveries"],
        "status": ["status"],
        "why": ["why", str(shop["drowsy"]), *AS_OF],
        "simulate": ["simulate", "--from", "2026-06-16", "--to", "2026-06-18"],
        "segment": ["segment", "campaigns/spend_gift.yaml", *AS_OF],
        "customers": ["customers", "show", str(shop["prospect"]), *AS_OF],
        "suppressions": ["suppressions", "list"],
    }


@pytest.mark.parametrize("columns", [80, 120])
def test_tables_never_cut_an_id_at_80_or_120_columns(shop, project, config_path, columns):
    for name, args in screens(project, shop).items():
        code, shown = in_terminal(columns, "--config", str(config_path), *args, cwd=project)
        assert code == 0, f"{name}:\n{shown}"
        assert "…" not in shown, f"{name} cut something at {columns} columns:\n{shown}"
        lines = shown.splitlines()
        drawn = [line for line in lines if line[:1] in "┏┃┡│└┌├"]  # table rows, not prose
        assert all(len(line) <= columns for line in drawn), f"{name}:\n{shown}"
        if name in ("plan", "run", "status", "simulate"):
            assert any(LONG_ID in line for line in lines), f"{name}:\n{shown}"


PYTHON = [re.compile(p) for p in (r"\bNone\b", r"\bTrue\b", r"\bFalse\b", r"\{'", r"'\}",
                                  r"\+00:00", r"\bUTC\b", r"\b1 rows\b", r"\(s\)", r"<bool>",
                                  r"\d{2}:\d{2}:\d{2}\.\d+")]


def test_no_python_shows_through_and_times_are_the_stores(shop, project, config_path):
    csv = project / "one.csv"
    csv.write_text("customer_id,email\nnew-1,new@example.com\n")
    more = {"import": ["import", "customers", str(csv)], "help": ["preview", "--help"]}
    for name, args in {**screens(project, shop), **more}.items():
        code, shown = in_terminal(160, "--config", str(config_path), *args, cwd=project)
        assert code == 0, f"{name}:\n{shown}"
        for pattern in PYTHON:
            assert not pattern.search(shown), f"{name} shows {pattern.pattern}:\n{shown}"
    code, shown = in_terminal(160, "--config", str(config_path), "customers", "show",
                              str(shop["drowsy"]), *AS_OF, cwd=project)
    assert "yes" in shown and "CEST" in shown  # consent; the last order in Paris time
    assert "1 row:" in in_terminal(160, "--config", str(config_path), "import", "customers",
                                   str(csv), cwd=project)[1]


def test_status_says_what_the_last_run_did_in_words(shop, project, config_path):
    code, shown = in_terminal(160, "--config", str(config_path), "status", cwd=project)
    last = next(line for line in shown.splitlines() if line.startswith("last run"))
    assert re.search(r"finished 2026-06-15 14:00 CEST: \d+ planned, \d+ sent", last), last


def test_a_what_if_does_not_say_nothing_was_sent(shop, project, config_path):
    code, shown = in_terminal(160, "--config", str(config_path), "simulate", "--from",
                              "2026-06-16", "--to", "2026-06-18", cwd=project)
    assert "nothing sent" not in shown
    assert any(line.startswith("What would be sent from 2026-06-16 00:00 CEST")
               for line in shown.splitlines()), shown


def test_json_keeps_iso_utc(shop, config_path):
    plan = json.loads(invoke(config_path, "plan", "--json", *AS_OF).output)
    assert plan["as_of"] == "2026-06-15T12:00:00+00:00"
    status = json.loads(invoke(config_path, "status", "--json").output)
    assert status["last_run"]["finished_at"].endswith("+00:00")
    assert all(c["next_run"].endswith("+00:00") for c in status["campaigns"] if c["next_run"])
    why = json.loads(invoke(config_path, "why", str(shop["drowsy"]), "--json", *AS_OF).output)
    assert why["as_of"] == "2026-06-15T12:00:00+00:00"
    shown = json.loads(invoke(config_path, "customers", "show", str(shop["drowsy"]),
                              "--json", *AS_OF).output)
    assert shown["accepts_marketing"] is True and shown["last_order_at"].endswith("+00:00")


def test_plan_and_segment_say_what_each_number_counts(shop, project, config_path):
    segment = invoke(config_path, "segment", "campaigns/winback.yaml", *AS_OF)
    assert segment.exit_code == 0, segment.output
    matched = int(re.search(r"(\d+) customers? match", segment.output)[1])
    assert "retain plan" in segment.output  # says the plan narrows it further, and how
    plan = json.loads(invoke(config_path, "plan", "winback", "--json", *AS_OF).output)
    [winback] = plan["campaigns"]
    assert winback["in_segment"] == matched == 2  # the drowsy customer and the spender
    assert winback["eligible"] == 1  # only the drowsy one is dormant in a tier with a step
    shown = invoke(config_path, "plan", "winback", *AS_OF).output
    assert f"winback: {matched} customers in the segment" in shown
    assert "1 eligible (dormant in a tier it has a step for: drowsy, half asleep or sleeping)" \
        in shown
