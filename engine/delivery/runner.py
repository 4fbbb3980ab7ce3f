"""One run: plan every campaign at ``now``, then render → claim → send → record each delivery.

The same code path serves ``retain run`` and every scheduled tick. Order of work: mark the
``sending`` rows of dead runs ``unknown``; plan campaigns by priority and write the plans to the
ledger; then send what is due, by pages of PAGE deliveries in id order:

    main thread     due ids ──► compose (here, or in render worker processes) ──► queue
    sender threads  queue ──► outbox.Outbox.step: record the previous outcome + claim this one,
    (max_connections)         committed (with the other threads' steps), before DATA ──► send

So a crash leaves at most one row a sender thread in ``sending`` (the message in flight), which
the next run reports ``unknown``; nothing planned is lost and nothing is sent twice. The claim
re-checks suppression and consent, so an unsubscribe during the run counts at once. What each
outcome means for its row and for the run is ``verdicts``' to say: a bounce suppresses the
address; a policy refusal (5.7.x) or too many bounces pauses the run without suppressing anyone;
while the server's back-off holds, the run stops feeding messages and waits (within
``delivery.retry_within_run_seconds``); what was composed and not claimed stays ``planned``.

Reads no clock of its own: ``now`` fixes the plan, and an injected ``clock`` stamps sends and
schedules retries (the CLI passes the wall clock, tests a fake one).
"""

from __future__ import annotations

import os
import queue
import threading
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine

from engine.campaigns import limits, planner
from engine.campaigns import models as cm
from engine.campaigns.counts import Counts
from engine.config import Settings
from engine.delivery import compose, ledger, outbox, renderworkers, runs, verdicts
from engine.mail.render import RendererCache
from engine.transport import Transport

Clock = Callable[[], datetime]
PAGE = 200
POOL_MIN = 2000  # due messages from which rendering in worker processes pays
RETRY_PAUSE = 0.25  # seconds, at least, before a run offers again what its last pass put back


@dataclass
class RunReport:
    run_id: str
    campaigns: dict[str, Counts] = field(default_factory=dict)
    recovered_unknown: int = 0
    paused: str | None = None       # refused by the server: campaigns pause until resumed
    interrupted: str | None = None  # the server could not be reached: the next run tries again
    dry_run: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "dry_run": self.dry_run, "paused": self.paused,
                "interrupted": self.interrupted,
                "recovered_unknown": self.recovered_unknown,
                "campaigns": [c.run_dict() for c in self.campaigns.values()]}

    def counts(self, campaign_id: str) -> Counts:
        return self.campaigns.setdefault(campaign_id, Counts(campaign_id))


