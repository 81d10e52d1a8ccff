"""Calls per second of the calendar maths on a Berlin Mon-Fri 09-17 calendar with German
(Berlin) holidays. Run: `python bench/calendar_bench.py`.

"warm" repeats a call on one calendar, so the per-day interval cache is full: the state of a
long-lived worker. "cold" gives every call a calendar it has never seen (each differs by one
holiday in 1900), so it pays for building every day's intervals.
"""

from __future__ import annotations

import itertools
import sys
import time as clock
from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta
from functools import partial
from pathlib import Path
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from domain.calendar import (
    BusinessCalendar,
    add_business_days,
    add_business_time,
    business_time_between,
)
from domain.holidays_expand import build_calendar

Operation = Callable[[BusinessCalendar], object]
HOURS = {d: [(time(9), time(17))] for d in range(5)}
START = datetime(2026, 3, 2, 9, 30, tzinfo=ZoneInfo("Europe/Berlin")).astimezone(UTC)


def operations(cal: BusinessCalendar) -> list[tuple[str, Operation]]:
    rows: list[tuple[str, Operation]] = []
    for hours in (1, 10, 1_000):
        span = timedelta(hours=hours)
        end = add_business_time(START, span, cal)
        rows.append((f"add_business_time +{hours}h", partial(_add, span)))
        rows.append((f"business_time_between {hours}h", partial(_between, end)))
    for days in (3, 125):
        rows.append((f"add_business_days +{days}", partial(_add_days, days)))
    return rows


def _add(span: timedelta, cal: BusinessCalendar) -> object:
    return add_business_time(START, span, cal)


def _between(end: datetime, cal: BusinessCalendar) -> object:
    return business_time_between(START, end, cal)


def _add_days(days: int, cal: BusinessCalendar) -> object:
    return add_business_days(START, days, cal)


def rate(call: Callable[[], object], budget: float = 0.3) -> float:
    """Calls per second over about `budget` seconds."""
    calls, began = 0, clock.perf_counter()
    while (elapsed := clock.perf_counter() - began) < budget:
        for _ in range(10):
            call()
        calls += 10
    return calls / elapsed


def main() -> None:
    cal = build_calendar("Europe/Berlin", HOURS, country="DE", subdivision="BE")
    fresh = (
        BusinessCalendar(
            tz=cal.tz,
            hours=cal.hours,
            holidays={*cal.holidays, date(1900, 1, 1) + timedelta(days=i)},
        )
        for i in itertools.count()
    )
    print(
        f"{'operation':<30} {'warm calls/s':>13} {'warm µs':>9} {'cold calls/s':>13} {'cold µs':>9}"
    )
    for name, operation in operations(cal):
        operation(cal)
        warm = rate(partial(operation, cal))
        cold_calendars = [next(fresh) for _ in range(300)]  # built outside the timing
        pool = iter(cold_calendars)
        began = clock.perf_counter()
        for fresh_cal in pool:
            operation(fresh_cal)
        cold = len(cold_calendars) / (clock.perf_counter() - began)
        print(f"{name:<30} {warm:>13,.0f} {1e6 / warm:>9.1f} {cold:>13,.0f} {1e6 / cold:>9.1f}")


if __name__ == "__main__":
    main()
