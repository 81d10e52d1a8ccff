"""The rung planner: the CAPA and DOC_ACK policies, the working-hours gate, pauses, catch-up
without flooding, re-plans, and properties over random due dates, offsets and pauses."""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.calendar import BusinessCalendar, add_business_time, business_time_between, is_working
from domain.holidays_expand import build_calendar
from domain.planning import (
    RUNG_TIERS,
    DoneStatus,
    Offset,
    Pause,
    PlannedRung,
    RungName,
    effective_due,
    next_pending,
    plan_rungs,
)

BERLIN = build_calendar(
    "Europe/Berlin", {d: [(time(9), time(17))] for d in range(5)}, country="DE", subdivision="BE"
)
DAYS = Offset(business_days=1)
CAPA: dict[RungName, Offset | None] = {
    "remind": Offset(business_days=1),
    "escalate_1": Offset(business_days=1),
    "escalate_2": Offset(business_days=3),
}


def berlin(y: int, m: int, d: int, hh: int = 0, mm: int = 0) -> datetime:
    return datetime(y, m, d, hh, mm, tzinfo=ZoneInfo("Europe/Berlin")).astimezone(UTC)


def summary(plan: list[PlannedRung]) -> list[tuple[str, str, datetime]]:
    return [(r.name, r.status, r.fire_at) for r in plan]


FRI_DUE = berlin(2026, 6, 5, 10)
MONDAY_BEFORE = berlin(2026, 6, 1, 8)


def test_capa_policy_plans_remind_then_two_escalations() -> None:
    plan = plan_rungs(due=FRI_DUE, offsets=CAPA, cal=BERLIN, now=MONDAY_BEFORE)
    assert summary(plan) == [
        ("remind", "pending", berlin(2026, 6, 4, 10)),
        ("escalate_1", "pending", berlin(2026, 6, 8, 10)),
        ("escalate_2", "pending", berlin(2026, 6, 10, 10)),  # Fri 10:00 + 3 business days
    ]
    assert [r.tier for r in plan] == [0, 1, 2]
    assert next_pending(plan) == plan[0]


def test_doc_ack_has_no_second_escalation() -> None:
    doc_ack: dict[RungName, Offset | None] = {**CAPA, "escalate_2": None}
    plan = plan_rungs(due=FRI_DUE, offsets=doc_ack, cal=BERLIN, now=MONDAY_BEFORE)
    assert [r.name for r in plan] == ["remind", "escalate_1"]
    missing = plan_rungs(due=FRI_DUE, offsets={"remind": DAYS}, cal=BERLIN, now=MONDAY_BEFORE)
    assert [r.name for r in missing] == ["remind"]


def test_rungs_wait_for_working_hours() -> None:
    """Business days roll forward by themselves; business time can end exactly at closing
    time, which is a deadline but not a working instant."""
    due = berlin(2026, 6, 5, 18)  # Friday, after hours
    offsets: dict[RungName, Offset | None] = {
        "remind": Offset(business_time=timedelta(hours=2)),
        "escalate_1": DAYS,
    }
    remind, escalate = plan_rungs(due=due, offsets=offsets, cal=BERLIN, now=MONDAY_BEFORE)
    assert remind.deadline == remind.fire_at == berlin(2026, 6, 5, 15)
    assert escalate.deadline == escalate.fire_at == berlin(2026, 6, 9, 9)  # Mon 18:00 rolled

    at_closing: dict[RungName, Offset | None] = {
        "escalate_1": Offset(business_time=timedelta(hours=7))
    }
    (rung,) = plan_rungs(due=FRI_DUE, offsets=at_closing, cal=BERLIN, now=MONDAY_BEFORE)
    assert rung.deadline == berlin(2026, 6, 5, 17)
    assert rung.fire_at == berlin(2026, 6, 8, 9)


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        (  # created overdue on Thursday: only escalate_2 fires, at once
            berlin(2026, 6, 4, 11),
            [
                ("remind", "skipped", berlin(2026, 6, 4, 11)),
                ("escalate_1", "skipped", berlin(2026, 6, 4, 11)),
                ("escalate_2", "pending", berlin(2026, 6, 4, 11)),
            ],
        ),
        (  # Wednesday: escalate_1 catches up now, escalate_2 stays on schedule
            berlin(2026, 6, 3, 11),
            [
                ("remind", "skipped", berlin(2026, 6, 3, 11)),
                ("escalate_1", "pending", berlin(2026, 6, 3, 11)),
                ("escalate_2", "pending", berlin(2026, 6, 4, 10)),
            ],
        ),
        (  # Saturday: the catch-up waits for Monday morning
            berlin(2026, 6, 6, 12),
            [
                ("remind", "skipped", berlin(2026, 6, 6, 12)),
                ("escalate_1", "skipped", berlin(2026, 6, 6, 12)),
                ("escalate_2", "pending", berlin(2026, 6, 8, 9)),
            ],
        ),
    ],
)
def test_overdue_rungs_do_not_flood(now: datetime, expected: list[Any]) -> None:
    due = berlin(2026, 6, 1, 10)
    assert summary(plan_rungs(due=due, offsets=CAPA, cal=BERLIN, now=now)) == expected


