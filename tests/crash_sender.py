"""Runs one campaign in a process of its own, for the tests that kill a run or race two runs;
also the small helpers those tests share (settings pointed at a test server,
a run through it).

    python tests/crash_sender.py CONFIG CAMPAIGN_YAML SMTP_PORT [RENDER_PROCESSES]

Plans and sends ``CAMPAIGN_YAML`` at tests.shopdata.NOW through the SMTP server on
127.0.0.1:SMTP_PORT (the test's own MailServer), exactly as ``retain run`` would, then prints
the run's report as one JSON line. A test may SIGKILL it at any moment.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

if __name__ == "__main__":  # run as a script: make `engine` and `tests` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine import config, db  # noqa: E402
from engine.campaigns import models as campaigns  # noqa: E402
from engine.delivery import runner  # noqa: E402
from engine.transport.smtp import SmtpTransport  # noqa: E402
from tests.shopdata import NOW  # noqa: E402


def pointed_at(settings: config.Settings, port: int, **delivery) -> config.Settings:
    """``settings`` sending to 127.0.0.1:``port`` in plain SMTP, no rate limit to speak of,
    with ``delivery`` changes (retry_base_seconds=..., max_bounce_rate=...)."""
    smtp = settings.smtp.model_copy(update={"host": "127.0.0.1", "port": port,
                                            "security": "none", "username": None,
                                            "password": None, "rate_per_second": 1e6,
                                            "timeout_seconds": 10})
    return settings.model_copy(update={
        "smtp": smtp, "delivery": settings.delivery.model_copy(update=delivery)})


def send(engine, settings: config.Settings, campaign: campaigns.Campaign, server,
         **options) -> runner.RunReport:
    """Run ``campaign`` at NOW through the test's MailServer ``server``, as ``retain run``."""
    local = pointed_at(settings, server.port)
    with SmtpTransport(local.smtp) as transport:
        return runner.run(engine, local, [campaign], NOW, transport, **options)


def main(argv: list[str]) -> None:
    config_path, campaign_path, port = Path(argv[0]), Path(argv[1]), int(argv[2])
    processes = int(argv[3]) if len(argv) > 3 else None
    settings = pointed_at(config.load(config_path, environ={}), port)
    engine = db.connect(settings.database.url)
    with SmtpTransport(settings.smtp) as transport:
        report = runner.run(engine, settings, [campaigns.load_file(campaign_path)], NOW, transport,
                            render_processes=processes)
    print(json.dumps(report.as_dict()), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
