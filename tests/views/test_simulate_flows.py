"""Thirty days of ``retain simulate`` on a small demo shop, its mail really sent to the loopback
server: every flow fires, and no occasion of any campaign is sent twice."""

from __future__ import annotations

import email
import email.policy
import re
import shutil
from collections import Counter
from datetime import timedelta

import pytest

from engine.campaigns import models as cm
from engine.demo import showcase
from engine.transport.mailserver import MailServer
from engine.transport.smtp import SmtpTransport
from engine.views import simulate
from tests.conftest import ROOT
from tests.crash_sender import pointed_at
from tests.shopdata import NOW

FLOWS = {"post_purchase", "review_apology", "review_thanks", "abandoned_checkout", "vip"}
CUSTOMERS = 400


def campaigns_every_six_hours(tmp_path) -> list[cm.Campaign]:
    """The shipped flows (and new-arrivals, whose products vip shows early), ticking every six
    hours instead of every 15 minutes or hour: the same occasions in a quarter of the runs."""
    folder = tmp_path / "six-hourly"
    shutil.copytree(ROOT / "campaigns", folder)
    for path in folder.glob("*.yaml"):
        text = path.read_text()
        path.write_text(text.replace('"*/15 * * * *"', '"0 */6 * * *"')
                        .replace('"0 * * * *"', '"0 */6 * * *"'))
    return [c for c in cm.load_folder(folder, ROOT / "templates")
            if c.id in FLOWS | {"new-arrivals"}]


@pytest.mark.slow
def test_thirty_days_of_flows_fire_each_occasion_once_at_the_mail_server(
        engine, settings, project, tmp_path):
    showcase.build_shop(engine, settings, NOW, customers=CUSTOMERS)
    chosen = campaigns_every_six_hours(tmp_path)
    with MailServer() as server:
        local = pointed_at(settings, server.port)
        with SmtpTransport(local.smtp) as transport:
            run = simulate.replay(engine, local, chosen, NOW, NOW + timedelta(days=30),
                                  transport=transport)
        messages = list(server.messages)

    planned = Counter()
    for tick in run.ticks:
        planned[tick.campaign_id] += tick.counts.planned
    assert {c for c in FLOWS if planned[c] == 0} == set()

    received = [email.message_from_bytes(m.data, policy=email.policy.default)
                for m in messages]
    by_campaign = Counter(m["X-Campaign-Id"] for m in received)
    assert {c for c in FLOWS if by_campaign[c] == 0} == set()
    # Each message is one delivery (its Message-ID names it), and a delivery is one
    # (campaign, customer, occasion): no delivery reached the server twice.
    ids = [re.match(r"<d(\d+)\.", m["Message-ID"]).group(1) for m in received]
    assert len(ids) == len(set(ids))
    # Nothing was held back and sent later as a second copy: what was planned arrived, once.
    assert sum(by_campaign[c] for c in FLOWS) <= sum(planned[c] for c in FLOWS)
    # A shipping notice names its order; nobody got the same order's notice twice.
    notices = Counter((m["To"], m["Subject"]) for m in received
                      if m["X-Campaign-Id"] == "post_purchase" and "on its way" in m["Subject"])
    assert notices and max(notices.values()) == 1