def test_fired_rungs_stay_fired_and_lower_ones_are_skipped() -> None:
    now = berlin(2026, 6, 8, 12)
    stamp = berlin(2026, 6, 8, 10)
    plan = plan_rungs(
        due=FRI_DUE, offsets=CAPA, cal=BERLIN, now=now, done={"escalate_1": ("fired", stamp)}
    )
    assert summary(plan) == [
        ("escalate_1", "fired", stamp),
        ("remind", "skipped", now),
        ("escalate_2", "pending", berlin(2026, 6, 10, 10)),
    ]
    assert plan[0].deadline == berlin(2026, 6, 8, 10)
    assert next_pending(plan) == plan[2]
    everything: dict[RungName, tuple[DoneStatus, datetime]] = dict.fromkeys(CAPA, ("fired", stamp))
    after_all = plan_rungs(due=FRI_DUE, offsets=CAPA, cal=BERLIN, now=now, done=everything)
    assert next_pending(after_all) is None


def test_a_pause_pushes_every_open_rung_by_the_paused_business_time() -> None:
    thursday = Pause(start=berlin(2026, 6, 4, 9), end=berlin(2026, 6, 4, 17))  # 8 h
    now = berlin(2026, 6, 5, 8)
    stamp = berlin(2026, 6, 4, 10)
    assert effective_due(FRI_DUE, BERLIN, [thursday], now) == berlin(2026, 6, 8, 10)
    plan = plan_rungs(
        due=FRI_DUE,
        offsets=CAPA,
        cal=BERLIN,
        now=now,
        pauses=[thursday],
        done={"remind": ("fired", stamp)},
    )
    assert summary(plan) == [
        ("remind", "fired", stamp),
        ("escalate_1", "pending", berlin(2026, 6, 9, 10)),
        ("escalate_2", "pending", berlin(2026, 6, 11, 10)),
    ]


def test_pauses_add_up_overlaps_count_once_and_an_open_pause_runs_to_now() -> None:
    now = berlin(2026, 6, 4, 13)
    two = [
        Pause(start=berlin(2026, 6, 2, 9), end=berlin(2026, 6, 2, 13)),
        Pause(start=berlin(2026, 6, 3, 13), end=berlin(2026, 6, 3, 17)),
    ]
    assert effective_due(FRI_DUE, BERLIN, two, now) == berlin(2026, 6, 8, 10)
    overlapping = [
        Pause(start=berlin(2026, 6, 4, 9), end=berlin(2026, 6, 4, 12)),
        Pause(start=berlin(2026, 6, 4, 11), end=berlin(2026, 6, 4, 13)),
    ]
    assert effective_due(FRI_DUE, BERLIN, overlapping, now) == berlin(2026, 6, 5, 14)
    still_paused = [Pause(start=berlin(2026, 6, 4, 9))]
    assert effective_due(FRI_DUE, BERLIN, still_paused, now) == berlin(2026, 6, 5, 14)


