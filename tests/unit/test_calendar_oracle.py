"""The fast calendar against the minute-stepping oracle, on random calendars around DST
transitions in four zones. Seeded, so a failure reproduces; the assertion message carries
everything needed to rebuild the case."""

from __future__ import annotations

import functools
import random
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from domain.calendar import (
    BusinessCalendar,
    add_business_days,
    add_business_time,
    business_time_between,
    is_working,
    next_working_instant,
)
from tests.unit.oracle import (
    MINUTE,
    ZONES,
    MinuteTable,
    Spec,
    dst_dates,
    random_holidays,
    random_hours,
)

WINDOW_DAYS = 42
CHECKS_PER_CALENDAR = 150
SEEDS = range(8)


@functools.cache
def _scenario(tz: str, seed: int) -> tuple[Spec, MinuteTable, int]:
    """One random calendar and its oracle table; cached because building the table is the
    slow part and three tests share it."""
    rng = random.Random(f"{tz}/{seed}")
    year = rng.choice((2025, 2026, 2027))
    anchor = rng.choice(dst_dates(tz, year) or [date(year, rng.randint(1, 12), 15)])
    first = anchor - timedelta(days=rng.randint(2, 20))
    hours = random_hours(rng)
    if not any(hours.values()):
        hours[rng.randrange(7)] = [(time(9), time(17))]
    share = rng.choice((0.0, 0.1, 0.3))
    spec = Spec(tz, hours, random_holidays(rng, first, WINDOW_DAYS, share))
    origin = datetime(first.year, first.month, first.day, tzinfo=ZoneInfo(tz))
    table = MinuteTable.build(spec, origin, WINDOW_DAYS)
    hot = table.index(datetime(anchor.year, anchor.month, anchor.day, tzinfo=ZoneInfo(tz)))
    return spec, table, hot


def _delta_minutes(rng: random.Random) -> int:
    """Mostly small deltas (where DST and interval edges bite), sometimes days' worth."""
    size = rng.choice((5, 60, 600, 3000))
    return rng.randint(-size, size)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("tz", ZONES)
def test_every_minute_of_the_window_is_classified_like_the_oracle(tz: str, seed: int) -> None:
    spec, table, _ = _scenario(tz, seed)
    cal = BusinessCalendar(tz=spec.tz, hours=spec.hours, holidays=spec.holidays)
    wrong = [
        table.at(i).astimezone(ZoneInfo(tz)).isoformat()
        for i, flag in enumerate(table.flags)
        if is_working(table.at(i), cal) != flag
    ]
    assert not wrong, f"{spec}: misclassified minutes {wrong[:5]}"


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("tz", ZONES)
def test_operations_agree_with_the_oracle(tz: str, seed: int) -> None:
    spec, table, hot = _scenario(tz, seed)
    rng = random.Random(f"{tz}/{seed}/operations")
    cal = BusinessCalendar(tz=spec.tz, hours=spec.hours, holidays=spec.holidays)
    size = len(table.flags)
    compared = 0
    for _ in range(CHECKS_PER_CALENDAR):
        # A third of the starts within a day and a half of the DST change (the anchor).
        near = rng.random() < 1 / 3
        start = table.at(hot + rng.randint(-2160, 2160) if near else rng.randrange(size))
        minutes = _delta_minutes(rng)
        case = f"{spec} start={start.astimezone(ZoneInfo(tz)).isoformat()} minutes={minutes}"

        expected = table.add(start, minutes)
        if expected is not None:
            assert add_business_time(start, minutes * MINUTE, cal) == expected, case
            compared += 1

        other = table.at(rng.randrange(size + 1))
        assert business_time_between(start, other, cal) == table.between(start, other), (
            f"{case} other={other.isoformat()}"
        )

        expected = table.next_working(start)
        if expected is not None:
            assert next_working_instant(start, cal) == expected, case

        days = rng.randint(-5, 5)
        expected = table.add_business_days(start, days)
        if expected is not None:
            assert add_business_days(start, days, cal) == expected, f"{case} days={days}"
    # The window is sized so most random cases land inside it; if not, the test is hollow.
    assert compared > CHECKS_PER_CALENDAR // 2


def test_oracle_windows_cover_the_dst_transitions() -> None:
    """Each zone but Kolkata must put a DST change inside every window, or the comparison
    above would not exercise the hard part."""
    for tz in ZONES:
        for seed in SEEDS:
            _, table, _ = _scenario(tz, seed)
            zone = ZoneInfo(tz)
            offsets = {
                table.at(i).astimezone(zone).utcoffset() for i in range(0, len(table.flags), 60)
            }
            assert (len(offsets) == 2) == (tz != "Asia/Kolkata"), (tz, seed, offsets)


def test_oracle_itself_counts_real_minutes_across_fall_back() -> None:
    """Guard the guard: a 00:00-06:00 shift on Berlin's fall-back night is 7 real hours."""
    spec = Spec("Europe/Berlin", {6: [(time(0), time(6))]})
    origin = datetime(2026, 10, 25, tzinfo=ZoneInfo("Europe/Berlin"))
    table = MinuteTable.build(spec, origin, 1)
    assert table.between(origin, origin.astimezone(UTC) + timedelta(days=1)) == timedelta(hours=7)
