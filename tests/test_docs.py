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
from engine.shop import segments

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()
INTERNAL = {"source", "source_line", "key_lines"}


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
                  campaigns.Mine, campaigns.WinbackStep):
        yield from (k for k in model.model_fields if k not in INTERNAL)


@pytest.mark.parametrize("key", sorted(set(campaign_keys())))
def test_every_campaign_key_is_documented(key):
    assert re.search(rf"\b{key}\b", README), f"README must document the campaign key {key}"


@pytest.mark.parametrize("field", sorted(segments.FIELDS))
def test_every_segment_field_is_documented(field):
    assert f"`{field}`" in README


@pytest.mark.parametrize("operator", sorted(segments.OPERATORS))
def test_every_segment_operator_is_documented(operator):
    assert f"`{operator}`" in README


def config_keys(model=config.Settings, prefix=""):
    for name, field in model.model_fields.items():
        if name in INTERNAL:
            continue
        key = field.alias or name
        yield prefix + key
        inner = campaigns_first_model(field.annotation)
        if inner is not None:
            yield from config_keys(inner, "")


def campaigns_first_model(annotation):
    if hasattr(annotation, "model_fields"):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        if hasattr(arg, "model_fields"):
            return arg
    return None


@pytest.mark.parametrize("key", sorted(set(config_keys())))
def test_every_config_key_is_documented(key):
    assert re.search(rf"\b{key}\b", README), f"README must document the config key {key}"


def test_every_kind_is_documented():
    for kind in campaigns.KINDS:
        assert f"`{kind}`" in README
