"""Render worker processes: ``compose.Composer`` in other processes, for big runs.

Owns: starting the workers, handing them pages of delivery ids and collecting their messages in
order, and making sure a worker dies with the run that started it. Rendering a message costs
more CPU than sending it (bench/pipeline.py), so while the run's process sends, the other cores
render. Must not claim, send or write to the database: workers only read their pages.
"""

from __future__ import annotations

import logging
import pickle
import subprocess
import sys
import threading
from collections import deque
from collections.abc import Mapping
from concurrent.futures import Future
from datetime import datetime

from sqlalchemy import Engine

from engine import childprocess
from engine.campaigns import models as cm
from engine.config import Settings
from engine.delivery.compose import Composer, Composing
from engine.mail.render import RendererCache

log = logging.getLogger(__name__)


class ComposerPool(Composer):
    """Renders pages in ``processes`` worker processes, so rendering uses another core while
    this process sends.

    Each worker is a fresh interpreter (childprocess.py, not multiprocessing) that reads pickled
    pages of delivery ids on stdin, reads those deliveries from the database and writes pickled
    messages on stdout. It exits when its stdin closes, so it dies with this process, even by
    SIGKILL. Starting one costs ~1 s (imports), so until a worker says it is ready, and if one
    dies, pages are composed here; a page a worker fails on is composed again here, which
    raises the error with its file and line. One customer's data never fails a page: the
    worker's Composer answers that delivery ``Unsendable`` among the others' messages.
    """

    def __init__(self, settings: Settings, campaigns: Mapping[str, cm.Campaign], processes: int,
                 engine: Engine | None = None, renderers: RendererCache | None = None):
        super().__init__(settings, campaigns, engine, renderers)
        self.lookahead = processes
        # Workers render, they do not plan: the compiled segment (not picklable) stays here.
        shipped = {k: c.model_copy(update={"segment": None}) for k, c in self.campaigns.items()}
        env = childprocess.environment()
        self._workers = [_Worker(env, (settings, shipped)) for _ in range(processes)]

    def submit(self, ids: list[int], now: datetime) -> Composing:
        ready = [w for w in self._workers if w.ready.is_set() and not w.dead]
        if not ready:
            return Composing(self, None, ids, now)  # composed here, when its turn comes
        worker = min(ready, key=lambda w: len(w.waiting))
        return Composing(self, worker.submit(ids, now), ids, now)

    def close(self) -> None:
        for worker in self._workers:
            worker.close()


class _Worker:
    """One worker process and the thread that reads its answers, in the order asked."""

    def __init__(self, env: dict[str, str], setup: tuple) -> None:
        self.process = subprocess.Popen(
            childprocess.command(__name__, "_serve"),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
        self.waiting: deque[Future] = deque()
        self.lock = threading.Lock()
        self.ready = threading.Event()
        self.dead = False
        pickle.dump(setup, self.process.stdin)
        self.process.stdin.flush()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def submit(self, ids: list[int], now: datetime) -> Future:
        future: Future = Future()
        with self.lock:
            self.waiting.append(future)
        try:
            pickle.dump((ids, now), self.process.stdin)
            self.process.stdin.flush()
        except OSError:
            pass  # it died: the reader answers None for it, and the page is composed here
        return future

    def _read(self) -> None:
        while True:
            try:
                answer = pickle.load(self.process.stdout)
            except (EOFError, OSError, pickle.UnpicklingError):
                with self.lock:
                    self.dead = True
                    waiting, self.waiting = self.waiting, deque()
                if waiting:
                    log.warning("a render worker stopped; composing its pages in the run's "
                                "process")
                for future in waiting:
                    future.set_result(None)
                return
            if not self.ready.is_set():
                self.ready.set()  # its first answer says it is ready
                continue
            with self.lock:
                future = self.waiting.popleft()
            future.set_result(answer)

    def close(self) -> None:
        try:
            self.process.stdin.close()
        except OSError:
            pass
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.reader.join()


def _serve() -> None:
    """A worker process: read and compose each page asked on stdin until stdin closes."""
    requests, answers = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # a stray print must not corrupt the answers
    settings, campaigns = pickle.load(requests)
    composer = Composer(settings, campaigns)
    pickle.dump("ready", answers)
    answers.flush()
    while True:
        try:
            ids, now = pickle.load(requests)
        except EOFError:
            return
        try:
            ready = composer.compose(ids, now)
        except Exception:  # noqa: BLE001 - the parent composes the page again to raise it
            ready = None
        pickle.dump(ready, answers)
        answers.flush()