def test_replan_after_a_due_change_keeps_history() -> None:
    stamp = berlin(2026, 6, 4, 10)
    done: dict[RungName, tuple[Any, datetime]] = {"remind": ("fired", stamp)}
    later_due = berlin(2026, 6, 12, 10)
    plan = plan_rungs(due=later_due, offsets=CAPA, cal=BERLIN, now=stamp, done=done)
    assert summary(plan) == [
        ("remind", "fired", stamp),
        ("escalate_1", "pending", berlin(2026, 6, 15, 10)),
        ("escalate_2", "pending", berlin(2026, 6, 17, 10)),
    ]


def test_a_rung_that_would_fire_after_a_higher_one_is_skipped() -> None:
    inverted: dict[RungName, Offset | None] = {
        "escalate_1": Offset(business_days=5),
        "escalate_2": Offset(business_days=1),
    }
    plan = plan_rungs(due=FRI_DUE, offsets=inverted, cal=BERLIN, now=MONDAY_BEFORE)
    # escalate_1 is skipped at the moment escalate_2 fires (ties sort by tier).
    assert summary(plan) == [
        ("escalate_1", "skipped", berlin(2026, 6, 8, 10)),
        ("escalate_2", "pending", berlin(2026, 6, 8, 10)),
    ]


def test_naive_inputs_are_rejected() -> None:
    naive = datetime(2026, 6, 5, 10)  # noqa: DTZ001 - the point of the test
    with pytest.raises(ValueError, match="timezone-aware"):
        plan_rungs(due=naive, offsets=CAPA, cal=BERLIN, now=MONDAY_BEFORE)
    with pytest.raises(ValueError, match="timezone-aware"):
        plan_rungs(due=FRI_DUE, offsets=CAPA, cal=BERLIN, now=naive)
    with pytest.raises(ValueError, match="timezone-aware"):
        Pause(start=naive)
    with pytest.raises(ValueError, match="before it starts"):
        Pause(start=FRI_DUE, end=MONDAY_BEFORE)


@pytest.mark.parametrize(
    ("data", "offset", "back"),
    [
        ({"business_days": 3}, Offset(business_days=3), {"business_days": 3}),
        ({"business_minutes": 30}, Offset(business_time=timedelta(minutes=30)), None),
        ({"business_hours": 2}, Offset(business_time=timedelta(hours=2)), None),
        ({"business_seconds": 5}, Offset(business_time=timedelta(seconds=5)), None),
        (
            {"business_hours": 1.5},
            Offset(business_time=timedelta(minutes=90)),
            {"business_minutes": 90},
        ),
        ({"business_days": 0}, Offset(business_days=0), None),
    ],
)
def test_offset_data_form(
    data: dict[str, Any], offset: Offset, back: dict[str, Any] | None
) -> None:
    assert Offset.from_dict(data) == offset
    assert offset.to_dict() == (back or data)


@pytest.mark.parametrize(
    "data",
    [
        {},
        {"business_days": 1, "business_hours": 1},
        {"business_days": -1},
        {"business_days": 1.5},
        {"business_days": True},
        {"business_weeks": 1},
        {"business_hours": "2"},
        {"business_minutes": -5},
    ],
)
def test_bad_offsets_are_rejected(data: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=r"."):
        Offset.from_dict(data)


def test_offset_needs_exactly_one_measure() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        Offset()
    with pytest.raises(ValueError, match="exactly one"):
        Offset(business_days=1, business_time=timedelta(hours=1))


def test_plan_and_pauses_round_trip_through_json() -> None:
    plan = plan_rungs(due=FRI_DUE, offsets=CAPA, cal=BERLIN, now=MONDAY_BEFORE)
    rows = json.loads(json.dumps([r.to_dict() for r in plan]))
    assert [PlannedRung.from_dict(row) for row in rows] == plan
    pause = Pause(start=FRI_DUE)
    assert Pause.from_dict(json.loads(json.dumps(pause.to_dict()))) == pause


# --- properties ----------------------------------------------------------------------------

