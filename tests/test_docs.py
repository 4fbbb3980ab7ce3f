"""README stays true: every command, campaign key, segment field and config key is documented,
and every command has help with an example."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import typer

from engine import config
from engine.campaigns import models as campaigns
from engine.cli import app

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()
INTERNAL = {"source", "source_line", "key_lines",
            "held_back_days", "early_target"}  # set by load_folder from a vip campaign


def commands():
    root = typer.main.get_command(app)
    for name, command in root.commands.items():
        if hasattr(command, "commands"):
            for sub, inner in command.commands.items():
                yield f"{name} {sub}", inner
        else:
            yield name, command


@pytest.mark.parametrize("name,command", list(commands()), ids=lambda x: str(x))
def test_every_command_has_help_with_an_example_and_is_in_the_readme(name, command):
    assert command.help and "Example: retain" in command.help, f"retain {name} needs help"
    assert f"retain {name}" in README, f"README must document retain {name}"


def test_the_two_commands_are_in_the_readme():
    assert "make demo" in README and "make test" in README


def campaign_keys():
    for model in (campaigns.CampaignBase, *campaigns.KINDS.values(), campaigns.Coupon,
                  campaigns.Gift, campaigns.Budget, campaigns.Nudge, campaigns.Bundle,
                  campaigns.Mine, campaigns.WinbackStep, campaigns.PostPurchaseStep,
                  campaigns.CheckoutStep, campaigns.RatingCondition, campaigns.Person,
                  campaigns.EarlyAccess):
        yield from (k for k in model.model_fields if k not in INTERNAL)


def in_backticks(text: str) -> set[str]:
    """Every word written inside a `code span` of ``text``: how README names keys."""
    prose = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)  # fenced blocks are examples
    return {word for span in re.findall(r"`([^`]+)`", prose)
            for word in re.findall(r"[A-Za-z_][A-Za-z0-9_.]*", span)}


@pytest.mark.parametrize("key", sorted(set(campaign_keys())))
def test_every_campaign_key_is_documented(key):
    words = in_backticks(README)
    assert key in words or any(w.endswith("." + key) for w in words), (
        f"README must document the campaign key `{key}` (in backticks)")


def config_keys(model=config.Settings, prefix=""):
    """Every key of config.yaml as its dotted path: store.name, smtp.host, …"""
    for name, field in model.model_fields.items():
        if name in INTERNAL:
            continue
        key = prefix + (field.alias or name)
        yield key
        inner = campaigns_first_model(field.annotation)
        if inner is not None:
            yield from config_keys(inner, key + ".")


def campaigns_first_model(annotation):
    if hasattr(annotation, "model_fields"):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        if hasattr(arg, "model_fields"):
            return arg
    return None


def config_rows() -> list[tuple[set[str], str]]:
    """README's config.yaml table: (the dotted keys a row is about, the whole row's text)."""
    section = README.split("## config.yaml", 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in section.splitlines():
        cells = line.split(" | ")
        if line.startswith("| `") and len(cells) > 1:
            rows.append((set(re.findall(r"`([^`]+)`", cells[0])), line))
    return rows


@pytest.mark.parametrize("key", sorted(set(config_keys())))
def test_every_config_key_is_documented(key):
    """A key is documented by a row of the config table that names it, or names its parent
    and lists the key in backticks (`smtp` | `{host, port, …}`): a word in prose is not enough,
    so a key called `url` or `id` cannot pass by accident."""
    for named, row in config_rows():
        for head in named:
            if key == head or head.startswith(key + "."):
                return
            if key.startswith(head + "."):
                rest = key[len(head) + 1:].split(".")
                if all(part in in_backticks(row) for part in rest):
                    return
    pytest.fail(f"README's config.yaml table must document `{key}`")


def test_every_kind_is_documented():
    for kind in campaigns.KINDS:
        assert f"`{kind}`" in README
