"""Fixtures the delivery tests share: a real SMTP server on loopback, the test winback campaign
(tests/campaignfiles.py's winback: drowsy customers, a 10 % coupon, no holdout), and a campaign's
due mail composed both in the test's process and by a render worker process."""

from __future__ import annotations

import pytest

from engine.campaigns import planner
from engine.delivery import compose, ledger, renderworkers
from engine.transport.mailserver import MailServer
from tests.campaignfiles import load_campaign, write_campaign
from tests.shopdata import NOW


@pytest.fixture
def server():
    with MailServer() as running:
        yield running


@pytest.fixture
def winback(tmp_path):
    return load_campaign(write_campaign(tmp_path))


@pytest.fixture
def composed_both_ways(engine, settings):
    """A function: plan ``campaign`` at NOW, then compose its due deliveries here and in one
    render worker process (asserting the worker did it and exited cleanly); (here, worker)."""
    def compose_both(campaign):
        ledger.record_plan(engine, planner.plan(engine, settings, campaign, NOW), NOW)
        ids = ledger.due(engine, [campaign.id], NOW)
        here = compose.Composer(settings, {campaign.id: campaign}, engine).compose(ids, NOW)
        pool = renderworkers.ComposerPool(settings, {campaign.id: campaign}, 1, engine)
        try:
            assert pool._workers[0].ready.wait(30), "the render worker did not start"
            composing = pool.submit(ids, NOW)
            assert composing.future is not None  # composed by the worker, not here
            there = composing.result()
        finally:
            pool.close()
        assert pool._workers[0].process.returncode == 0
        return here, there

    return compose_both