class Sender:
    """Sender threads, one SMTP connection each (``smtp.max_connections``): claim → send →
    record, and the run's brakes.

    Each thread takes composed messages from a bounded queue and, per message, has its previous
    outcome recorded and this one claimed (``outbox.Outbox.step``, committed together with the
    other threads' steps) then hands the message to the transport. A bounce is recorded at once,
    with its suppression. When the ``brakes`` stop the run (a policy refusal, too many bounces,
    an unreachable server) nothing more is claimed and what is queued stays ``planned``.
    ``stop`` (the scheduler's graceful stop) halts the same way, unpaused.
    """

    def __init__(self, engine: Engine, settings: Settings, transport: Transport, run_id: str,
                 clock: Clock, report: RunReport, stop: threading.Event | None = None,
                 queued: int = 2 * PAGE):
        self.engine, self.transport, self.run_id = engine, transport, run_id
        self.clock, self.report, self.stop = clock, report, stop
        self.settings, self.delivery = settings, settings.delivery
        self.queue: queue.Queue[compose.Ready | None] = queue.Queue(maxsize=queued)
        self.pending = 0  # messages put and not yet recorded or skipped
        self.idle = threading.Condition()
        self.lock = threading.Lock()
        self.halt = threading.Event()
        self.brakes = verdicts.Brakes(settings)
        self.outbox = outbox.Outbox(engine, run_id)
        self.put_back: datetime | None = None  # the earliest retry recorded in this pass
        self.error: BaseException | None = None
        self.beaten_at = clock()
        runs.heartbeat(engine, run_id, self.beaten_at)  # planning may have taken a while
        self.threads = [threading.Thread(target=self._work, name=f"sender-{n}", daemon=True)
                        for n in range(settings.smtp.max_connections)]
        for thread in self.threads:
            thread.start()

    @property
    def paused(self) -> str | None:
        return self.brakes.paused

    @property
    def interrupted(self) -> str | None:
        return self.brakes.interrupted

    def halted(self) -> bool:
        return self.halt.is_set() or (self.stop is not None and self.stop.is_set())

    def put(self, ready: list[compose.Ready]) -> None:
        for item in ready:
            with self.idle:
                self.pending += 1
            self.queue.put(item)

    def drain(self) -> None:
        """Wait until every message put so far is recorded (or skipped)."""
        with self.idle:
            self.idle.wait_for(lambda: self.pending == 0)
        if self.error is not None:
            raise self.error

    def close(self) -> None:
        for _ in self.threads:
            self.queue.put(None)
        for thread in self.threads:
            thread.join()
        self.outbox.close()

    # -- one sender thread -------------------------------------------------------------------

    def _work(self) -> None:
        held: list[outbox.Result] = []  # a sent message's outcome, recorded with the next claim
        while True:
            try:
                item = self.queue.get_nowait()
            except queue.Empty:
                self._safely(self._record, held)  # nothing to claim: record it now
                item = self.queue.get()
            if item is None:
                self._safely(self._record, held)
                return
            self._safely(self._send, held, item)

    def _safely(self, step: Callable[..., None], *args: Any) -> None:
        try:
            step(*args)
        except BaseException as error:  # noqa: BLE001 - drain() raises it in the run's thread
            with self.lock:
                self.error = self.error or error
            self.halt.set()
            held = args[0]
            self._finished(len(held))  # not recorded: stays `sending`, the next run says unknown
            held.clear()

    def _record(self, held: list[outbox.Result]) -> None:
        if held:
            self.outbox.step(held[0], None, self.clock())
            held.clear()
            self._finished(1)

    def _send(self, held: list[outbox.Result], item: compose.Ready) -> None:
        finished = 1  # this message, unless its outcome is held to be recorded later
        try:
            if self.halted():
                self._record(held)
                return
            claim = self.outbox.step(held[0] if held else None, item.delivery_id,
                                     self.clock(), item.message.message_id)
            self._finished(len(held))
            held.clear()
            if claim is None:
                return  # another run took it
            if claim.suppressed:
                self._count(item.campaign_id, "suppressed")
                return
            if claim.cancelled:
                self._count(item.campaign_id, "cancelled")
                return
            self._beat()
            outcome = self.transport.send(item.message)
            now = self.clock()
            held.append(verdicts.result(item, claim.attempts, outcome, now, self.settings))
            finished = 0  # from here on, counted when its outcome is recorded
            if held[0].retry_at is not None:
                with self.lock:
                    self.put_back = min(self.put_back or held[0].retry_at, held[0].retry_at)
            counter = verdicts.counted_as(outcome)
            if counter:
                self._count(item.campaign_id, counter)
            if self.brakes.check(outcome, now):
                self.halt.set()
            if held[0].suppress:  # suppress the address before anyone sends to it again
                self._record(held)
        finally:
            self._finished(finished)

    def _beat(self) -> None:
        now = self.clock()
        with self.lock:
            if now - self.beaten_at < runs.HEARTBEAT:
                return
            self.beaten_at = now
        runs.heartbeat(self.engine, self.run_id, now)

    def _finished(self, count: int) -> None:
        if count:
            with self.idle:
                self.pending -= count
                if self.pending == 0:
                    self.idle.notify_all()

    def _count(self, campaign_id: str, what: str) -> None:
        with self.lock:
            self.report.counts(campaign_id).count(what)


def run(engine: Engine, settings: Settings, chosen: Iterable[cm.Campaign], now: datetime,
        transport: Transport | None, *, clock: Clock | None = None, dry_run: bool = False,
        sleep: Callable[[float], None] | None = None,
        progress: Callable[[int], None] | None = None, stop: threading.Event | None = None,
        render_processes: int | None = None, plan: bool = True,
        renderers: RendererCache | None = None) -> RunReport:
    """Plan and deliver ``chosen`` campaigns at ``now``. ``dry_run`` plans without writing.

    ``render_processes``: worker processes that render while this one sends (``composer_for``;
    None chooses).
    ``plan=False`` only sends what is due (retries, mail held back by quiet hours).
    ``renderers``: the caller's cache of prepared templates (the scheduler keeps one across
    runs); without one, this run prepares its own.
    """
    chosen = sorted(chosen, key=lambda c: -c.priority)
    clock = clock or (lambda: now)
    run_id = runs.start_run(engine, [c.id for c in chosen], now) if not dry_run else "dry-run"
    report = RunReport(run_id=run_id, dry_run=dry_run)
    if not dry_run:
        report.recovered_unknown = ledger.recover(engine, now, current_run=run_id)
    # Highest priority first: it takes the room under the frequency cap before the others.
    caps = limits.Caps(engine, settings, now, in_memory=dry_run)
    for campaign in chosen if plan else []:
        batches = planner.plan(engine, settings, campaign, now,
                               counts=report.counts(campaign.id), caps=caps)
        if dry_run:
            for _ in batches:
                pass
        else:
            # What this run wrote: a run planning the same occasions at the same time may have
            # written some of them first, and each delivery is planned once.
            written = ledger.record_plan(engine, batches, now)
            counts = report.counts(campaign.id)
            for status in ("planned", "held_out", "suppressed", "deferred", "capped"):
                setattr(counts, status, written.get(status, 0))
    if dry_run or transport is None:
        return report
    composer = composer_for(engine, settings, chosen, clock(), render_processes, renderers)
    sender = Sender(engine, settings, transport, run_id, clock, report, stop)
    try:
        _deliver(engine, sender, composer, [c.id for c in chosen], clock, sleep, progress)
    except BaseException:
        sender.halt.set()  # what is queued and not claimed stays planned for the next run
        raise
    finally:
        composer.close()
        sender.close()
        report.paused, report.interrupted = sender.paused, sender.interrupted
        runs.finish_run(engine, run_id, clock(), report.as_dict(), sender.paused)
    return report


