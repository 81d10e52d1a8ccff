"""Properties of the calendar maths on random calendars, instants and spans (microsecond
precision, four zones, instants clustered around DST changes). Where a property needs to know
whether an instant is working, it asks the oracle's wall-clock reading, not the code under test.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from domain.calendar import (
    BusinessCalendar,
    add_business_days,
    add_business_time,
    business_time_between,
    is_working,
    next_working_instant,
)
from tests.unit.oracle import ZONES, Spec, dst_dates, minute_time

US = timedelta(microseconds=1)
PROPERTY = settings(max_examples=150, deadline=None, database=None)

FIRST, LAST = date(2025, 1, 1), date(2027, 12, 31)
TRANSITIONS = sorted(
    {(tz, d) for tz in ZONES for y in (2025, 2026, 2027) for d in dst_dates(tz, y)}
)


def _intervals(points: list[int]) -> list[tuple[time, time]]:
    """Pair sorted quarter-hour points into intervals (an odd last point is dropped); 96
    quarters is 24:00."""
    even = points[: len(points) // 2 * 2]
    return [
        (minute_time(15 * a), minute_time(15 * b))
        for a, b in zip(even[::2], even[1::2], strict=True)
    ]


day_hours = st.lists(st.integers(0, 96), unique=True, max_size=6).map(sorted).map(_intervals)
weekly_hours = st.dictionaries(st.integers(0, 6), day_hours, max_size=7)
holiday_runs = st.tuples(st.dates(FIRST, LAST), st.integers(0, 20)).map(
    lambda run: {run[0] + timedelta(days=i) for i in range(run[1])}
)
holidays = st.tuples(st.frozensets(st.dates(FIRST, LAST), max_size=30), holiday_runs).map(
    lambda parts: frozenset(parts[0] | parts[1])
)
specs = st.builds(Spec, st.sampled_from(ZONES), weekly_hours, holidays).filter(
    lambda spec: any(spec.hours.values())
)

anywhere = st.datetimes(
    min_value=datetime(2025, 1, 1),  # noqa: DTZ001 - hypothesis attaches the zones
    max_value=datetime(2027, 12, 31),  # noqa: DTZ001
    timezones=st.sampled_from([ZoneInfo(tz) for tz in (*ZONES, "UTC")]),
)
near_dst = st.builds(
    lambda transition, offset: (
        datetime.combine(transition[1], time(0), tzinfo=ZoneInfo(transition[0])) + offset
    ),
    st.sampled_from(TRANSITIONS),
    st.timedeltas(min_value=-timedelta(days=2), max_value=timedelta(days=2)),
)
instants = st.one_of(anywhere, near_dst).map(lambda at: at.astimezone(UTC))
spans = st.timedeltas(min_value=-timedelta(hours=200), max_value=timedelta(hours=200))
positive_spans = st.timedeltas(min_value=US, max_value=timedelta(hours=200))


def build(spec: Spec) -> BusinessCalendar:
    return BusinessCalendar(tz=spec.tz, hours=spec.hours, holidays=spec.holidays)


def wall_working(spec: Spec, at: datetime) -> bool:
    return spec.wall_is_working(at.astimezone(ZoneInfo(spec.tz)))


@PROPERTY
@given(specs, instants)
def test_is_working_matches_the_wall_clock_definition(spec: Spec, at: datetime) -> None:
    assert is_working(at, build(spec)) == wall_working(spec, at)


@PROPERTY
@given(specs, instants, positive_spans)
def test_adding_time_never_ends_on_a_holiday_or_in_a_gap(
    spec: Spec, start: datetime, delta: timedelta
) -> None:
    """The result may sit exactly at an interval's end, so the microsecond before it must be
    working time on a working date."""
    result = add_business_time(start, delta, build(spec))
    assert result > start
    assert wall_working(spec, result - US)


@PROPERTY
@given(specs, instants, positive_spans)
def test_subtracting_time_lands_on_a_working_instant(
    spec: Spec, start: datetime, delta: timedelta
) -> None:
    result = add_business_time(start, -delta, build(spec))
    assert result < start
    assert wall_working(spec, result)


@PROPERTY
@given(specs, instants, spans)
def test_between_inverts_add(spec: Spec, start: datetime, delta: timedelta) -> None:
    cal = build(spec)
    assert business_time_between(start, add_business_time(start, delta, cal), cal) == delta


@PROPERTY
@given(specs, instants, spans, spans)
def test_add_is_monotonic_in_the_span(
    spec: Spec, start: datetime, one: timedelta, other: timedelta
) -> None:
    cal = build(spec)
    small, large = sorted((one, other))
    assert add_business_time(start, small, cal) <= add_business_time(start, large, cal)


@PROPERTY
@given(specs, instants, spans, spans)
def test_adds_in_one_direction_compose(
    spec: Spec, start: datetime, one: timedelta, other: timedelta
) -> None:
    """add(add(s, a), b) == add(s, a + b) when a and b point the same way."""
    cal = build(spec)
    a, b = abs(one), abs(other)
    if one < timedelta(0):
        a, b = -a, -b
    assert add_business_time(add_business_time(start, a, cal), b, cal) == add_business_time(
        start, a + b, cal
    )


@PROPERTY
@given(specs, instants)
def test_next_working_instant_is_the_first_working_instant(spec: Spec, at: datetime) -> None:
    cal = build(spec)
    found = next_working_instant(at, cal)
    assert found >= at
    assert wall_working(spec, found)
    assert business_time_between(at, found, cal) == timedelta(0)
    if found > at:
        assert not wall_working(spec, found - US)


@PROPERTY
@given(specs, instants, st.integers(-15, 15))
def test_business_days_land_on_a_working_instant_on_or_after_the_target_day(
    spec: Spec, start: datetime, days: int
) -> None:
    cal = build(spec)
    zone = ZoneInfo(spec.tz)
    result = add_business_days(start, days, cal)
    assert wall_working(spec, result)
    counted = 0
    day = start.astimezone(zone).date()
    landed = result.astimezone(zone).date()
    step = timedelta(days=1 if days > 0 else -1)
    while counted < abs(days):  # the target day, counted independently
        day += step
        counted += spec.is_working_day(day)
    assert landed >= day
    if days > 0:
        assert result > start
