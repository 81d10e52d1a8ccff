"""A calendar day by day: each local date's working hours in wall time (DST nights, night
shifts, working days that cross UTC midnight) and why a day is off (a weekend, a holiday by
its name, a custom date). Checked against worked examples and, on random calendars, against
the brute-force oracle's minutes."""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.calendar import BusinessCalendar, working_intervals
from domain.calendar_preview import local_hours, preview_days
from domain.holidays_expand import build_calendar, holiday_names
from tests.unit.oracle import MinuteTable, Spec, dst_dates
from tests.unit.test_calendar_properties import FIRST, LAST, PROPERTY, TRANSITIONS, build, specs

NINE_TO_FIVE = {d: [(time(9), time(17))] for d in range(5)}
EVERY_DAY = range(7)


def test_a_berlin_christmas_week_says_why_each_day_is_off() -> None:
    eve = date(2026, 12, 24)
    cal = build_calendar(
        "Europe/Berlin", NINE_TO_FIVE, country="DE", subdivision="BE", custom=[eve]
    )
    names = holiday_names("DE", "BE", [2026])
    week = preview_days(cal, date(2026, 12, 21), 7, holiday_names=names, custom={eve})
    nine_to_five = (("09:00", "17:00"),)
    assert [(d.day, d.hours, d.off, d.reason) for d in week] == [
        (date(2026, 12, 21), nine_to_five, None, None),
        (date(2026, 12, 22), nine_to_five, None, None),
        (date(2026, 12, 23), nine_to_five, None, None),
        (eve, (), "custom", "custom holiday"),
        (date(2026, 12, 25), (), "holiday", "Christmas Day"),
        # A Saturday, but the holiday says more than "weekend".
        (date(2026, 12, 26), (), "holiday", "Second Day of Christmas"),
        (date(2026, 12, 27), (), "weekend", "weekend"),
    ]


def test_a_holiday_the_rules_name_is_named_even_when_it_is_also_a_custom_date() -> None:
    christmas = date(2026, 12, 25)
    cal = build_calendar("Europe/Berlin", NINE_TO_FIVE, country="DE", custom=[christmas])
    [day] = preview_days(
        cal, christmas, 1, holiday_names=holiday_names("DE", None, [2026]), custom={christmas}
    )
    assert (day.off, day.reason) == ("holiday", "Christmas Day")


@pytest.mark.parametrize(
    ("tz", "day", "hours", "expected"),
    [
        # The 23-hour and the 25-hour day still run from 00:00 to 24:00 on the wall.
        ("Europe/Berlin", date(2026, 3, 29), [(time(0), time(0))], (("00:00", "24:00"),)),
        ("Europe/Berlin", date(2026, 10, 25), [(time(0), time(0))], (("00:00", "24:00"),)),
        ("Europe/Berlin", date(2026, 3, 29), [(time(0), time(6))], (("00:00", "06:00"),)),
        # An hour the clock skips is no working time.
        ("Europe/Berlin", date(2026, 3, 29), [(time(2), time(3))], ()),
        # A night shift shows on each date as the part of it that date has.
        (
            "Europe/Berlin",
            date(2026, 6, 1),
            [(time(0), time(6)), (time(22), time(0))],
            (("00:00", "06:00"), ("22:00", "24:00")),
        ),
        (
            "Europe/Berlin",
            date(2026, 6, 1),
            [(time(8), time(12)), (time(13), time(17))],
            (("08:00", "12:00"), ("13:00", "17:00")),
        ),
        # Touching intervals are one.
        (
            "Europe/Berlin",
            date(2026, 6, 1),
            [(time(8), time(12)), (time(12), time(17))],
            (("08:00", "17:00"),),
        ),
        # Working days that cross a UTC midnight are not cut there.
        ("America/Los_Angeles", date(2026, 6, 1), [(time(8), time(18))], (("08:00", "18:00"),)),
        ("Asia/Kolkata", date(2026, 6, 1), [(time(0), time(0))], (("00:00", "24:00"),)),
    ],
)
def test_a_days_hours_in_wall_time(tz: str, day: date, hours: Any, expected: Any) -> None:
    cal = BusinessCalendar(tz=tz, hours=dict.fromkeys(EVERY_DAY, hours))
    assert local_hours(cal, day) == expected


def test_a_preview_is_the_days_asked_for_in_order() -> None:
    cal = BusinessCalendar(tz="Europe/Berlin", hours=NINE_TO_FIVE)
    days = preview_days(cal, date(2026, 12, 30), 14, holiday_names={}, custom=())
    assert [d.day for d in days] == [date(2026, 12, 30) + timedelta(days=n) for n in range(14)]
    assert [d.off for d in days[:5]] == [None, None, None, "weekend", "weekend"]


dates = st.one_of(st.dates(FIRST, LAST), st.sampled_from(sorted({d for _, d in TRANSITIONS})))


@PROPERTY
@given(specs, dates)
def test_a_days_hours_are_exactly_its_business_time(spec: Spec, day: date) -> None:
    """The intervals are the oracle's working minutes of that local date, in order and apart;
    the day is off (and why) exactly as its weekday and holidays say."""
    cal = build(spec)
    [preview] = preview_days(cal, day, 1, holiday_names={}, custom=spec.holidays)
    zone = ZoneInfo(spec.tz)
    start = datetime.combine(day, time(0), tzinfo=zone).astimezone(UTC)
    end = datetime.combine(day + timedelta(days=1), time(0), tzinfo=zone).astimezone(UTC)
    real = working_intervals(start, end, cal)
    oracle = MinuteTable.build(spec, start, 2)
    assert sum((b - a for a, b in real), timedelta()) == oracle.between(start, end)
    for (_, b), (c, _) in itertools.pairwise(real):
        assert b < c  # in order, and touching ones are one
    assert all(start <= a < b <= end and oracle.is_working(a) for a, b in real)
    assert len(preview.hours) == len(real)

    if day in spec.holidays:
        assert (preview.off, preview.reason, preview.hours) == ("custom", "custom holiday", ())
    elif not spec.hours.get(day.weekday()):
        assert (preview.off, preview.reason, preview.hours) == ("weekend", "weekend", ())
    else:
        assert (preview.off, preview.reason) == (None, None)
    if day not in dst_dates(spec.tz, day.year):
        assert preview.hours == wall_hours(spec, day)


def wall_hours(spec: Spec, day: date) -> tuple[tuple[str, str], ...]:
    """On a day the offset does not change: the weekday's intervals as written, touching
    ones joined (none on a holiday)."""
    if day in spec.holidays:
        return ()
    joined: list[list[str]] = []
    for start, end in spec.hours.get(day.weekday(), ()):
        a, b = f"{start:%H:%M}", "24:00" if end == time(0) else f"{end:%H:%M}"
        if joined and joined[-1][1] == a:
            joined[-1][1] = b
        else:
            joined.append([a, b])
    return tuple((a, b) for a, b in joined)
