"""How many of a campaign's audience came to each outcome: one tally for plan, run and simulate.

Owns ``Counts``: the planner fills it as it decides (eligible, planned, held out,
suppressed, deferred, capped, skipped by reason, offers and their face value), a run's sender
adds what the mail server said (sent, failed, bounced, unknown, suppressed at claim time), and
``retain plan``, ``retain run`` and ``retain simulate`` print it. Its words are the ledger's
(``tables.DeliveryStatus``) and the skip reasons (``tables.Skip``), so the three commands
cannot count the same outcome under different names; the counts' part of each command's JSON
is shaped here (README, "JSON output"). Must not decide anything: it only counts.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from engine import display
from engine.tables import DeliveryStatus, Skip

S = DeliveryStatus
# The statuses a run counts: everything a delivery can end a run as (``sending`` is a moment).
COUNTED = (S.planned, S.held_out, S.suppressed, S.deferred, S.capped,
           S.sent, S.failed, S.bounced, S.unknown, S.cancelled)


@dataclass
class Counts:
    """One campaign's outcomes: a field per counted delivery status, skips by reason."""
    campaign_id: str
    eligible: int = 0            # the audience query's customers: in the segment, and meeting
                                 # the kind's own condition (kinds.KindRules.audience_rule)
    planned: int = 0             # deliveries written for sending ("recipients" in a plan)
    held_out: int = 0
    suppressed: int = 0
    deferred: int = 0
    capped: int = 0
    sent: int = 0
    failed: int = 0
    bounced: int = 0
    unknown: int = 0
    cancelled: int = 0           # its occasion ended before the send (a checkout completed)
    skipped: Counter[str] = field(default_factory=Counter)  # Skip value → customers
    offers: int = 0              # offers on planned deliveries, and their face value
    offer_value_cents: int = 0

    def count(self, status: DeliveryStatus | str, n: int = 1) -> None:
        status = DeliveryStatus(status)
        if status not in COUNTED:
            raise ValueError(f"{status.value} is not an outcome a run counts")
        setattr(self, status.value, getattr(self, status.value) + n)

    def skip(self, reason: Skip) -> None:
        self.skipped[Skip(reason).value] += 1

    def skipped_sorted(self) -> dict[str, int]:
        return dict(sorted(self.skipped.items()))

    def skipped_words(self) -> str:
        """The skips for a person: "cooldown 2, no consent 5" ("" when none)."""
        return ", ".join(f"{display.words(reason)} {n:,}"
                         for reason, n in self.skipped_sorted().items())

    def plan_dict(self) -> dict[str, Any]:
        """What ``retain plan`` and ``retain simulate`` print of a plan (planned mail is
        "recipients" there)."""
        return {"recipients": self.planned, "held_out": self.held_out,
                "suppressed": self.suppressed, "deferred": self.deferred,
                "capped": self.capped, "skipped": self.skipped_sorted()}

    def run_dict(self) -> dict[str, Any]:
        """What ``retain run --json`` prints of one campaign (and runs.summary keeps)."""
        return {"id": self.campaign_id, "planned": self.planned, "held_out": self.held_out,
                "suppressed": self.suppressed, "deferred": self.deferred,
                "capped": self.capped, "skipped": self.skipped_sorted(), "sent": self.sent,
                "failed": self.failed, "bounced": self.bounced, "unknown": self.unknown,
                "cancelled": self.cancelled}
