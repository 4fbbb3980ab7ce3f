"""A campaign's ``schedule:``: a five-field crontab read as cron means it, in a time zone.

Owns: parsing a crontab into APScheduler 3.x's ``CronTrigger`` (the library handles the calendar
and daylight-saving changes), with cron's day numbers (0 or 7 is Sunday; APScheduler counts 0 as
Monday), firing once per local wall time across a change of clocks, and the next tick after a
moment. One definition for both its users: campaign validation (models.py refuses a bad
schedule with its file and line) and the service (service/schedule.py, the scheduler). Pure:
takes the moment; must not read the clock or touch the database.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from apscheduler.triggers.cron import CronTrigger

_WEEKDAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat", "sun")


def trigger(expression: str, zone: ZoneInfo) -> CronTrigger:
    """A five-field crontab as a trigger in ``zone``; ValueError says what is wrong.

    Numbers in the day-of-week field are written as names first, so "0 9 * * 1" means Mondays,
    as a marketer who knows cron expects.
    """
    fields = expression.split()
    if len(fields) != 5:
        raise ValueError(f"a cron schedule has five fields, this one has {len(fields)}")
    fields[4] = ",".join(_weekday_names(part) for part in fields[4].split(","))
    minute, hour, day, month, weekday = fields
    return OncePerWallTime(minute=minute, hour=hour, day=day, month=month,
                           day_of_week=weekday, timezone=zone)


def next_after(cron: CronTrigger, moment: datetime) -> datetime | None:
    """The first tick strictly after ``moment``."""
    return cron.get_next_fire_time(moment, moment + timedelta(microseconds=1))


class OncePerWallTime(CronTrigger):
    """CronTrigger that fires once per local wall time across a daylight-saving change.

    When clocks go back, APScheduler 3.x fires a 02:30 job twice (02:30 +02:00 and 02:30
    +01:00) and then keeps answering the second one: a scheduler would spin. Here a tick that
    repeats the previous one's wall time, or does not move forward, is stepped over.
    """

    def get_next_fire_time(self, previous_fire_time, now):
        probe_previous, probe_now = previous_fire_time, now
        for _ in range(100):
            tick = super().get_next_fire_time(probe_previous, probe_now)
            if tick is None or previous_fire_time is None:
                return tick
            if tick > previous_fire_time and not _same_wall_time(tick, previous_fire_time):
                return tick
            # Ask again from an hour later, as a fresh start, past the repeated hour.
            probe_previous, probe_now = None, max(tick, now) + timedelta(hours=1)
        return None


def _same_wall_time(a: datetime, b: datetime) -> bool:
    zone = a.tzinfo
    return a.replace(tzinfo=None) == b.astimezone(zone).replace(tzinfo=None)


def _weekday_names(part: str) -> str:
    base, _, step = part.partition("/")
    if base == "*" and step:
        return ",".join(_WEEKDAYS[d] for d in range(0, 7, int(step)))
    names = "-".join(_WEEKDAYS[int(x)] if x.isdigit() and int(x) <= 7 else x
                     for x in base.split("-"))
    return f"{names}/{step}" if step else names
