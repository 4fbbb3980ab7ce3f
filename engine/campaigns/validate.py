"""``retain validate``: every campaign, template and config.yaml checked before anything runs.

Owns the order of the checks and the collection of every problem (not only the first): campaign
schemas and segments (file:line:column), campaign ids unique, templates present, each campaign's
template, subject and preheader compiled and their variables checked against the context of its
kind; and which files are broken, so read-only commands on named campaigns can go on beside
one (``load(..., warn=...)``) while running keeps the all-valid rule. config.yaml is checked by
loading it. Must not touch the database.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from engine.campaigns import models as cm
from engine.config import Settings
from engine.errors import InputError, Invalid
from engine.mail import render


def check(settings: Settings) -> list[cm.Campaign]:
    """The valid campaigns; raises Invalid listing every problem found."""
    valid, broken = survey(settings)
    if broken:
        raise Invalid([problem for problems in broken.values() for problem in problems])
    return valid


def survey(settings: Settings) -> tuple[list[cm.Campaign], dict[str, list[InputError]]]:
    """Every campaign file checked: the valid campaigns, and each broken file's problems (by
    the campaign file's path; a campaign whose template or subject is wrong is broken too)."""
    found, problems = cm.read_folder(settings.folder("campaigns"),
                                     settings.folder("templates"))
    broken: dict[str, list[InputError]] = {}
    for problem in problems:
        broken.setdefault(problem.path or str(settings.folder("campaigns")), []).append(problem)
    valid = []
    for campaign in found:
        mistakes = [] if campaign.source in broken else template_problems(campaign, settings)
        if mistakes:
            broken.setdefault(campaign.source, []).extend(mistakes)
        elif campaign.source not in broken:
            valid.append(campaign)
    return valid, broken


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


def load(settings: Settings, ids: Iterable[str] | None = None,
         warn: Callable[[str], None] | None = None) -> list[cm.Campaign]:
    """The campaigns to run: all enabled ones, or those named (enabled or not).

    Running needs every file valid. A read-only command passes ``warn``: then campaigns named
    by id load even while another file is broken, and each broken file is reported to ``warn``
    as one sentence naming it and its first problem. A named campaign that is not among the
    valid ones, while some file is broken, shows every problem (it may be in that file).
    """
    ids = list(ids or [])
    if warn is None or not ids:
        found = check(settings)
        return cm.select(found, ids) if ids else [c for c in found if c.enabled]
    valid, broken = survey(settings)
    known = {campaign.id for campaign in valid}
    if broken and any(wanted not in known for wanted in ids):
        raise Invalid([problem for problems in broken.values() for problem in problems])
    for path, problems in broken.items():
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        warn(f"{path} is skipped until it is fixed (retain run refuses meanwhile): "
             f"{problems[0]}{more}")
    return cm.select(valid, ids)
