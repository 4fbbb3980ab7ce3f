"""What a send's outcome means: for the message's ledger row, and for the run.

Owns two rules, kept apart so each reads on its own:

- ``result``: outcome → ledger result. Only an outcome the server judged (``Outcome.tried``: a
  reply to RCPT, DATA or the payload) spends an attempt, and a delivery is given up only after
  ``delivery.max_attempts`` of those. A message the server never judged (held back by our
  back-off, a refused connection, a 421) waits with its attempt given back.
- ``Brakes.check``: must the run stop? A refusal of us (``blocked``) or too many bounces pause
  it; connections failing ``UNREACHABLE_LIMIT`` times in a row stop it (the server is down).
  A back-off of the whole server makes the run wait (``held_until``) rather than stop; if the
  run must end before the server takes mail again, ``finish`` says why.

Must not: touch the database or the transport (the runner records and sends), or read the clock.
"""

from __future__ import annotations

import threading
from datetime import datetime, timedelta

from engine.config import Settings
from engine.delivery import compose, outbox
from engine.tables import DeliveryStatus
from engine.transport import Outcome, Scope, SendStatus, Stage, backoff

S = DeliveryStatus
UNREACHABLE_LIMIT = 3  # connection failures in a row that stop a run: the server is down


def describe(outcome: Outcome) -> str:
    """The outcome in one line for a ledger reason or a report: code, enhanced code, text."""
    return f"{outcome.code or ''} {outcome.enhanced or ''} {outcome.detail}".strip()


def result(item: compose.Ready, attempts: int, outcome: Outcome, now: datetime,
           settings: Settings) -> outbox.Result:
    """The ledger result of ``item``, claimed for its ``attempts``-th try, given ``outcome``."""
    rules, delivery_id, message_id = settings.delivery, item.delivery_id, item.message.message_id
    detail = describe(outcome)
    if outcome.status is SendStatus.sent:
        return outbox.Result(delivery_id, S.sent, message_id)
    if outcome.status is SendStatus.bounced:
        return outbox.Result(delivery_id, S.bounced, message_id, detail,
                             suppress=item.message.rcpt_to)
    if outcome.status is SendStatus.unknown:
        return outbox.Result(delivery_id, S.unknown, message_id, detail)
    wait = timedelta(seconds=outcome.retry_after or 0)
    if not outcome.tried:  # held back, or the connection failed: the server never judged it
        return outbox.untried(delivery_id, attempts, now + wait,
                              f"not tried yet, no attempt spent: {detail}")
    # failed (transient) or blocked (about us): the server refused this message; later
    if attempts >= rules.max_attempts:
        return outbox.Result(delivery_id, S.failed, None,
                             f"gave up after the server refused it {attempts} times: {detail}")
    delay = timedelta(seconds=backoff(attempts, rules.retry_base_seconds,
                                      rules.retry_cap_seconds))
    return outbox.Result(delivery_id, S.failed, None, detail, now + max(wait, delay))


def counted_as(outcome: Outcome) -> str | None:
    """The run report's counter for ``outcome``; None for a message that was not tried."""
    if not outcome.tried:
        return None
    return "failed" if outcome.status is SendStatus.blocked else outcome.status.value


class Brakes:
    """A run's brakes, fed every outcome by the sender threads (thread-safe)."""

    def __init__(self, settings: Settings):
        self.smtp, self.rules = settings.smtp, settings.delivery
        self.judged = 0        # outcomes the server judged
        self.bounced = 0
        self.unreachable = 0   # connection failures in a row
        self.paused: str | None = None       # refused by the server: pause the campaigns
        self.interrupted: str | None = None  # the server cannot take mail now: the next run will
        self.held_until: datetime | None = None  # the server's back-off: send nothing before
        self._why_held = ""
        self._lock = threading.Lock()

    def check(self, outcome: Outcome, now: datetime) -> bool:
        """Take ``outcome`` into account; True when the run must stop."""
        status = outcome.status
        with self._lock:
            if outcome.scope is Scope.server and status in (SendStatus.failed, SendStatus.held):
                until = now + timedelta(seconds=outcome.retry_after or 0)
                self.held_until = max(self.held_until or until, until)
                if status is SendStatus.failed:
                    self._why_held = self._unreachable(outcome) if outcome.code is None else (
                        f"the mail server at {self.smtp.host}:{self.smtp.port} asked us to "
                        f"wait ({describe(outcome)}); nothing is lost and no attempt was spent: "
                        "the deliveries stay queued for the next run")
            if status is not SendStatus.held:
                cannot_connect = (status is SendStatus.failed and outcome.code is None
                                  and outcome.stage is Stage.connect)
                self.unreachable = self.unreachable + 1 if cannot_connect else 0
                if self.unreachable >= UNREACHABLE_LIMIT:
                    self.interrupted = self.interrupted or self._unreachable(outcome)
            if outcome.tried:
                self.judged += 1
                self.bounced += status is SendStatus.bounced
            if status is SendStatus.blocked:
                self.paused = (f"the mail server refused us ({describe(outcome)}); fix the "
                               "sender or account, then run again — nobody was suppressed")
            elif (self.judged >= self.rules.bounce_rate_min_sends and
                  self.bounced / self.judged > self.rules.max_bounce_rate):
                self.paused = (f"{self.bounced} of {self.judged} messages bounced, more than "
                               f"{self.rules.max_bounce_rate:.0%}; clean the list, then run "
                               "again")
            return bool(self.paused or self.interrupted)

    def holding(self, now: datetime) -> bool:
        """Whether the server's back-off still holds every message back at ``now``."""
        return self.held_until is not None and self.held_until > now

    def finish(self, now: datetime) -> None:
        """The run ends: if the server's back-off still holds, say why the rest waits."""
        if self.holding(now) and not (self.paused or self.interrupted):
            self.interrupted = self._why_held or (
                "the mail server asked us to wait; the deliveries stay queued for the next run")

    def _unreachable(self, outcome: Outcome) -> str:
        return (f"cannot reach the mail server at {self.smtp.host}:{self.smtp.port} "
                f"({describe(outcome)}); check smtp.host, smtp.port and smtp.security in "
                "config.yaml. Nothing is lost: the deliveries stay queued for the next run")
