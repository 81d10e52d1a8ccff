"""When does each escalation rung fire? A pure function of due date, policy, calendar, pauses
and what already happened, so that a re-plan (due change, policy change, resume, release) is
the same call as the first plan.

The rules, in the order they apply:
1. remind fires an offset *before* due, escalate_1/escalate_2 an offset *after* it, counted
   in business days or business time. A `None` offset leaves the rung out.
2. Pauses stop the clock (like Jira Service Management pause conditions): the business time
   spent paused pushes the due date, and so every rung not yet done, later.
3. A rung never fires outside working hours: it fires at the next working instant.
4. Nobody gets flooded: of the rungs already overdue at planning time only the highest fires
   (at once); lower ones are skipped. A rung below one that already fired is skipped too, and
   so is a rung that would fire no earlier than a higher one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from typing import Any, Literal, get_args

from domain.calendar import (
    BusinessCalendar,
    add_business_days,
    add_business_time,
    business_time_between,
    next_working_instant,
)
from domain.limits import MAX_OFFSET

RungName = Literal["remind", "escalate_1", "escalate_2"]
RungStatus = Literal["pending", "fired", "skipped"]
DoneStatus = Literal["fired", "skipped"]
RUNG_TIERS: dict[RungName, int] = {"remind": 0, "escalate_1": 1, "escalate_2": 2}

_TIME_UNITS = {
    "business_hours": timedelta(hours=1),
    "business_minutes": timedelta(minutes=1),
    "business_seconds": timedelta(seconds=1),
}
_NOTHING_DONE: Mapping[RungName, tuple[DoneStatus, datetime]] = MappingProxyType({})


@dataclass(frozen=True, kw_only=True)
class Offset:
    """How far a rung sits from due: whole business days, or business time. Never negative;
    the rung's name says which side of due it is on."""

    business_days: int | None = None
    business_time: timedelta | None = None

    def __post_init__(self) -> None:
        if (self.business_days is None) == (self.business_time is None):
            raise ValueError("an offset needs exactly one of business_days or business_time")
        days = self.business_days
        if days is not None and (isinstance(days, bool) or not isinstance(days, int)):
            raise ValueError(f"business_days must be an int, got {days!r}")
        if days is not None and days < 0:
            raise ValueError(f"business_days must not be negative, got {days}")
        span = self.business_time
        if span is not None and (not isinstance(span, timedelta) or span < timedelta(0)):
            raise ValueError(f"business_time must be a non-negative timedelta, got {span!r}")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Offset:
        """One of {"business_days": 3}, {"business_hours": 2}, {"business_minutes": 30},
        {"business_seconds": 5}."""
        if not isinstance(data, Mapping) or len(data) != 1:
            raise ValueError(f"offset must have exactly one key, got {data!r}")
        ((key, value),) = data.items()
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"offset {key} must be a number, got {value!r}")
        limit = MAX_OFFSET.get(key)
        if limit is not None and not 0 <= value <= limit:
            raise ValueError(f"offset {key} must be between 0 and {limit}, got {value!r}")
        if key == "business_days":
            if not isinstance(value, int):
                raise ValueError(f"business_days must be a whole number, got {value!r}")
            return cls(business_days=value)
        if key not in _TIME_UNITS:
            known = ", ".join(["business_days", *_TIME_UNITS])
            raise ValueError(f"unknown offset unit {key!r} (use one of {known})")
        try:
            return cls(business_time=_TIME_UNITS[key] * value)
        except OverflowError as error:
            raise ValueError(f"offset {key} is out of range: {value!r}") from error

    def to_dict(self) -> dict[str, int | float]:
        if self.business_days is not None:
            return {"business_days": self.business_days}
        span = self.business_time or timedelta(0)
        for key, unit in _TIME_UNITS.items():  # the coarsest unit that stays exact
            if span % unit == timedelta(0):
                return {key: span // unit}
        return {"business_seconds": span.total_seconds()}

    def describe(self) -> str:
        """As a person says it: "1 business day", "30 business minutes", "no time"."""
        ((key, value),) = self.to_dict().items()
        if value == 0:
            return "no time"
        unit = key.removeprefix("business_").removesuffix("s")
        number = f"{value:g}" if isinstance(value, float) else str(value)
        return f"{number} business {unit}{'' if value == 1 else 's'}"


@dataclass(frozen=True, kw_only=True)
class Pause:
    """The clock stood still from `start` until `end`; `end=None` means still paused."""

    start: datetime
    end: datetime | None = None

    def __post_init__(self) -> None:
        for at in (self.start, self.end):
            if at is not None and at.utcoffset() is None:
                raise ValueError(f"pause bounds must be timezone-aware, got {at!r}")
        if self.end is not None and self.end < self.start:
            raise ValueError("a pause cannot end before it starts")

    def to_dict(self) -> dict[str, str | None]:
        return {"start": self.start.isoformat(), "end": _iso_or_none(self.end)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Pause:
        end = data.get("end")
        return cls(
            start=_parse_instant(data["start"]), end=None if end is None else _parse_instant(end)
        )


@dataclass(frozen=True, kw_only=True)
class PlannedRung:
    """One rung of the plan. `deadline` is the raw due -/+ offset (after pauses); `fire_at` is
    when it fires, or for a fired/skipped rung the stamp of that event."""

    name: RungName
    tier: int
    deadline: datetime
    fire_at: datetime
    status: RungStatus

    def to_dict(self) -> dict[str, str | int]:
        return {
            "name": self.name,
            "tier": self.tier,
            "deadline": self.deadline.isoformat(),
            "fire_at": self.fire_at.isoformat(),
            "status": self.status,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PlannedRung:
        name, status = data["name"], data["status"]
        if name not in RUNG_TIERS:
            raise ValueError(f"unknown rung {name!r}")
        if status not in get_args(RungStatus):
            raise ValueError(f"unknown rung status {status!r}")
        return cls(
            name=name,
            tier=RUNG_TIERS[name],
            deadline=_parse_instant(data["deadline"]),
            fire_at=_parse_instant(data["fire_at"]),
            status=status,
        )


def effective_due(
    due: datetime, cal: BusinessCalendar, pauses: Sequence[Pause], now: datetime
) -> datetime:
    """`due` pushed later by the business time spent paused. Overlapping pauses are merged
    first: the clock cannot stop twice. An open pause counts up to `now`."""
    paused = timedelta(0)
    for start, end in _merged_pauses(pauses, now):
        paused += business_time_between(start, end, cal)
    return add_business_time(due, paused, cal)


def plan_rungs(
    *,
    due: datetime,
    offsets: Mapping[RungName, Offset | None],
    cal: BusinessCalendar,
    pauses: Sequence[Pause] = (),
    now: datetime,
    done: Mapping[RungName, tuple[DoneStatus, datetime]] = _NOTHING_DONE,
) -> list[PlannedRung]:
    """The full plan, sorted by (fire_at, tier). Rungs in `done` keep their status and stamp;
    deadlines of all rungs are computed from the effective due, for display."""
    for name in (*offsets, *done):
        if name not in RUNG_TIERS:
            raise ValueError(f"unknown rung {name!r}")
    # UTC throughout, like the calendar's results: Python never finds an ambiguous local
    # datetime equal to an instant in another zone, and plans are compared and stored.
    now = _utc(now, "now")
    done = {name: (status, _utc(stamp, f"{name} stamp")) for name, (status, stamp) in done.items()}
    base = effective_due(due, cal, pauses, now)
    # The catch-up moment: "fire now", but never outside working hours.
    catch_up = next_working_instant(now, cal)
    fired_tiers = [RUNG_TIERS[n] for n, (status, _) in done.items() if status == "fired"]
    highest_fired = max(fired_tiers, default=-1)

    done_rungs: list[PlannedRung] = []
    open_rungs: list[PlannedRung] = []
    for name, tier in RUNG_TIERS.items():
        offset = offsets.get(name)
        if offset is None:
            continue
        deadline = _deadline(base, offset, before=tier == 0, cal=cal)
        if name in done:
            status, stamp = done[name]
            done_rungs.append(_rung(name, deadline, stamp, status))
        elif tier < highest_fired:
            open_rungs.append(_rung(name, deadline, now, "skipped"))
        else:
            open_rungs.append(_rung(name, deadline, next_working_instant(deadline, cal), "pending"))

    pending = [r for r in open_rungs if r.status == "pending"]
    overdue = [r for r in pending if r.fire_at <= catch_up]
    if overdue:
        top = max(overdue, key=lambda r: r.tier)
        for rung in overdue:
            if rung is top:
                _swap(open_rungs, rung, _rung(rung.name, rung.deadline, catch_up, "pending"))
            else:
                _swap(open_rungs, rung, _rung(rung.name, rung.deadline, now, "skipped"))
    _skip_superseded(open_rungs)
    return sorted([*done_rungs, *open_rungs], key=lambda r: (r.fire_at, r.tier))


def next_pending(plan: Sequence[PlannedRung]) -> PlannedRung | None:
    """The rung to arm a timer for, or None when nothing is left to fire."""
    pending = [r for r in plan if r.status == "pending"]
    return min(pending, key=lambda r: (r.fire_at, r.tier), default=None)


def shifted(at: datetime, offset: Offset, cal: BusinessCalendar) -> datetime:
    """`at` moved `offset` later in business time (a repeat's next instant)."""
    return _deadline(at, offset, before=False, cal=cal)


def _deadline(due: datetime, offset: Offset, *, before: bool, cal: BusinessCalendar) -> datetime:
    sign = -1 if before else 1
    if offset.business_days is not None:
        return add_business_days(due, sign * offset.business_days, cal)
    return add_business_time(due, sign * (offset.business_time or timedelta(0)), cal)


def _skip_superseded(rungs: list[PlannedRung]) -> None:
    """A pending rung that would fire no earlier than a higher pending rung would only fire
    after it, and a rung below a fired one never fires: skip it when the higher one fires."""
    pending = sorted((r for r in rungs if r.status == "pending"), key=lambda r: -r.tier)
    earliest_higher: datetime | None = None
    for rung in pending:
        if earliest_higher is not None and rung.fire_at >= earliest_higher:
            _swap(rungs, rung, _rung(rung.name, rung.deadline, earliest_higher, "skipped"))
        else:
            earliest_higher = rung.fire_at


def _merged_pauses(pauses: Sequence[Pause], now: datetime) -> list[tuple[datetime, datetime]]:
    spans = sorted((p.start, max(p.end or now, p.start)) for p in pauses)
    merged: list[tuple[datetime, datetime]] = []
    for start, end in spans:
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged


def _rung(name: RungName, deadline: datetime, fire_at: datetime, status: RungStatus) -> PlannedRung:
    return PlannedRung(
        name=name, tier=RUNG_TIERS[name], deadline=deadline, fire_at=fire_at, status=status
    )


def _swap(rungs: list[PlannedRung], old: PlannedRung, new: PlannedRung) -> None:
    rungs[rungs.index(old)] = new


def _utc(at: datetime, what: str) -> datetime:
    if at.utcoffset() is None:
        raise ValueError(f"{what} must be timezone-aware, got naive {at.isoformat()}")
    return at.astimezone(UTC)


def _iso_or_none(at: datetime | None) -> str | None:
    return None if at is None else at.isoformat()


def _parse_instant(text: object) -> datetime:
    if not isinstance(text, str):
        raise ValueError(f"instant must be an ISO string, got {text!r}")
    at = datetime.fromisoformat(text)
    if at.utcoffset() is None:
        raise ValueError(f"instant must carry a UTC offset, got {text!r}")
    return at
