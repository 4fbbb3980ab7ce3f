"""``retain scheduler``: the long-running service that runs each campaign on its cron.

Owns the wiring, not the rules: APScheduler 3.x with one cron job per enabled campaign (store
time zone), one worker so runs never overlap, each job the same ``runner.run`` as ``retain run``;
the leader lease (a second scheduler on the same database waits, and takes over when the first
one's lease lapses); catch-up of a tick missed while the service was down (once, within the grace
period); re-reading campaign files on SIGHUP or every ``reload_every`` seconds, keeping the last
valid version when a file is broken; syncing the shop's ``sources:`` before each tick and every
``sync_every`` on their own, and holding campaigns back (logged, and said by ``retain status``)
while the stale-data guard says the data is too old; and a graceful stop on SIGTERM/SIGINT
(stop claiming, finish the message in flight, release the lease, exit 0).

Besides the CLI, this is the one place that reads the clock — through the ``clock`` it is given,
so tests drive it with a fake one.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from sqlalchemy import Engine

from engine.campaigns import models as cm
from engine.campaigns import validate
from engine.config import Settings
from engine.consent import erasure
from engine.delivery import ledger, runner
from engine.errors import Invalid
from engine.mail.render import RendererCache
from engine.service import schedule
from engine.service.leader import LeaderLease
from engine.shop import freshness, sources
from engine.transport import Transport

log = logging.getLogger(__name__)
Clock = Callable[[], datetime]


def wall_clock() -> datetime:
    return datetime.now(UTC)


class Scheduler:
    """The service. ``start()`` returns at once; ``wait()`` blocks until ``stop()``."""

    def __init__(self, engine: Engine, settings: Settings,
                 transport_factory: Callable[[], Transport] | None, *, clock: Clock = wall_clock,
                 grace: timedelta = timedelta(hours=6), reload_every: float | None = None,
                 lease_ttl: timedelta = timedelta(seconds=60), send_due_every: float = 300):
        self.engine, self.settings, self.transport_factory = engine, settings, transport_factory
        self.clock, self.grace, self.reload_every = clock, grace, reload_every
        self.send_due_every = send_due_every
        self.lease = LeaderLease(engine, ttl=lease_ttl)
        self.campaigns: dict[str, cm.Campaign] = {}
        self.stopping = threading.Event()
        self.leading = False
        # The latest runs only: a service that runs for a year must not keep every report.
        self.runs: deque[runner.RunReport] = deque(maxlen=100)
        # Templates prepared once for the service's life, again only when a file changes.
        self.renderers = RendererCache()
        self._lock = threading.Lock()
        self._aps = BackgroundScheduler(
            timezone=settings.store.zone,
            executors={"default": ThreadPoolExecutor(max_workers=1)},
            job_defaults={"coalesce": True, "max_instances": 1,
                          "misfire_grace_time": int(grace.total_seconds())})

    # --- life cycle ------------------------------------------------------------------------

    def start(self, paused: bool = False) -> None:
        """Load campaigns, take the lead if free, catch up missed ticks, start the cron jobs."""
        self.campaigns = {c.id: c for c in validate.check(self.settings)}
        self.try_lead()
        now = self.clock()
        if self.leading:
            schedule.start_tracking(self.engine, self.campaigns.values(), now)
        self._aps.start(paused=paused)
        self._install_jobs()
        renew_every = max(1, int(self.lease.ttl.total_seconds() / 3))
        self._aps.add_job(self.try_lead, "interval", seconds=renew_every, id="_lease",
                          replace_existing=True)
        # Mail held back by quiet hours, and transient failures, go out between cron ticks.
        self._aps.add_job(self.send_due, "interval", seconds=self.send_due_every,
                          id="_send_due", replace_existing=True)
        if self.reload_every:
            self._aps.add_job(self.reload, "interval", seconds=self.reload_every, id="_reload",
                              replace_existing=True)
        for source in self.settings.sources:
            self._aps.add_job(self.sync_sources, "interval", args=[[source.name]],
                              seconds=source.sync_every.total_seconds(),
                              id=f"_sync:{source.name}", replace_existing=True)
        if self.leading:
            self._aps.add_job(self.catch_up, id="_catch_up", replace_existing=True)

    def stop(self) -> None:
        """Graceful: no new claims, the message in flight finishes, the lease is released."""
        self.stopping.set()
        if self._aps.running:
            self._aps.shutdown(wait=True)
        if self.leading:
            self.lease.release()
            self.leading = False

    def wait(self) -> None:
        while not self.stopping.wait(0.5):
            pass

    def install_signals(self) -> None:
        signal.signal(signal.SIGTERM, lambda *_: self.stopping.set())
        signal.signal(signal.SIGINT, lambda *_: self.stopping.set())
        if hasattr(signal, "SIGHUP"):
            signal.signal(signal.SIGHUP, lambda *_: self._aps.add_job(self.reload))

    # --- leadership --------------------------------------------------------------------------

    def try_lead(self) -> bool:
        now = self.clock()
        was = self.leading
        self.leading = self.lease.renew(now) if was else self.lease.acquire(now)
        if was and not self.leading:
            log.error("lost the scheduler lease to another process; standing by")
        elif not was and self.leading:
            log.info("leading: this scheduler runs the campaigns")
            if self._aps.running:
                schedule.start_tracking(self.engine, self.campaigns.values(), now)
        return self.leading

    # --- campaigns ---------------------------------------------------------------------------

    def reload(self) -> bool:
        """Re-read campaign files; on any problem keep running the last valid set."""
        try:
            fresh = {c.id: c for c in validate.check(self.settings)}
        except Invalid as exc:
            for problem in exc.problems:
                log.error("campaign files not reloaded: %s", problem)
            return False
        with self._lock:
            self.campaigns = fresh
        self._install_jobs()
        if self.leading:
            schedule.start_tracking(self.engine, fresh.values(), self.clock())
        log.info("campaigns reloaded: %s", ", ".join(sorted(fresh)) or "none")
        return True

    def _install_jobs(self) -> None:
        wanted = {cid for cid, c in self.campaigns.items() if c.enabled and c.schedule}
        for job in self._aps.get_jobs():
            if not job.id.startswith("_") and job.id not in wanted:
                job.remove()
        for cid in sorted(wanted):
            self._aps.add_job(self.fire, schedule.trigger(self.campaigns[cid],
                                                          self.settings.store.zone),
                              args=[cid], id=cid, replace_existing=True)

    def next_runs(self) -> dict[str, datetime | None]:
        return {job.id: job.next_run_time for job in self._aps.get_jobs()
                if not job.id.startswith("_")}

    # --- running -----------------------------------------------------------------------------

    def fire(self, campaign_id: str) -> runner.RunReport | None:
        """A cron tick: run the campaign now, if we lead and it is not paused."""
        return self.run_campaigns([campaign_id], self.clock())

    def catch_up(self) -> list[str]:
        """Run, once, every campaign whose tick passed while no scheduler was running."""
        now = self.clock()
        states = schedule.states(self.engine)
        chosen, _ = schedule.runnable(self.engine, self.campaigns.values())
        late = schedule.due(chosen, self.settings.store.zone, now,
                            {cid: s["last_fire_at"] for cid, s in states.items()}, self.grace)
        ids = [d.campaign_id for d in late]
        if ids:
            log.info("catching up missed runs: %s", ", ".join(ids))
            self.run_campaigns(ids, now)
        return ids

    def send_due(self) -> runner.RunReport | None:
        """Send what is due (quiet hours over, retries due) without planning anything new."""
        now, ids = self.clock(), sorted(self.campaigns)
        if not self.leading or not ids or self.transport_factory is None:
            return None  # (no transport: it plans only, `retain worker`s send)
        ledger.hold_for_quiet_hours(self.engine, self.settings, ids, now)
        if ledger.due_count(self.engine, ids, now) == 0:
            return None  # no run row every few minutes for nothing
        return self.run_campaigns(ids, now, plan=False)

    def sync_sources(self, names: list[str] | None = None) -> list[sources.SyncResult]:
        """Sync the shop's sources (all, or ``names``); failures are logged, never raised."""
        if self.stopping.is_set() or not self.leading or not self.settings.sources:
            return []
        try:
            results = sources.sync(self.engine, self.settings, self.clock(), names,
                                   forget=erasure.forget)
        except Exception as exc:  # noqa: BLE001 - a sync must never stop the service
            log.error("sources not synced: %s", sources.syncstate.one_line(exc))
            return []
        for result in results:  # file names and counts only: no addresses in the log
            for note in result.notes:
                log.info("source %s: %s", result.source, note)
            if result.error:
                log.error("source %s: %s", result.source, result.error)
        return results

    def run_campaigns(self, ids: list[str], now: datetime,
                      plan: bool = True) -> runner.RunReport | None:
        if self.stopping.is_set() or not self.leading:
            return None
        with self._lock:
            wanted = [self.campaigns[i] for i in ids if i in self.campaigns]
        chosen, _ = schedule.runnable(self.engine, wanted)
        if not chosen:
            return None
        if plan:  # a tick plans on the shop's latest data, or not at all
            self.sync_sources()
            stale = freshness.check(self.engine, self.settings, now)
            if stale is not None:
                log.error("campaigns %s not run: %s", ", ".join(c.id for c in chosen),
                          stale.sentence(self.settings.store.zone))
                return None
        transport = self.transport_factory() if self.transport_factory else None
        try:
            report = runner.run(self.engine, self.settings, chosen, now, transport,
                                clock=self.clock, stop=self.stopping, plan=plan,
                                renderers=self.renderers)
        finally:
            if transport is not None:
                transport.close()
        for campaign in chosen:
            if plan:
                schedule.mark_fired(self.engine, campaign.id, now, report.run_id)
            if report.paused:
                schedule.pause(self.engine, campaign.id, report.paused, now)
        if self.stopping.is_set():
            ledger.release(self.engine, report.run_id)
        for c in report.campaigns.values():  # counts only: no addresses in the log
            log.info("%s %s: planned %d, sent %d, failed %d, bounced %d, unknown %d, held out "
                     "%d, deferred %d", "ran" if plan else "sent due mail for", c.campaign_id,
                     c.planned, c.sent, c.failed, c.bounced, c.unknown, c.held_out, c.deferred)
        if report.paused:
            log.error("run paused: %s", report.paused)
        if report.interrupted:
            log.error("run stopped: %s", report.interrupted)
        self.runs.append(report)
        return report
