"""The one fake clock of the suite: time moves only when a test (or the code's ``sleep``) says.

Calling the clock gives the wall-clock moment (what the scheduler and runner take as ``clock``);
``now`` reads or sets it; ``monotonic`` and ``sleep`` are what the SMTP transport and the runner
wait with, so back-offs and retries run in no real time. Setting ``now`` back never moves
``monotonic`` back.
"""

from __future__ import annotations

import threading
from datetime import datetime, timedelta

from tests.shopdata import NOW


class FakeClock:
    def __init__(self, start: datetime = NOW):
        self._now, self._monotonic, self.slept = start, 10_000.0, []
        self._lock = threading.Lock()

    def __call__(self) -> datetime:
        return self._now

    @property
    def now(self) -> datetime:
        return self._now

    @now.setter
    def now(self, moment: datetime) -> None:
        with self._lock:
            self._monotonic += max(0.0, (moment - self._now).total_seconds())
            self._now = moment

    def monotonic(self) -> float:
        return self._monotonic

    @property
    def elapsed(self) -> float:
        """Seconds this clock has moved forward since it was made."""
        return self._monotonic - 10_000.0

    def advance(self, **delta: float) -> None:
        self.now = self._now + timedelta(**delta)

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.slept.append(seconds)
        self.advance(seconds=max(0.0, seconds))
