"""Campaign files: whatever `retain validate` accepts, `retain plan` executes on both
databases; whatever it refuses is refused as one line per problem at file:line."""

from __future__ import annotations

import shutil

import pytest
from hypothesis import event, given
from hypothesis import strategies as st

from engine import config
from engine.campaigns import planner, validate
from engine.errors import Invalid
from tests.conftest import ROOT
from tests.fuzz.conftest import TIMEOUT, assert_one_located_line, examples
from tests.fuzz.strategies import campaign_documents, mutated, yaml_bytes
from tests.shopdata import NOW, Shop

pytestmark = [pytest.mark.timeout(TIMEOUT), pytest.mark.slow]
SHIPPED = sorted((ROOT / "campaigns").glob("*.yaml"))


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz-campaigns")
    shutil.copytree(ROOT / "templates", root / "templates")
    (root / "campaigns").mkdir()
    (root / "config.yaml").write_text((ROOT / "config.yaml").read_text())
    return root


@pytest.fixture(scope="module")
def shops(databases):
    """Each database with a few customers: drowsy, active, and one without consent."""
    for _, engine in databases:
        shop = Shop(engine)
        shop.product("MUG-1", category="kitchen")
        for days, consent in ((70, True), (5, True), (200, False)):
            shop.order(shop.customer(consent=consent, tags="vip"), days_ago=days,
                       items={"MUG-1": 2000})
    return databases


def check(project, shops, data: bytes) -> None:
    """Validate ``data`` as the only campaign; plan it on every database if it is accepted."""
    target = project / "campaigns" / "fuzz.yaml"
    target.write_bytes(data)
    settings = config.load(project / "config.yaml", environ={})
    try:
        found = validate.check(settings)
    except Invalid as exc:
        event("refused")
        for problem in exc.problems:
            line = assert_one_located_line(str(problem), problem.path)
            assert problem.path in (str(target), ) or problem.path.startswith(
                str(project / "templates")), problem
            assert line == problem.line
        return
    event("accepted" + (" with a segment" if found[0].segment else ""))
    for _, engine in shops:
        (plan,) = planner.summarize(engine, settings, found, NOW, sample=1)
        assert plan.campaign.id == found[0].id


@given(data=yaml_bytes(campaign_documents()))
@examples(ci=120)
def test_generated_campaigns_validate_and_plan_or_are_refused_at_a_line(project, shops, data):
    check(project, shops, data)


@given(data=st.sampled_from(SHIPPED).flatmap(lambda path: mutated(path.read_bytes())))
@examples(ci=80)
def test_damaged_shipped_campaigns_validate_and_plan_or_are_refused_at_a_line(
        project, shops, data):
    check(project, shops, data)
