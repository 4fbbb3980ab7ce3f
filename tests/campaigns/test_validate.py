"""One broken campaign file: read-only commands on named campaigns go on, warning about it;
`retain run`, an unnamed plan and the scheduler keep the all-valid rule."""

from __future__ import annotations

import pytest

from engine.campaigns import validate
from engine.errors import Invalid
from tests.cli.conftest import invoke
from tests.shopdata import Shop

BROKEN = "id: broken\nkind: winback\ntemplate: winback.html\nsubject: Hi\nsteps: [\n"
AS_OF = ["--as-of", "2026-06-15"]


@pytest.fixture
def broken_file(project):
    path = project / "campaigns" / "zz_broken.yaml"
    path.write_text(BROKEN)
    return path


def test_read_only_commands_on_named_campaigns_go_on_with_a_warning(engine, project,
                                                                      config_path, broken_file):
    shop = Shop(engine)
    customer = shop.customer()
    shop.order(customer, days_ago=70, total=3000)
    for args in (["plan", "winback"], ["preview", "winback", "--customer", str(customer)],
                 ["why", str(customer), "winback"], ["segment", "campaigns/winback.yaml"]):
        result = invoke(config_path, *args, *AS_OF)
        assert result.exit_code == 0, f"{args}: {result.output}"
        if args[0] != "segment":
            assert f"warning: {broken_file} is skipped" in result.output, result.output


def test_run_and_an_unnamed_plan_still_refuse(engine, project, config_path, broken_file):
    for args in (["run", "winback"], ["run"], ["plan"]):
        result = invoke(config_path, *args, *AS_OF)
        assert result.exit_code == 1, args
        assert str(broken_file) in result.output


def test_naming_the_broken_campaign_shows_its_problems(engine, project, config_path,
                                                       broken_file):
    result = invoke(config_path, "plan", "broken", *AS_OF)
    assert result.exit_code == 1
    assert f"{broken_file}:" in result.output


def test_survey_keeps_the_valid_campaigns_and_names_the_broken_files(settings, project,
                                                                     broken_file):
    shipped = {path.stem for path in (project / "campaigns").glob("*.yaml")} - {"zz_broken"}
    valid, broken = validate.survey(settings)
    assert len(valid) == len(shipped) and {"winback", "spend-gift"} <= {c.id for c in valid}
    assert set(broken) == {str(broken_file)}
    with pytest.raises(Invalid):
        validate.check(settings)
