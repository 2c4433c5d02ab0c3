"""Cron specs as asynq (robfig/cron v3's standard parser) reads them, and their next fire.

Supported: five fields (minute hour day-of-month month day-of-week) with ``*``,
``?``, ranges, steps, lists and month/day names; the descriptors ``@yearly``,
``@annually``, ``@monthly``, ``@weekly``, ``@daily``, ``@midnight``, ``@hourly``;
``@every <go duration>``; and a ``CRON_TZ=<zone>`` (or ``TZ=``) prefix.

One difference from asynq, on purpose: ``@every`` fires on multiples of its interval
since the Unix epoch (not relative to each process's start), so that several
scheduler processes agree on the fire times and each fire happens once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from asyncq._scheduler.goformat import parse_go_duration

__all__ = ["CronSpec", "EverySpec", "Schedule", "parse_schedule"]

DESCRIPTORS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
MONTH_NAMES = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
MONTHS = {m: i + 1 for i, m in enumerate(MONTH_NAMES)}
DAYS = {d: i for i, d in enumerate(["sun", "mon", "tue", "wed", "thu", "fri", "sat"])}
# (low, high, names) of the five fields.
FIELDS = [(0, 59, {}), (0, 23, {}), (1, 31, {}), (1, 12, MONTHS), (0, 6, DAYS)]
SEARCH_DAYS = 366 * 5  # a spec that matches nothing within five years never fires
REPEAT_SPAN = 2  # hours a fall-back can repeat at most (Antarctica/Troll goes back two)
HOURS_PER_DAY = 24


class Schedule:
    """When an entry fires."""

    def next_after(self, moment: datetime) -> datetime | None:
        """The first fire strictly after ``moment`` (aware), or None if there is none."""
        raise NotImplementedError

    @property
    def interval(self) -> float:
        """A typical gap between fires, in seconds (used to size fire locks)."""
        raise NotImplementedError


@dataclass(frozen=True)
class EverySpec(Schedule):
    """``@every <duration>``: on multiples of the interval since the Unix epoch."""

    seconds: int  # whole seconds, as asynq's cron library keeps them

    def next_after(self, moment: datetime) -> datetime | None:
        # Integer steps: with a fractional interval, float rounding could hand back the
        # very moment it was given, and a caller looping to the next fire never ended.
        step = self.seconds
        return datetime.fromtimestamp((math.floor(moment.timestamp()) // step + 1) * step, UTC)

    @property
    def interval(self) -> float:
        return float(self.seconds)


@dataclass(frozen=True)
class CronSpec(Schedule):
    """A five-field cron spec evaluated in a time zone."""

    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]
    any_day: bool  # day-of-month was "*" or "?"
    any_weekday: bool  # day-of-week was "*" or "?"
    zone: tzinfo

    @property
    def interval(self) -> float:
        return 60.0 if len(self.minutes) > 1 else 3600.0

    def _day_matches(self, day: datetime) -> bool:
        if day.month not in self.months:
            return False
        dom = day.day in self.days
        dow = (day.isoweekday() % 7) in self.weekdays
        # robfig/cron: with either field unrestricted both must match, else either may.
        if self.any_day or self.any_weekday:
            return dom and dow
        return dom or dow

    def next_after(self, moment: datetime) -> datetime | None:
        after = moment.astimezone(UTC)
        local = after.astimezone(self.zone)
        # fold=0: a moment in the second pass of a repeated hour has fold=1, and a day kept
        # with it would read every wall time of the day as its second reading.
        day = local.replace(hour=0, minute=0, second=0, microsecond=0, tzinfo=None, fold=0)
        passed_hours = local.hour  # of the first day: before ``moment`` unless clocks go back
        for _ in range(SEARCH_DAYS):
            if self._day_matches(day):
                fire = self._first_on(day, after, passed_hours)
                if fire is not None:
                    return fire
            day += timedelta(days=1)
            passed_hours = 0
        return None

    def _first_on(self, day: datetime, after: datetime, passed_hours: int) -> datetime | None:
        """The first fire of a matching day after ``after``, hour by hour.

        When the clocks go back, a later wall hour can hold a reading earlier than one of
        this hour's (Chatham repeats 02:45-03:44, Troll goes back two hours): then the
        hours up to REPEAT_SPAN after the first with a fire are looked at too, and the
        earliest fire of them all is the next.
        """
        found: list[datetime] = []
        last_hour = HOURS_PER_DAY
        for hour in sorted(h for h in self.hours if h >= passed_hours - REPEAT_SPAN):
            if hour > last_hour:
                break
            if hour < passed_hours and self._steady(day, hour):
                continue  # wholly before ``after``: only a clock change could matter
            found += (
                fire
                for minute in self.minutes
                for fire in self._readings(day.replace(hour=hour, minute=minute))
                if fire > after
            )
            if found and last_hour == HOURS_PER_DAY:
                if self._steady(day, hour):
                    break  # no clock change near: this hour's fires come first
                last_hour = hour + REPEAT_SPAN
        return min(found) if found else None

    def _steady(self, day: datetime, hour: int) -> bool:
        """True when the zone keeps one UTC offset from this wall hour to REPEAT_SPAN
        hours after it (so no later hour of the day can hold an earlier reading)."""
        start = day.replace(hour=hour)
        end = start + timedelta(hours=REPEAT_SPAN + 1)
        offsets = {
            wall.replace(tzinfo=self.zone, fold=fold).utcoffset()
            for wall in (start, end)
            for fold in (0, 1)
        }
        return len(offsets) == 1

    def _readings(self, wall: datetime) -> list[datetime]:
        """The moments (UTC) a wall time of the zone stands for: none when a DST change
        skips it; its first reading; and, when the clocks go back and repeat it, its
        second reading too if the spec names more than one hour (hourly or finer), so that
        "every 15 minutes" keeps firing through the repeated hour, while a job at one hour
        of the day still fires once."""
        first = wall.replace(tzinfo=self.zone)
        if first.astimezone(UTC).astimezone(self.zone).replace(tzinfo=None) != wall:
            return []
        readings = [first.astimezone(UTC)]
        second = wall.replace(tzinfo=self.zone, fold=1)
        if len(self.hours) > 1 and second.utcoffset() != first.utcoffset():
            readings.append(second.astimezone(UTC))
        return readings


def _field(text: str, index: int) -> tuple[frozenset[int], bool]:
    low, high, names = FIELDS[index]
    values: set[int] = set()
    star = False  # for the day rule: as in robfig/cron, a part "*" or "?" with no step above 1
    for part in text.split(","):
        body, _, step_text = part.partition("/")
        step = int(step_text) if step_text else 1
        if step < 1:
            raise ValueError(f"step must be positive in {part!r}")
        if body in ("*", "?"):
            start, end = low, high
            star = star or step == 1
        else:
            first, _, last = body.partition("-")
            start = _value(first, names)
            end = _value(last, names) if last else (high if step_text else start)
        if not low <= start <= end <= high:
            raise ValueError(f"{part!r} is out of range {low}-{high}")
        values.update(range(start, end + 1, step))
    return frozenset(values), star


def _value(text: str, names: dict[str, int]) -> int:
    lowered = text.lower()
    if lowered in names:
        return names[lowered]
    if not text.isdigit():
        raise ValueError(f"{text!r} is not a number or a name")
    return int(text)


def parse_schedule(spec: str, location: tzinfo = UTC) -> Schedule:
    """Parse ``spec``; raises ``ValueError`` with what is wrong."""
    text = spec.strip()
    zone = location
    if text.startswith(("CRON_TZ=", "TZ=")):
        prefix, _, text = text.partition(" ")
        try:
            zone = ZoneInfo(prefix.split("=", 1)[1])
        except (ZoneInfoNotFoundError, ValueError) as error:
            raise ValueError(f"unknown time zone in {prefix!r}") from error
        text = text.strip()
    if text.startswith("@every"):
        seconds = parse_go_duration(text[len("@every") :])
        if seconds <= 0:
            raise ValueError("@every needs a positive duration")
        # As robfig's cron (asynq's): under a second is a second, and the rest of a second
        # is dropped (@every 1.5s fires every second).
        return EverySpec(max(int(seconds), 1))
    text = DESCRIPTORS.get(text, text)
    parts = text.split()
    if len(parts) != 5:
        raise ValueError(
            f"{spec!r} is not a 5-field cron spec (minute hour day month weekday), "
            "a descriptor such as @daily, or @every <duration>"
        )
    (minutes, _), (hours, _), (days, any_day), (months, _), (weekdays, any_weekday) = (
        _field(part, i) for i, part in enumerate(parts)
    )
    return CronSpec(minutes, hours, days, months, weekdays, any_day, any_weekday, zone)
