"""A brute-force business calendar, written independently of domain/calendar.py.

It classifies every real UTC minute of a window by converting it to local wall time and
looking the wall time up in the weekday intervals and holidays: the definition of business
time, read literally. Operations then step minute by minute. That is slow, which is the point:
nothing is clever enough to share a bug with the fast implementation.

Minute steps are exact as long as interval bounds are whole minutes and the zone's offsets
are whole minutes (true for every zone used here, Lord Howe's half hour and Kolkata's +05:30
included): then working-ness cannot change inside a UTC minute.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

MINUTE = timedelta(minutes=1)
ZONES = ("Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "Asia/Kolkata")


@dataclass(frozen=True)
class Spec:
    """A calendar as plain data: what both implementations are built from."""

    tz: str
    hours: Mapping[int, Sequence[tuple[time, time]]]
    holidays: frozenset[date] = frozenset()

    def wall_is_working(self, local: datetime) -> bool:
        day = local.date()
        if day in self.holidays:
            return False
        wall = local.time()
        for start, end in self.hours.get(day.weekday(), ()):
            if start <= wall and (end == time(0) or wall < end):
                return True
        return False

    def is_working_day(self, day: date) -> bool:
        return day not in self.holidays and bool(self.hours.get(day.weekday()))


@dataclass
class MinuteTable:
    """Working flag of every UTC minute in [origin, origin + len(flags) minutes)."""

    spec: Spec
    origin: datetime
    flags: list[bool] = field(default_factory=list)

    @classmethod
    def build(cls, spec: Spec, origin: datetime, days: int) -> MinuteTable:
        zone = ZoneInfo(spec.tz)
        # UTC first: adding minutes to an aware local datetime is wall-clock arithmetic in
        # Python, which would skip or repeat the DST hour.
        origin = origin.astimezone(UTC)
        flags = [
            spec.wall_is_working((origin + i * MINUTE).astimezone(zone)) for i in range(days * 1440)
        ]
        return cls(spec=spec, origin=origin, flags=flags)

    def index(self, at: datetime) -> int:
        delta = at - self.origin
        if delta % MINUTE:
            raise ValueError(f"{at} is not minute aligned")
        return delta // MINUTE

    def at(self, index: int) -> datetime:
        return self.origin + index * MINUTE

    def is_working(self, at: datetime) -> bool:
        return self.flags[self.index(at)]

    def between(self, a: datetime, b: datetime) -> timedelta | None:
        i, j = self.index(a), self.index(b)
        if not (0 <= i <= len(self.flags) and 0 <= j <= len(self.flags)):
            return None
        if i <= j:
            return sum(self.flags[i:j]) * MINUTE
        return -sum(self.flags[j:i]) * MINUTE

    def add(self, start: datetime, minutes: int) -> datetime | None:
        """Step over working minutes; None when the answer lies outside the window."""
        k = self.index(start)
        if minutes == 0:
            return start
        counted = 0
        if minutes > 0:
            while k < len(self.flags):
                counted += self.flags[k]
                k += 1
                if counted == minutes:
                    return self.at(k)
            return None
        while k > 0:
            k -= 1
            counted += self.flags[k]
            if counted == -minutes:
                return self.at(k)
        return None

    def next_working(self, at: datetime) -> datetime | None:
        k = self.index(at)
        while k < len(self.flags):
            if self.flags[k]:
                return self.at(k)
            k += 1
        return None

    def add_business_days(self, start: datetime, days: int) -> datetime | None:
        zone = ZoneInfo(self.spec.tz)
        local = start.astimezone(zone)
        day = local.date()
        step = 1 if days > 0 else -1
        for _ in range(abs(days)):
            day += timedelta(days=step)
            while not self.spec.is_working_day(day):
                day += timedelta(days=step)
        wall = datetime(day.year, day.month, day.day, local.hour, local.minute, tzinfo=zone, fold=0)
        target = wall.astimezone(UTC)
        if not 0 <= self.index(target) < len(self.flags):
            return None
        return self.next_working(target)


def dst_dates(tz: str, year: int) -> list[date]:
    """Local dates in `year` whose UTC offset changes during the day."""
    zone = ZoneInfo(tz)
    found = []
    day = date(year, 1, 1)
    while day.year == year:
        start = datetime(day.year, day.month, day.day, tzinfo=zone)
        if start.utcoffset() != (start + timedelta(hours=23, minutes=59)).utcoffset():
            found.append(day)
        day += timedelta(days=1)
    return found


def random_hours(rng: random.Random) -> dict[int, list[tuple[time, time]]]:
    """Random weekly hours: split shifts, night shifts across midnight, full days, bounds
    inside DST hours. Points are drawn on a quarter-hour grid or, sometimes, any minute."""
    hours: dict[int, list[tuple[time, time]]] = {}
    for weekday in range(7):
        kind = rng.random()
        if kind < 0.2:
            continue
        if kind < 0.3:
            hours[weekday] = [(time(0), time(0))]
            continue
        grid = 15 if rng.random() < 0.7 else 1
        wanted = rng.choice((2, 2, 4, 4, 6))
        chosen: set[int] = set()
        while len(chosen) < wanted:
            # Often put a bound between 01:00 and 03:30, where the DST hours of all these
            # zones lie: a bound inside a skipped or repeated hour is the subtle case.
            near_dst = rng.random() < 0.35
            chosen.add(rng.randrange(60, 211, 15) if near_dst else rng.randrange(0, 1441, grid))
        points = sorted(chosen)
        if kind < 0.45:  # a night shift: this day works until 24:00
            points = sorted({*points[:-1], 1440})
        hours[weekday] = [
            (minute_time(points[i]), minute_time(points[i + 1]))
            for i in range(0, len(points) - 1, 2)
        ]
    # Night shifts: let the following day start at midnight where it is free to.
    for weekday, intervals in list(hours.items()):
        following = (weekday + 1) % 7
        if intervals and intervals[-1][1] == time(0) and not hours.get(following):
            hours[following] = [(time(0), time(rng.choice((4, 6))))]
    return hours


def minute_time(minutes: int) -> time:
    """Minutes after midnight as a time; 1440 (24:00) is written time(0)."""
    return time((minutes // 60) % 24, minutes % 60)


def random_holidays(rng: random.Random, first: date, days: int, share: float) -> frozenset[date]:
    return frozenset(first + timedelta(days=i) for i in range(days) if rng.random() < share)
