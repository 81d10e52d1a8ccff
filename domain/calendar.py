"""Business-time maths on a working calendar.

Business time is the *real* elapsed time during which the calendar's local wall clock lies
inside a working interval on a date that is not a holiday. Real, because an SLA breached
an hour early on the night clocks go back is still breached: a repeated working hour counts
twice, a skipped one counts zero.

Internally every instant is an integer count of microseconds since the Unix epoch (UTC), and
the timeline is cut into UTC days ("chunks"). For each chunk we compute, once and cached, the
exact real intervals whose wall time is working. Every operation then walks chunks, so its cost
grows with the calendar days spanned, never with minutes.

Inputs may be aware datetimes in any zone; results are always UTC. (UTC also sidesteps a
Python trap: an ambiguous local datetime never compares equal to one in another zone.)

Nothing here reads the clock or does I/O: callers pass `now`. Only the standard library is
imported, so a Temporal workflow sandbox can pass this module through unchanged.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

Interval = tuple[time, time]
HoursSpec = Mapping[int, Sequence[Interval]] | Sequence[Sequence[Interval]]

WEEKDAY_NAMES = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")

_DAY = 86_400_000_000  # microseconds in a UTC day; chunks are UTC days
_ONE_US = timedelta(microseconds=1)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_EPOCH_DATE = date(1970, 1, 1)
# 1970-01-01 was a Thursday; lets us get a weekday from a day number without building a date.
_EPOCH_WEEKDAY = 3
# "No working time within ten years" is how we tell a dead calendar from a sparse one.
_SEARCH_LIMIT_DAYS = 3_660
# Stay two days clear of datetime's limits so offset lookups never overflow.
_MIN_DAY = (date(1, 1, 3) - _EPOCH_DATE).days
_MAX_DAY = (date(9999, 12, 29) - _EPOCH_DATE).days


@dataclass(frozen=True, init=False)
class BusinessCalendar:
    """An IANA zone, weekly working intervals and holiday dates. Immutable and hashable.

    `hours` maps weekday (0=Monday) to sorted, non-overlapping local `[start, end)` intervals;
    an `end` of `time(0)` means midnight at the end of that day. It is stored as a tuple of
    seven tuples, so `cal.hours[d.weekday()]` always works.
    """

    tz: str
    hours: tuple[tuple[Interval, ...], ...]
    holidays: frozenset[date]
    # Derived forms used by the hot loops; excluded from equality because they follow from
    # the three public fields.
    _zone: ZoneInfo = field(repr=False, compare=False)
    _hours_us: tuple[tuple[tuple[int, int], ...], ...] = field(repr=False, compare=False)
    _holiday_days: frozenset[int] = field(repr=False, compare=False)
    _hash: int = field(repr=False, compare=False)

    def __init__(self, *, tz: str, hours: HoursSpec, holidays: Iterable[date] = ()) -> None:
        zone = _load_zone(tz)
        days = _normalise_hours(hours)
        holiday_set = frozenset(_check_holiday(d) for d in holidays)
        setter = object.__setattr__  # the dataclass is frozen; this is its constructor
        setter(self, "tz", tz)
        setter(self, "hours", days)
        setter(self, "holidays", holiday_set)
        setter(self, "_zone", zone)
        setter(self, "_hours_us", tuple(tuple(map(_interval_us, day)) for day in days))
        setter(self, "_holiday_days", frozenset((d - _EPOCH_DATE).days for d in holiday_set))
        # The per-chunk cache hashes the calendar on every lookup; compute it once.
        setter(self, "_hash", hash((tz, days, holiday_set)))

    def __hash__(self) -> int:
        return self._hash

    @property
    def zone(self) -> ZoneInfo:
        return self._zone

    def is_working_day(self, day: date) -> bool:
        """A date that is not a holiday and has at least one interval (add_business_days)."""
        return bool(self.hours[day.weekday()]) and day not in self.holidays

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form: {"tz", "hours": {"0": [["09:00", "17:00"]]}, "holidays": [iso]}."""
        return {
            "tz": self.tz,
            "hours": {
                str(wd): [[_time_str(s), _time_str(e, end=True)] for s, e in day]
                for wd, day in enumerate(self.hours)
                if day
            },
            "holidays": sorted(d.isoformat() for d in self.holidays),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BusinessCalendar:
        try:
            tz, raw_hours = data["tz"], data["hours"]
        except (KeyError, TypeError) as exc:
            raise ValueError("calendar needs 'tz' and 'hours'") from exc
        if not isinstance(tz, str) or not isinstance(raw_hours, Mapping):
            raise ValueError("calendar 'tz' must be a string and 'hours' an object")
        hours: dict[int, list[Interval]] = {}
        for key, intervals in raw_hours.items():
            try:
                weekday = int(key)
            except (TypeError, ValueError) as exc:
                raise ValueError(f"weekday key must be 0..6, got {key!r}") from exc
            hours[weekday] = [_parse_interval(pair) for pair in intervals]
        holidays = [_parse_date(d) for d in data.get("holidays", ())]
        return cls(tz=tz, hours=hours, holidays=holidays)


def is_working(at: datetime, cal: BusinessCalendar) -> bool:
    us = _to_us(at, "at")
    return any(s <= us < e for s, e in _chunk(cal, us // _DAY))


def next_working_instant(at: datetime, cal: BusinessCalendar) -> datetime:
    """`at` itself if it is working, else the start of the next working interval."""
    for start, _ in _forward(cal, _to_us(at, "at")):
        return _from_us(start)
    raise AssertionError("unreachable: _forward raises rather than ending")


def add_business_time(start: datetime, delta: timedelta, cal: BusinessCalendar) -> datetime:
    """Earliest t >= start with `delta` of business time in [start, t); for a negative delta,
    the latest t <= start with `-delta` of business time in [t, start)."""
    origin = _to_us(start, "start")
    remaining = delta // _ONE_US
    if remaining == 0:
        return _from_us(origin)
    if remaining > 0:
        for lo, hi in _forward(cal, origin):
            if remaining <= hi - lo:
                return _from_us(lo + remaining)
            remaining -= hi - lo
    else:
        remaining = -remaining
        for lo, hi in _backward(cal, origin):
            if remaining <= hi - lo:
                return _from_us(hi - remaining)
            remaining -= hi - lo
    raise AssertionError("unreachable: the walkers raise rather than ending")


def business_time_between(a: datetime, b: datetime, cal: BusinessCalendar) -> timedelta:
    """Business time in [a, b); negative when b < a."""
    lo, hi = _to_us(a, "a"), _to_us(b, "b")
    sign = 1
    if hi < lo:
        lo, hi, sign = hi, lo, -1
    total = sum(e - s for s, e in _between(cal, lo, hi))
    return timedelta(microseconds=sign * total)


def working_intervals(
    start: datetime, end: datetime, cal: BusinessCalendar
) -> list[tuple[datetime, datetime]]:
    """The working time in [start, end) as real UTC intervals, clipped to it, in order.
    Intervals that touch are one, also across a UTC midnight."""
    merged: list[tuple[int, int]] = []
    for s, e in _between(cal, _to_us(start, "start"), _to_us(end, "end")):
        if merged and merged[-1][1] == s:
            merged[-1] = (merged[-1][0], e)
        else:
            merged.append((s, e))
    return [(_from_us(s), _from_us(e)) for s, e in merged]


def add_business_days(start: datetime, days: int, cal: BusinessCalendar) -> datetime:
    """The same local wall time `days` working days later (earlier if negative), rolled
    forward to the next working instant. A start on a weekend counts from its own date, so
    Friday 10:00 + 3 and Saturday 10:00 + 3 both land on Wednesday 10:00."""
    _to_us(start, "start")
    local = start.astimezone(cal.zone)
    target = local.date()
    step = timedelta(days=1 if days > 0 else -1)
    remaining, idle = abs(days), 0
    if remaining and not any(cal.hours):
        raise ValueError("calendar has no working days at all")
    while remaining:
        target += step
        if cal.is_working_day(target):
            remaining, idle = remaining - 1, 0
        else:
            idle += 1
            if idle > _SEARCH_LIMIT_DAYS:
                raise ValueError(f"calendar has no working day within 10 years of {target}")
    # fold=0 is zoneinfo's default reading: a skipped wall time moves forward by the gap and a
    # repeated one means its first occurrence. The spec pins that choice.
    wall = datetime.combine(target, local.time().replace(fold=0), tzinfo=cal.zone)
    return next_working_instant(wall, cal)


# --- internals --------------------------------------------------------------------------


def _to_us(at: datetime, what: str) -> int:
    if not isinstance(at, datetime):
        raise TypeError(f"{what} must be a datetime, got {type(at).__name__}")
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError(f"{what} must be timezone-aware, got naive {at.isoformat()}")
    return (at - _EPOCH) // _ONE_US


def _from_us(us: int) -> datetime:
    return _EPOCH + timedelta(microseconds=us)


def _offset_us(zone: ZoneInfo, us: int) -> int:
    offset = _from_us(us).astimezone(zone).utcoffset()
    if offset is None:  # pragma: no cover - ZoneInfo always answers for aware datetimes
        raise ValueError(f"zone {zone.key} has no UTC offset")
    return offset // _ONE_US


@functools.lru_cache(maxsize=65_536)
def _offset_pieces(zone: ZoneInfo, lo: int, hi: int) -> tuple[tuple[int, int, int], ...]:
    """Split the real span [lo, hi) into (start, end, utc_offset) pieces of constant offset.

    zoneinfo keeps its transition table private, so we compare the offsets at both ends and
    bisect to the second (tzdata transitions fall on whole seconds). A chunk is one UTC day;
    no zone changes its offset twice within one day (outside a few wartime oddities), so one
    bisection suffices.
    Cached apart from the calendar: every calendar in a zone shares the answer.
    """
    first, last = _offset_us(zone, lo), _offset_us(zone, hi)
    if first == last:
        return ((lo, hi, first),)
    before, after = lo // 1_000_000, hi // 1_000_000  # seconds: offset(before)=first
    while after - before > 1:
        mid = (before + after) // 2
        if _offset_us(zone, mid * 1_000_000) == first:
            before = mid
        else:
            after = mid
    switch = after * 1_000_000
    if switch == hi:
        return ((lo, hi, first),)
    return (lo, switch, first), (switch, hi, _offset_us(zone, switch))


@functools.lru_cache(maxsize=65_536)
def _chunk(cal: BusinessCalendar, day: int) -> tuple[tuple[int, int], ...]:
    """Real working intervals inside UTC day `day`, sorted and with adjacent ones merged.

    For each constant-offset piece we translate the real span to wall time, intersect it with
    the wall-clock working intervals of the local dates it touches, and translate back. This is
    the exact "wall time inside a working interval" set, also when an interval boundary falls
    inside a skipped or repeated hour.
    """
    if not _MIN_DAY <= day <= _MAX_DAY:
        raise ValueError("business-time search ran outside the supported date range")
    lo = day * _DAY
    out: list[tuple[int, int]] = []
    for piece_lo, piece_hi, offset in _offset_pieces(cal.zone, lo, lo + _DAY):
        wall_lo, wall_hi = piece_lo + offset, piece_hi + offset
        for local_day in range(wall_lo // _DAY, (wall_hi - 1) // _DAY + 1):
            if local_day in cal._holiday_days:
                continue
            base = local_day * _DAY
            for start, end in cal._hours_us[(local_day + _EPOCH_WEEKDAY) % 7]:
                a, b = max(base + start, wall_lo), min(base + end, wall_hi)
                if a >= b:
                    continue
                # Back to real time with this piece's offset; merge with a touching
                # predecessor (night shifts across midnight, 24x7 calendars).
                if out and out[-1][1] == a - offset:
                    out[-1] = (out[-1][0], b - offset)
                else:
                    out.append((a - offset, b - offset))
    return tuple(out)


def _between(cal: BusinessCalendar, lo: int, hi: int) -> Iterator[tuple[int, int]]:
    """Working intervals inside [lo, hi), clipped to it."""
    for day in range(lo // _DAY, (hi - 1) // _DAY + 1):
        for s, e in _chunk(cal, day):
            if min(e, hi) > max(s, lo):
                yield max(s, lo), min(e, hi)


def _forward(cal: BusinessCalendar, origin: int) -> Iterator[tuple[int, int]]:
    """Working intervals from `origin` on, clipped to start no earlier than it."""
    _require_some_hours(cal)
    day, idle = origin // _DAY, 0
    while True:
        found = False
        for s, e in _chunk(cal, day):
            if e > origin:
                found = True
                yield max(s, origin), e
        idle = 0 if found else idle + 1
        if idle > _SEARCH_LIMIT_DAYS:
            raise _no_working_time("after", day)
        day += 1


def _backward(cal: BusinessCalendar, origin: int) -> Iterator[tuple[int, int]]:
    """Working intervals before `origin`, latest first, clipped to end no later than it."""
    _require_some_hours(cal)
    day, idle = (origin - 1) // _DAY, 0
    while True:
        found = False
        for s, e in reversed(_chunk(cal, day)):
            if s < origin:
                found = True
                yield s, min(e, origin)
        idle = 0 if found else idle + 1
        if idle > _SEARCH_LIMIT_DAYS:
            raise _no_working_time("before", day)
        day -= 1


def _no_working_time(direction: str, day: int) -> ValueError:
    near = _EPOCH_DATE + timedelta(days=day)
    return ValueError(f"calendar has no working time within 10 years {direction} {near}")


def _require_some_hours(cal: BusinessCalendar) -> None:
    if not any(cal.hours):
        raise ValueError("calendar has no working intervals on any weekday")


# --- construction and validation -------------------------------------------------------


def _load_zone(tz: str) -> ZoneInfo:
    if not isinstance(tz, str) or not tz:
        raise ValueError(f"time zone must be an IANA name like 'Europe/Berlin', got {tz!r}")
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {tz!r}") from exc


def _normalise_hours(hours: HoursSpec) -> tuple[tuple[Interval, ...], ...]:
    if isinstance(hours, Mapping):
        items = list(hours.items())
    elif isinstance(hours, Sequence) and not isinstance(hours, str):
        items = list(enumerate(hours))
    else:
        raise ValueError("hours must map weekday (0=Monday..6=Sunday) to intervals")
    days: list[tuple[Interval, ...]] = [()] * 7
    for weekday, intervals in items:
        if isinstance(weekday, bool) or not isinstance(weekday, int) or not 0 <= weekday <= 6:
            raise ValueError(f"weekday must be an int 0..6 (0=Monday), got {weekday!r}")
        days[weekday] = _check_day(WEEKDAY_NAMES[weekday], intervals)
    return tuple(days)


def _check_day(name: str, intervals: Sequence[Interval]) -> tuple[Interval, ...]:
    checked: list[Interval] = []
    for pair in intervals:
        if not isinstance(pair, Sequence) or len(pair) != 2:
            raise ValueError(f"{name}: an interval must be a (start, end) pair, got {pair!r}")
        start, end = pair
        for t in (start, end):
            if not isinstance(t, time) or t.tzinfo is not None:
                raise ValueError(f"{name}: interval bounds must be naive times, got {t!r}")
        start, end = start.replace(fold=0), end.replace(fold=0)
        label = f"{_time_str(start)}-{_time_str(end, end=True)}"
        s_us, e_us = _interval_us((start, end))
        if s_us >= e_us:
            raise ValueError(f"{name} interval {label}: start must be before end")
        if checked:
            prev_s, prev_e = _interval_us(checked[-1])
            if s_us < prev_s:
                raise ValueError(
                    f"{name} intervals out of order: {label} comes after an earlier one"
                )
            if s_us < prev_e:
                raise ValueError(f"{name} intervals overlap at {label}")
        checked.append((start, end))
    return tuple(checked)


def _interval_us(interval: Interval) -> tuple[int, int]:
    start, end = interval
    end_us = _time_us(end)
    return _time_us(start), end_us if end_us else _DAY  # an end of 00:00 means 24:00


def _time_us(t: time) -> int:
    return ((t.hour * 60 + t.minute) * 60 + t.second) * 1_000_000 + t.microsecond


def _check_holiday(d: object) -> date:
    if isinstance(d, datetime) or not isinstance(d, date):
        raise ValueError(f"holidays must be dates, got {d!r}")
    return d


def _time_str(t: time, *, end: bool = False) -> str:
    if end and t == time(0):
        return "24:00"
    if t.second or t.microsecond:
        return t.isoformat()
    return t.isoformat(timespec="minutes")


def _parse_interval(pair: object) -> Interval:
    if not isinstance(pair, Sequence) or isinstance(pair, str) or len(pair) != 2:
        raise ValueError(f"interval must be [start, end], got {pair!r}")
    return _parse_time(pair[0]), _parse_time(pair[1])


def _parse_time(text: object) -> time:
    if text == "24:00":
        return time(0)
    try:
        return time.fromisoformat(text)  # type: ignore[arg-type]
    except (TypeError, ValueError) as exc:
        raise ValueError(f"time must be a string like '09:00', got {text!r}") from exc


def _parse_date(text: object) -> date:
    try:
        return date.fromisoformat(text)  # type: ignore[arg-type]
    except (TypeError, ValueError) as exc:
        raise ValueError(f"holiday must be an ISO date like '2026-12-25', got {text!r}") from exc
