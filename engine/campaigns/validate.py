"""``retain validate``: every campaign, template and config.yaml checked before anything runs.

Owns the order of the checks and the collection of every problem (not only the first): campaign
schemas and segments (file:line:column), campaign ids unique, templates present, each campaign's
template, subject and preheader compiled and their variables checked against the context of its
kind. config.yaml is checked by loading it. Must not touch the database.
"""

from __future__ import annotations

from engine.campaigns import models as cm
from engine.config import Settings
from engine.errors import InputError, Invalid
from engine.mail import render


def check(settings: Settings) -> list[cm.Campaign]:
    """The valid campaigns; raises Invalid listing every problem found."""
    found, problems = cm.read_folder(settings.folder("campaigns"), settings.folder("templates"))
    for campaign in found:
        problems.extend(template_problems(campaign, settings))
    if problems:
        raise Invalid(problems)
    return found


def template_problems(campaign: cm.Campaign, settings: Settings) -> list[InputError]:
    problems: list[InputError] = [
        p for template, _key in cm.templates_of(campaign)
        for p in render.lint(settings.folder("templates"), template, campaign.kind)]
    lines = [(campaign.subject, campaign.line_of("subject"), None, "subject")]
    for step in getattr(campaign, "steps_with_templates", ()):
        if step.subject:
            lines.append((step.subject, campaign.line_of("steps"), None, "subject"))
    if isinstance(campaign, cm.Vip) and campaign.anniversary_subject:
        lines.append((campaign.anniversary_subject, campaign.line_of("anniversary_subject"),
                      None, "subject"))
    if isinstance(campaign, cm.SpendThreshold) and campaign.nudge and campaign.nudge.subject:
        lines.append((campaign.nudge.subject, campaign.line_of("nudge"), "nudge", "subject"))
    if campaign.preheader:
        lines.append((campaign.preheader, campaign.line_of("preheader"), None, "preheader"))
    for source, line, needs, what in lines:
        problems.extend(render.lint_subject(source, campaign.kind, campaign.source, line,
                                            needs=needs, what=what))
    return problems


def load(settings: Settings, ids: list[str] | None = None) -> list[cm.Campaign]:
    """The campaigns to run: all enabled ones, or those named (enabled or not)."""
    found = check(settings)
    if ids:
        return cm.select(found, ids)
    return [c for c in found if c.enabled]