CALENDARS = [
    BERLIN,
    BusinessCalendar(
        tz="America/New_York",
        hours={d: [(time(8, 30), time(12)), (time(13), time(17, 30))] for d in range(5)},
    ),
    BusinessCalendar(tz="Australia/Lord_Howe", hours={d: [(time(0), time(0))] for d in range(7)}),
    BusinessCalendar(
        tz="Europe/Berlin",
        hours={0: [(time(22), time(0))], 1: [(time(0), time(6))], 4: [(time(1), time(3))]},
    ),
]
instants = st.datetimes(
    min_value=datetime(2026, 1, 1),  # noqa: DTZ001 - hypothesis attaches the zone
    max_value=datetime(2027, 6, 30),  # noqa: DTZ001
    timezones=st.just(UTC),
)
time_offsets = st.timedeltas(min_value=timedelta(0), max_value=timedelta(hours=60)).map(
    lambda span: Offset(business_time=span)
)
offsets = st.one_of(
    st.none(), time_offsets, st.integers(0, 8).map(lambda n: Offset(business_days=n))
)
policies = st.fixed_dictionaries({"remind": offsets, "escalate_1": offsets, "escalate_2": offsets})
# Disjoint pauses around due: (gap before it, length) pairs laid end to end from 10 days
# before due; the last one may still be open.
pause_lists = st.lists(
    st.tuples(
        st.timedeltas(timedelta(0), timedelta(days=5)),
        st.timedeltas(timedelta(0), timedelta(days=3)),
    ),
    max_size=3,
)
PLANNING = settings(max_examples=150, deadline=None, database=None)


history = st.dictionaries(
    st.sampled_from(list(RUNG_TIERS)),
    st.tuples(st.sampled_from(["fired", "skipped"]), instants),
    max_size=2,
)


@PLANNING
@given(st.sampled_from(CALENDARS), instants, instants, policies, history)
def test_plans_are_chronological_and_fire_only_in_working_time(
    cal: BusinessCalendar,
    due: datetime,
    now: datetime,
    policy: dict[RungName, Offset | None],
    done: dict[RungName, tuple[DoneStatus, datetime]],
) -> None:
    plan = plan_rungs(due=due, offsets=policy, cal=cal, now=now, done=done)
    assert plan == sorted(plan, key=lambda r: (r.fire_at, r.tier))
    assert {r.name for r in plan} == {name for name, offset in policy.items() if offset}
    pending = [r for r in plan if r.status == "pending"]
    for rung in pending:
        assert rung.fire_at >= now
        assert is_working(rung.fire_at, cal)
    # Lower rungs never fire at or after higher ones: tiers rise strictly with fire time.
    assert all(a.tier < b.tier and a.fire_at < b.fire_at for a, b in itertools.pairwise(pending))
    assert next_pending(plan) == (pending[0] if pending else None)
    # History is kept, and nothing below a fired rung is still to fire.
    for rung in plan:
        if rung.name in done:
            assert (rung.status, rung.fire_at) == done[rung.name]
    fired = [RUNG_TIERS[name] for name, (status, _) in done.items() if status == "fired"]
    assert all(rung.tier > max(fired, default=-1) for rung in pending)


@PLANNING
@given(
    st.sampled_from(CALENDARS),
    instants,
    st.fixed_dictionaries(
        {"remind": time_offsets, "escalate_1": time_offsets, "escalate_2": time_offsets}
    ),
    pause_lists,
    st.booleans(),
)
def test_pauses_shift_rungs_later(
    cal: BusinessCalendar,
    due: datetime,
    policy: dict[RungName, Offset | None],
    raw_pauses: list[tuple[timedelta, timedelta]],
    still_paused: bool,
) -> None:
    """Every rung moves later by exactly the business time paused, and strictly so when any
    business time was paused."""
    pauses, cursor = [], due - timedelta(days=10)
    for gap, length in raw_pauses:
        pauses.append(Pause(start=cursor + gap, end=cursor + gap + length))
        cursor += gap + length
    now = cursor + timedelta(hours=1)
    if pauses and still_paused:
        pauses[-1] = Pause(start=pauses[-1].start)
    paused = sum((business_time_between(p.start, p.end or now, cal) for p in pauses), timedelta(0))
    plain = {r.name: r for r in plan_rungs(due=due, offsets=policy, cal=cal, now=now)}
    shifted = plan_rungs(due=due, offsets=policy, cal=cal, now=now, pauses=pauses)
    assert effective_due(due, cal, pauses, now) == add_business_time(due, paused, cal)
    for rung in shifted:
        if paused:
            assert rung.deadline > plain[rung.name].deadline
        else:
            assert rung.deadline == plain[rung.name].deadline