def composer_for(engine: Engine, settings: Settings, chosen: list[cm.Campaign], now: datetime,
                 render_processes: int | None = None,
                 renderers: RendererCache | None = None) -> compose.Composer:
    """What composes ``chosen`` campaigns' messages: ``render_processes`` render worker
    processes, or this process. None chooses one per core but one when POOL_MIN messages or more
    are due (starting one costs ~1 s of CPU), else none: while one core sends, the others
    render, and the sender threads do not wait behind the renderer for the interpreter."""
    if render_processes is None:
        cores = os.cpu_count() or 1
        render_processes = cores - 1 if cores > 1 and ledger.due_count(
            engine, [c.id for c in chosen], now) >= POOL_MIN else 0
    by_id = {c.id: c for c in chosen}
    if render_processes:
        return renderworkers.ComposerPool(settings, by_id, render_processes, engine, renderers)
    return compose.Composer(settings, by_id, engine, renderers)


def _deliver(engine: Engine, sender: Sender, composer: compose.Composer, campaign_ids: list[str],
             clock: Clock, sleep: Callable[[float], None] | None,
             progress: Callable[[int], None] | None) -> None:
    """Send everything due; retry transient failures within the run while they fall due soon."""
    deadline = clock() + timedelta(seconds=sender.delivery.retry_within_run_seconds)
    while not sender.halted():
        # Quiet hours are checked again at send time: a retry or a late run must wait too.
        started, sender.put_back = clock(), None
        ledger.hold_for_quiet_hours(engine, sender.settings, campaign_ids, started)
        one_pass(sender, composer, clock, progress,
                  lambda after: ledger.due(engine, campaign_ids, clock(), after, PAGE))
        # Next: what this pass put back, or what falls due after it began (what was due
        # before, it was offered).
        now, retry_at = clock(), ledger.next_retry(engine, campaign_ids, started)
        if sender.put_back is not None:
            retry_at = min(retry_at or sender.put_back, sender.put_back)
        if sender.brakes.holding(now):  # the server asked us to wait: nothing goes before
            retry_at = max(retry_at or now, sender.brakes.held_until)
        if retry_at is None or sleep is None or retry_at > deadline or sender.halted():
            break
        # At least a moment: what a pass put back for "now" is offered again at once, and
        # there held back again (a loop that spins on a real clock, and never lets a test's
        # fake clock move at all).
        sleep(max((retry_at - clock()).total_seconds(), RETRY_PAUSE))
    if not sender.halted():
        sender.brakes.finish(clock())


def one_pass(sender: Sender, composer: compose.Composer, clock: Clock,
              progress: Callable[[int], None] | None,
              fetch: Callable[[int], list[int]]) -> int:
    """The deliveries ``fetch(after_id)`` gives, a page at a time (a run: the due ones by id; a
    worker: the ones it leased); composing runs ``composer.lookahead`` pages ahead of sending.
    Returns, when every message is recorded, how many deliveries were fetched."""
    window: deque[compose.Composing] = deque()
    after = fetched = 0
    try:
        # While the server's back-off holds, what is queued is held; feeding more would only
        # claim and give back each message (``_deliver`` waits for the back-off instead).
        while not sender.halted() and not sender.brakes.holding(clock()):
            ids = fetch(after)
            fetched += len(ids)
            if ids:
                window.append(composer.submit(ids, clock()))
                after = ids[-1]
            if not window:
                break
            if ids and len(window) <= composer.lookahead:
                continue
            composed = window.popleft().result()
            sender.put(_fail_unsendable(sender.engine, sender, composed))
            if progress:
                progress(len(composed))
    finally:
        for composing in window:
            composing.cancel()
    sender.drain()
    return fetched


def _fail_unsendable(engine: Engine, sender: Sender,
                     composed: list[compose.Ready | compose.Unsendable]) -> list[compose.Ready]:
    """Record the deliveries whose customer's data cannot make a message as failed for good
    (the reason names the customer and field); the others go on to the sender threads."""
    unsendable = {u.delivery_id: u for u in composed if isinstance(u, compose.Unsendable)}
    if unsendable:
        for delivery_id in ledger.fail_for_good(
                engine, [(u.delivery_id, u.reason) for u in unsendable.values()]):
            sender._count(unsendable[delivery_id].campaign_id, "failed")
    return [r for r in composed if isinstance(r, compose.Ready)]
