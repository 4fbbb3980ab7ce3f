"""Pacing on our side of the wire: a rate limit, and back-offs for whoever asked us to wait.

Owns: ``RateLimiter`` (a token bucket shared by sender threads) and ``Backoff`` (keys such as
the server or a recipient domain, each with a window that doubles while the key keeps asking us
to slow down). Both run on an injected monotonic ``clock`` (and ``sleep``), so tests move time
themselves.

Must not: send, read the wall clock, or know what a key stands for (``smtp`` decides which
replies back what off).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from engine.transport import backoff

Clock = Callable[[], float]
Sleep = Callable[[float], None]


class RateLimiter:
    """A token bucket shared by threads: on average ``per_second`` messages, ``burst`` at once.

    A caller that finds the bucket empty reserves its token (the count goes negative) and then
    sleeps outside the lock, so waiting threads are served in turn and none starves.
    """

    def __init__(self, per_second: float, burst: float = 1.0,
                 clock: Clock = time.monotonic, sleep: Sleep = time.sleep):
        if per_second <= 0 or burst < 1:
            raise ValueError("per_second must be positive and burst at least 1")
        self.per_second, self.burst = per_second, burst
        self._clock, self._sleep = clock, sleep
        self._tokens = burst
        self._updated = clock()
        self._lock = threading.Lock()

    def wait(self) -> float:
        """Take one token, sleeping until it is due; returns the seconds slept."""
        with self._lock:
            now = self._clock()
            self._tokens = min(self.burst,
                               self._tokens + (now - self._updated) * self.per_second)
            self._updated = now
            self._tokens -= 1
            delay = -self._tokens / self.per_second if self._tokens < 0 else 0.0
        if delay > 0:
            self._sleep(delay)
        return delay


class Backoff:
    """Keys (the server, recipient domains) that asked us to slow down, and until when.

    ``after`` signals in a row open a window of ``base`` seconds; each signal after a window
    ends doubles the next one, up to ``cap``; ``clear`` (the key answered normally) forgets.
    A signal during a window neither lengthens it nor counts: it comes from a try that began
    before the window did (four threads refused at once are one refusal, not four).
    """

    def __init__(self, base: float, cap: float, after: int = 1,
                 clock: Clock = time.monotonic):
        self.base, self.cap, self.after = base, cap, after
        self._clock = clock
        self._entries: dict[str, tuple[int, float]] = {}  # key → (signals in a row, until)
        self._lock = threading.Lock()

    def remaining(self, key: str) -> float:
        """Seconds until ``key`` may be tried again; 0.0 when it may be tried now."""
        with self._lock:
            entry = self._entries.get(key)
        return max(0.0, entry[1] - self._clock()) if entry else 0.0

    def signals(self, key: str) -> int:
        """Signals in a row so far: 0 when ``key`` answers normally."""
        with self._lock:
            return self._entries.get(key, (0, 0.0))[0]

    def signal(self, key: str) -> float:
        """``key`` asked us to slow down again; returns the seconds it is now held (0: not)."""
        with self._lock:
            now = self._clock()
            count, until = self._entries.get(key, (0, 0.0))
            if until > now:
                return until - now
            count += 1
            delay = backoff(count - self.after + 1, self.base, self.cap) \
                if count >= self.after else 0.0
            self._entries[key] = (count, now + delay)
            return delay

    def held(self) -> dict[str, float]:
        """Every key held back now, with the seconds it still is."""
        now = self._clock()
        with self._lock:
            return {k: until - now for k, (_, until) in self._entries.items() if until > now}

    def hold(self, key: str, seconds: float) -> None:
        """Hold ``key`` back for ``seconds`` from now (another sender was asked to wait), without
        counting a signal; a longer window already open stays."""
        with self._lock:
            now = self._clock()
            count, until = self._entries.get(key, (0, 0.0))
            self._entries[key] = (count, max(until, now + seconds))

    def clear(self, key: str) -> None:
        with self._lock:
            self._entries.pop(key, None)
