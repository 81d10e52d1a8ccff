"""A calendar's working time day by day, as an admin checks it after editing hours or
holidays: each local date's working intervals in wall time, or why it has none.

Pure: the hours come from `domain.calendar.working_intervals` (the same maths that plans
rungs, DST included), the holiday names from the caller.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Literal

from domain.calendar import BusinessCalendar, working_intervals

DayOff = Literal["weekend", "holiday", "custom"]


@dataclass(frozen=True, kw_only=True)
class WorkingDay:
    day: date
    hours: tuple[tuple[str, str], ...]  # local ("09:00", "17:00"); "24:00" ends the day
    off: DayOff | None = None
    reason: str | None = None  # "weekend", the holiday's name, "custom holiday"


def preview_days(
    cal: BusinessCalendar,
    first: date,
    days: int,
    *,
    holiday_names: Mapping[date, str],
    custom: Collection[date],
) -> list[WorkingDay]:
    """`days` local dates from `first`, each with its hours and why it has none."""
    preview = []
    for day in (first + timedelta(days=n) for n in range(days)):
        off, reason = _why_off(cal, day, holiday_names, custom)
        preview.append(WorkingDay(day=day, hours=local_hours(cal, day), off=off, reason=reason))
    return preview


def _why_off(
    cal: BusinessCalendar, day: date, holiday_names: Mapping[date, str], custom: Collection[date]
) -> tuple[DayOff | None, str | None]:
    """A holiday by its name from the country's rules, else as one of the calendar's own
    dates; a weekday without hours is a weekend. A working day has no reason."""
    if day in cal.holidays and day in holiday_names:
        return "holiday", holiday_names[day]
    if day in cal.holidays and day in custom:
        return "custom", "custom holiday"
    if not cal.hours[day.weekday()]:
        return "weekend", "weekend"
    return None, None


def local_hours(cal: BusinessCalendar, day: date) -> tuple[tuple[str, str], ...]:
    """The working intervals of local date `day` as wall times: real time, so on the night
    clocks change an interval shows as the clock on the wall reads it."""
    start = datetime.combine(day, time(0), tzinfo=cal.zone)
    end = datetime.combine(day + timedelta(days=1), time(0), tzinfo=cal.zone)
    return tuple(
        (_wall(at, cal, day), _wall(until, cal, day))
        for at, until in working_intervals(start, end, cal)
    )


def _wall(at: datetime, cal: BusinessCalendar, day: date) -> str:
    local = at.astimezone(cal.zone)
    return "24:00" if local.date() > day else f"{local:%H:%M}"
