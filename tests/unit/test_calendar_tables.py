"""Worked examples: DST in three zones, holidays, split and night shifts, business days,
and the errors a bad calendar or a naive datetime must raise."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
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
from domain.holidays_expand import build_calendar

H = timedelta(hours=1)
NINE_TO_FIVE = {d: [(time(9), time(17))] for d in range(5)}
ALWAYS = {d: [(time(0), time(0))] for d in range(7)}
NIGHTS = {d: [(time(0), time(6))] for d in range(7)}


def local(tz: str, y: int, m: int, d: int, hh: int = 0, mm: int = 0, fold: int = 0) -> datetime:
    """A wall time in `tz`, as a UTC instant: Python never finds an ambiguous local datetime
    equal to one in another zone (PEP 495), so comparisons go through UTC."""
    return datetime(y, m, d, hh, mm, tzinfo=ZoneInfo(tz), fold=fold).astimezone(UTC)


def calendar(tz: str, hours: Any, holidays: Any = ()) -> BusinessCalendar:
    return BusinessCalendar(tz=tz, hours=hours, holidays=holidays)


@pytest.mark.parametrize(
    ("tz", "day", "hours", "expected"),
    [
        ("Europe/Berlin", date(2026, 3, 29), ALWAYS, 23 * H),
        ("Europe/Berlin", date(2026, 10, 25), ALWAYS, 25 * H),
        ("Europe/Berlin", date(2026, 3, 29), NIGHTS, 5 * H),
        ("Europe/Berlin", date(2026, 10, 25), NIGHTS, 7 * H),
        ("America/New_York", date(2026, 3, 8), ALWAYS, 23 * H),
        ("America/New_York", date(2026, 11, 1), ALWAYS, 25 * H),
        ("America/New_York", date(2026, 3, 8), NIGHTS, 5 * H),
        ("America/New_York", date(2026, 11, 1), NIGHTS, 7 * H),
        ("Australia/Lord_Howe", date(2026, 4, 5), ALWAYS, 24.5 * H),
        ("Australia/Lord_Howe", date(2026, 10, 4), ALWAYS, 23.5 * H),
        ("Australia/Lord_Howe", date(2026, 4, 5), NIGHTS, 6.5 * H),
        ("Australia/Lord_Howe", date(2026, 10, 4), NIGHTS, 5.5 * H),
        ("Europe/Berlin", date(2026, 6, 1), NIGHTS, 6 * H),
    ],
)
def test_dst_days_count_real_minutes(tz: str, day: date, hours: Any, expected: timedelta) -> None:
    cal = calendar(tz, hours)
    start = local(tz, day.year, day.month, day.day)
    end = local(tz, *(day + timedelta(days=1)).timetuple()[:3])
    assert business_time_between(start, end, cal) == expected
    assert business_time_between(end, start, cal) == -expected
    shift_end = end if hours is ALWAYS else local(tz, day.year, day.month, day.day, 6)
    assert add_business_time(start, expected, cal) == shift_end


def test_an_hour_after_the_spring_gap_opens_is_one_real_hour() -> None:
    cal = calendar("Europe/Berlin", ALWAYS)
    result = add_business_time(local("Europe/Berlin", 2026, 3, 29, 1, 30), H, cal)
    assert result == local("Europe/Berlin", 2026, 3, 29, 3, 30)


def test_the_repeated_autumn_hour_is_worked_twice() -> None:
    cal = calendar("Europe/Berlin", ALWAYS)
    first = local("Europe/Berlin", 2026, 10, 25, 2, 30, fold=0)
    second = local("Europe/Berlin", 2026, 10, 25, 2, 30, fold=1)
    assert add_business_time(first, H, cal) == second
    assert business_time_between(first, second, cal) == H


def test_lord_howe_half_hour_gap() -> None:
    cal = calendar("Australia/Lord_Howe", ALWAYS)
    start = local("Australia/Lord_Howe", 2026, 10, 4, 1, 30)
    assert add_business_time(start, H, cal) == local("Australia/Lord_Howe", 2026, 10, 4, 3)


def test_night_shift_on_fall_back_day_ends_after_seven_real_hours() -> None:
    cal = calendar("Europe/Berlin", NIGHTS)
    midnight = local("Europe/Berlin", 2026, 10, 25)
    assert add_business_time(midnight, 7 * H, cal) == local("Europe/Berlin", 2026, 10, 25, 6)
    one_more_minute = add_business_time(midnight, 7 * H + timedelta(minutes=1), cal)
    assert one_more_minute == local("Europe/Berlin", 2026, 10, 26, 0, 1)


def test_interval_ending_inside_the_repeated_hour_counts_both_passes() -> None:
    """Wall time 02:00-02:30 happens twice on fall-back night; both passes are working."""
    cal = calendar("Europe/Berlin", {6: [(time(0), time(2, 30))]})
    sunday = local("Europe/Berlin", 2026, 10, 25)
    assert business_time_between(sunday, sunday + 24 * H, cal) == 3 * H
    assert is_working(local("Europe/Berlin", 2026, 10, 25, 2, 15, fold=1), cal)
    assert not is_working(local("Europe/Berlin", 2026, 10, 25, 2, 45, fold=1), cal)


def test_interval_starting_inside_the_spring_gap_starts_when_the_gap_ends() -> None:
    cal = calendar("Europe/Berlin", {6: [(time(2, 30), time(5))]})
    sunday = local("Europe/Berlin", 2026, 3, 29)
    assert next_working_instant(sunday, cal) == local("Europe/Berlin", 2026, 3, 29, 3)
    assert business_time_between(sunday, local("Europe/Berlin", 2026, 3, 30), cal) == 2 * H


# --- holidays ----------------------------------------------------------------------------

BERLIN = build_calendar("Europe/Berlin", NINE_TO_FIVE, country="DE", subdivision="BE")


def test_christmas_is_skipped_by_business_time() -> None:
    start = local("Europe/Berlin", 2026, 12, 24, 16)  # Thursday; Fri 25th and Sat 26th off
    assert add_business_time(start, 2 * H, BERLIN) == local("Europe/Berlin", 2026, 12, 28, 10)
    assert not is_working(local("Europe/Berlin", 2026, 12, 25, 10), BERLIN)


def test_new_year_is_skipped_by_business_days() -> None:
    start = local("Europe/Berlin", 2026, 12, 31, 10)  # Thursday; Fri 1 Jan off
    assert add_business_days(start, 1, BERLIN) == local("Europe/Berlin", 2027, 1, 4, 10)
    assert not is_working(local("Europe/Berlin", 2027, 1, 1, 10), BERLIN)


def test_subdivision_and_custom_holidays() -> None:
    womens_day = date(2027, 3, 8)  # a Monday; a holiday in Berlin only
    assert womens_day in BERLIN.holidays
    germany = build_calendar("Europe/Berlin", NINE_TO_FIVE, country="DE", custom=[date(2026, 6, 1)])
    assert womens_day not in germany.holidays
    assert date(2026, 6, 1) in germany.holidays
    one_year = build_calendar("Europe/Berlin", NINE_TO_FIVE, country="DE", years=[2026])
    assert date(2026, 12, 25) in one_year.holidays
    assert date(2027, 1, 1) not in one_year.holidays


@pytest.mark.parametrize(
    ("country", "subdivision", "message"),
    [
        ("XX", None, "unknown holiday country"),
        ("DE", "ZZ", "unknown subdivision"),
        (None, "BE", "without"),
    ],
)
def test_unknown_holiday_rules_are_rejected(
    country: str | None, subdivision: str | None, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        build_calendar("Europe/Berlin", NINE_TO_FIVE, country=country, subdivision=subdivision)


# --- split and night shifts ----------------------------------------------------------------


def test_split_shift_skips_lunch() -> None:
    cal = calendar(
        "Europe/Berlin", {d: [(time(8, 30), time(12)), (time(13), time(17, 30))] for d in range(5)}
    )

    def at(hh: int, mm: int = 0) -> datetime:
        return local("Europe/Berlin", 2026, 6, 1, hh, mm)  # a Monday

    assert add_business_time(at(11, 30), H, cal) == at(13, 30)
    assert add_business_time(at(13, 15), -timedelta(minutes=30), cal) == at(11, 45)
    assert business_time_between(at(8), at(18), cal) == 8 * H
    assert not is_working(at(12, 30), cal)
    assert next_working_instant(at(12, 30), cal) == at(13)


def test_night_shift_across_midnight_is_contiguous() -> None:
    cal = calendar("Europe/Berlin", {0: [(time(22), time(0))], 1: [(time(0), time(6))]})
    mon_22, tue_06 = local("Europe/Berlin", 2026, 6, 1, 22), local("Europe/Berlin", 2026, 6, 2, 6)
    assert add_business_time(local("Europe/Berlin", 2026, 6, 1, 23), 2 * H, cal) == local(
        "Europe/Berlin", 2026, 6, 2, 1
    )
    assert business_time_between(mon_22, tue_06, cal) == 8 * H
    assert is_working(local("Europe/Berlin", 2026, 6, 2), cal)
    assert add_business_time(mon_22, 8 * H, cal) == tue_06
    assert add_business_time(tue_06, -8 * H, cal) == mon_22
    assert next_working_instant(tue_06, cal) == local("Europe/Berlin", 2026, 6, 8, 22)


# --- business days -------------------------------------------------------------------------

WEEKDAYS = calendar("Europe/Berlin", NINE_TO_FIVE)


@pytest.mark.parametrize(
    ("start", "days", "expected"),
    [
        ((2026, 6, 5, 10), 3, (2026, 6, 10, 10)),  # Fri + 3 -> Wed (the CAPA rule)
        ((2026, 6, 6, 10), 3, (2026, 6, 10, 10)),  # Sat + 3 -> Wed as well
        ((2026, 6, 7, 10), 3, (2026, 6, 10, 10)),  # Sun + 3 -> Wed
        ((2026, 6, 5, 18), 3, (2026, 6, 11, 9)),  # Fri 18:00 + 3 is after hours: Thu 09:00
        ((2026, 6, 10, 10), -3, (2026, 6, 5, 10)),  # Wed - 3 -> Fri
        ((2026, 6, 6, 10), -1, (2026, 6, 5, 10)),  # Sat - 1 -> Fri
        ((2026, 6, 6, 10), 0, (2026, 6, 8, 9)),  # Sat + 0 rolls to Monday opening
        ((2026, 6, 3, 7), 0, (2026, 6, 3, 9)),
    ],
)
def test_add_business_days(start: tuple[int, ...], days: int, expected: tuple[int, ...]) -> None:
    result = add_business_days(local("Europe/Berlin", *start), days, WEEKDAYS)
    assert result == local("Europe/Berlin", *expected)


def test_business_days_onto_dst_wall_times_use_fold_zero() -> None:
    cal = calendar("Europe/Berlin", ALWAYS)
    skipped = add_business_days(local("Europe/Berlin", 2026, 3, 26, 2, 30), 3, cal)
    assert skipped == local("Europe/Berlin", 2026, 3, 29, 3, 30)  # forward by the gap
    repeated = add_business_days(local("Europe/Berlin", 2026, 10, 22, 2, 30), 3, cal)
    assert repeated == local("Europe/Berlin", 2026, 10, 25, 2, 30, fold=0)


def test_zero_and_negative_business_time() -> None:
    saturday = local("Europe/Berlin", 2026, 6, 6, 10)
    assert add_business_time(saturday, timedelta(0), WEEKDAYS) == saturday
    monday = local("Europe/Berlin", 2026, 6, 8, 9, 30)
    assert add_business_time(monday, -H, WEEKDAYS) == local("Europe/Berlin", 2026, 6, 5, 16, 30)
    tiny = add_business_time(monday, timedelta(microseconds=1), WEEKDAYS)
    assert tiny - monday == timedelta(microseconds=1)


def test_inputs_in_other_zones_are_the_same_instants() -> None:
    friday_berlin = local("Europe/Berlin", 2026, 6, 5, 10)
    friday_new_york = friday_berlin.astimezone(ZoneInfo("America/New_York"))
    assert add_business_days(friday_new_york, 3, WEEKDAYS) == local(
        "Europe/Berlin", 2026, 6, 10, 10
    )
    assert add_business_time(friday_new_york, 8 * H, WEEKDAYS) == local(
        "Europe/Berlin", 2026, 6, 8, 10
    )


# --- errors --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tz", "hours", "holidays", "message"),
    [
        ("Mars/Olympus_Mons", NINE_TO_FIVE, (), "unknown time zone"),
        ("", NINE_TO_FIVE, (), "IANA"),
        ("Europe/Berlin", {0: [(time(9), time(12)), (time(11), time(13))]}, (), "overlap"),
        ("Europe/Berlin", {0: [(time(13), time(17)), (time(9), time(12))]}, (), "out of order"),
        ("Europe/Berlin", {0: [(time(17), time(9))]}, (), "start must be before end"),
        ("Europe/Berlin", {0: [(time(9), time(9))]}, (), "start must be before end"),
        ("Europe/Berlin", {7: [(time(9), time(17))]}, (), "weekday"),
        ("Europe/Berlin", {-1: [(time(9), time(17))]}, (), "weekday"),
        ("Europe/Berlin", {0: [("09:00", "17:00")]}, (), "naive times"),
        ("Europe/Berlin", {0: [(time(9, tzinfo=UTC), time(17))]}, (), "naive times"),
        ("Europe/Berlin", NINE_TO_FIVE, [datetime(2026, 1, 1, tzinfo=UTC)], "dates"),
    ],
)
def test_invalid_calendars_are_rejected(tz: str, hours: Any, holidays: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        BusinessCalendar(tz=tz, hours=hours, holidays=holidays)


NAIVE = datetime(2026, 6, 1, 10)  # noqa: DTZ001 - the point of these tests
AWARE = local("Europe/Berlin", 2026, 6, 1, 10)


@pytest.mark.parametrize(
    "call",
    [
        lambda: is_working(NAIVE, WEEKDAYS),
        lambda: next_working_instant(NAIVE, WEEKDAYS),
        lambda: add_business_time(NAIVE, H, WEEKDAYS),
        lambda: add_business_time(NAIVE, timedelta(0), WEEKDAYS),
        lambda: business_time_between(NAIVE, AWARE, WEEKDAYS),
        lambda: business_time_between(AWARE, NAIVE, WEEKDAYS),
        lambda: add_business_days(NAIVE, 1, WEEKDAYS),
    ],
)
def test_naive_datetimes_are_rejected(call: Callable[[], object]) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        call()


def test_a_calendar_without_working_time_fails_clearly() -> None:
    idle = calendar("Europe/Berlin", {})
    with pytest.raises(ValueError, match="no working"):
        next_working_instant(AWARE, idle)
    with pytest.raises(ValueError, match="no working"):
        add_business_days(AWARE, 1, idle)
    with pytest.raises(ValueError, match="no working"):
        add_business_time(AWARE, -H, idle)
    every_day = {date(2026, 1, 1) + timedelta(days=i) for i in range(11 * 366)}
    on_holiday = calendar("Europe/Berlin", NINE_TO_FIVE, every_day)
    with pytest.raises(ValueError, match="10 years"):
        next_working_instant(AWARE, on_holiday)
    with pytest.raises(ValueError, match="10 years"):
        add_business_days(AWARE, 1, on_holiday)


# --- data form -----------------------------------------------------------------------------


def test_round_trip_through_json() -> None:
    cal = calendar(
        "Europe/Berlin",
        {0: [(time(22), time(0))], 1: [(time(0), time(6)), (time(8, 30), time(12, 0, 30))]},
        {date(2026, 12, 25)},
    )
    data = json.loads(json.dumps(cal.to_dict()))
    assert data["hours"]["0"] == [["22:00", "24:00"]]
    assert data["holidays"] == ["2026-12-25"]
    again = BusinessCalendar.from_dict(data)
    assert again == cal
    assert hash(again) == hash(cal)
    assert BusinessCalendar.from_dict({"tz": "UTC", "hours": {0: [["09:00", "00:00"]]}}).hours[
        0
    ] == ((time(9), time(0)),)


@pytest.mark.parametrize(
    "data",
    [
        {"hours": {}},
        {"tz": "UTC", "hours": {"monday": []}},
        {"tz": "UTC", "hours": {"0": [["9am", "17:00"]]}},
        {"tz": "UTC", "hours": {"0": [["09:00"]]}},
        {"tz": "UTC", "hours": {}, "holidays": ["25.12.2026"]},
    ],
)
def test_bad_calendar_data_is_rejected(data: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=r"."):
        BusinessCalendar.from_dict(data)


def test_calendar_is_immutable() -> None:
    with pytest.raises(AttributeError):
        WEEKDAYS.tz = "UTC"  # type: ignore[misc]
