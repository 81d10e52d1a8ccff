"""Admin services for time and rules: business calendars and versioned SLA policies.

The same conventions as `domain.admin`: flush, never commit; scoped to the caller's account;
everything checked before anything is written. A policy version is never updated: a change is
version max+1, and items keep the version they pinned until they are replanned.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from domain.admin import check_timezone
from domain.calendar import BusinessCalendar
from domain.calendars import WORKING_TIME, versions_query
from domain.errors import Conflict, Invalid, NotFound
from domain.holidays_expand import build_calendar
from domain.models import BusinessCalendarRow, BusinessCalendarVersion, Role, SlaPolicy
from domain.planning import Offset
from domain.policy import parse_rungs


@dataclass(frozen=True, kw_only=True)
class CalendarSpec:
    name: str
    tz: str
    hours: Mapping[str, Any]  # {"0": [["09:00", "17:00"]], ...}
    holiday_country: str | None = None
    holiday_subdivision: str | None = None
    custom_holidays: list[str] = field(default_factory=list)


async def list_calendars(session: AsyncSession, account_id: uuid.UUID) -> list[BusinessCalendarRow]:
    rows = await session.scalars(
        select(BusinessCalendarRow)
        .where(BusinessCalendarRow.account_id == account_id)
        .order_by(BusinessCalendarRow.name)
    )
    return list(rows)


async def get_calendar(
    session: AsyncSession, account_id: uuid.UUID, calendar_id: uuid.UUID, *, lock: bool = False
) -> BusinessCalendarRow:
    query = select(BusinessCalendarRow).where(
        BusinessCalendarRow.id == calendar_id, BusinessCalendarRow.account_id == account_id
    )
    # A PUT locks the row: concurrent edits then add versions one after the other.
    row = await session.scalar(query.with_for_update() if lock else query)
    if row is None:
        raise NotFound(f"calendar {calendar_id} not found")
    return row


async def save_calendar(
    session: AsyncSession,
    account_id: uuid.UUID,
    spec: CalendarSpec,
    calendar_id: uuid.UUID | None = None,
) -> BusinessCalendarRow:
    """Create a calendar (version 1), or replace calendar `calendar_id` whole. A replacement
    that changes the working time adds version max+1; items keep planning on the version
    they pinned until they are replanned (`POST /v1/replan`). A rename alone, or a PUT that
    says what the calendar already says, adds no version."""
    if calendar_id is None:
        row = BusinessCalendarRow(id=uuid.uuid4(), account_id=account_id, version=0)
    else:
        row = await get_calendar(session, account_id, calendar_id, lock=True)
    values = _checked_calendar(spec)
    same_name = await session.scalar(
        select(BusinessCalendarRow.id).where(
            BusinessCalendarRow.account_id == account_id,
            BusinessCalendarRow.name == spec.name,
            BusinessCalendarRow.id != row.id,
        )
    )
    if same_name is not None:
        raise Conflict(f"a calendar named {spec.name!r} already exists", field="name")
    changed = row.version == 0 or any(getattr(row, key) != values[key] for key in WORKING_TIME)
    for key, value in values.items():
        setattr(row, key, value)
    if changed:
        row.version += 1
        session.add(row)
        await session.flush()
        session.add(
            BusinessCalendarVersion(
                account_id=account_id,
                calendar_id=row.id,
                version=row.version,
                **{key: values[key] for key in WORKING_TIME},
            )
        )
    await session.flush()
    return row


async def calendar_versions(
    session: AsyncSession, account_id: uuid.UUID, calendar_id: uuid.UUID
) -> list[BusinessCalendarVersion]:
    """Every version of a calendar, newest first."""
    await get_calendar(session, account_id, calendar_id)
    return list(await session.scalars(versions_query(account_id, calendar_id)))


def _checked_calendar(spec: CalendarSpec) -> dict[str, Any]:
    """Validate exactly as `domain.calendars.calendar_from_row` loads it; store the canonical
    form of hours and custom dates."""
    check_timezone(spec.tz)
    try:
        parsed = BusinessCalendar.from_dict(
            {"tz": spec.tz, "hours": spec.hours, "holidays": spec.custom_holidays}
        )
        build_calendar(
            parsed.tz,
            parsed.hours,
            country=spec.holiday_country,
            subdivision=spec.holiday_subdivision,
            custom=parsed.holidays,
        )
    except ValueError as error:
        raise Invalid(str(error)) from error
    if not any(parsed.hours):
        raise Invalid("a calendar needs working hours on at least one weekday", field="hours")
    canonical = parsed.to_dict()
    return {
        "name": spec.name,
        "tz": spec.tz,
        "hours": canonical["hours"],
        "holiday_country": spec.holiday_country,
        "holiday_subdivision": spec.holiday_subdivision,
        "custom_holidays": canonical["holidays"],
    }


# --- policies ---------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class PolicySpec:
    calendar_id: uuid.UUID
    rungs: Mapping[str, Any]
    response_target: Mapping[str, Any] | None = None


async def latest_policies(session: AsyncSession, account_id: uuid.UUID) -> list[SlaPolicy]:
    newest = (
        select(SlaPolicy.item_type, func.max(SlaPolicy.version).label("version"))
        .where(SlaPolicy.account_id == account_id)
        .group_by(SlaPolicy.item_type)
        .subquery()
    )
    rows = await session.scalars(
        select(SlaPolicy)
        .join(
            newest,
            (SlaPolicy.item_type == newest.c.item_type) & (SlaPolicy.version == newest.c.version),
        )
        .where(SlaPolicy.account_id == account_id)
        .order_by(SlaPolicy.item_type)
    )
    return list(rows)


async def policy_versions(
    session: AsyncSession, account_id: uuid.UUID, item_type: str
) -> list[SlaPolicy]:
    """Every version of `item_type`, newest first."""
    rows = list(
        await session.scalars(
            select(SlaPolicy)
            .where(SlaPolicy.account_id == account_id, SlaPolicy.item_type == item_type)
            .order_by(SlaPolicy.version.desc())
        )
    )
    if not rows:
        raise NotFound(f"no policy for item type {item_type!r}")
    return rows


async def create_policy(
    session: AsyncSession, account_id: uuid.UUID, item_type: str, spec: PolicySpec
) -> SlaPolicy:
    """Version 1 of a new item type. (A concurrent create loses on the unique constraint.)"""
    exists = await session.scalar(
        select(SlaPolicy.id)
        .where(SlaPolicy.account_id == account_id, SlaPolicy.item_type == item_type)
        .limit(1)
    )
    if exists is not None:
        raise Conflict(
            f"item type {item_type!r} already has a policy: PUT /v1/policies/{item_type} "
            "adds a version",
            field="item_type",
        )
    await _check_policy(session, account_id, item_type, spec)
    return await _insert_policy(session, account_id, item_type, 1, spec)


async def add_policy_version(
    session: AsyncSession, account_id: uuid.UUID, item_type: str, spec: PolicySpec
) -> tuple[SlaPolicy, bool]:
    """Version max+1, or the latest version and False when it already says exactly this
    (so a retried PUT adds nothing)."""
    # Lock the type's versions first, then read the maximum in a new statement: a concurrent
    # PUT waits here and then sees the version the first one committed.
    await session.execute(
        select(SlaPolicy.id)
        .where(SlaPolicy.account_id == account_id, SlaPolicy.item_type == item_type)
        .with_for_update()
    )
    latest = (await policy_versions(session, account_id, item_type))[0]
    await _check_policy(session, account_id, item_type, spec)
    if (latest.calendar_id, latest.rungs, latest.response_target) == (
        spec.calendar_id,
        dict(spec.rungs),
        None if spec.response_target is None else dict(spec.response_target),
    ):
        return latest, False
    return await _insert_policy(session, account_id, item_type, latest.version + 1, spec), True


async def _insert_policy(
    session: AsyncSession, account_id: uuid.UUID, item_type: str, version: int, spec: PolicySpec
) -> SlaPolicy:
    policy = SlaPolicy(
        account_id=account_id,
        item_type=item_type,
        version=version,
        calendar_id=spec.calendar_id,
        rungs=dict(spec.rungs),
        response_target=None if spec.response_target is None else dict(spec.response_target),
    )
    session.add(policy)
    await session.flush()
    return policy


async def _check_policy(
    session: AsyncSession, account_id: uuid.UUID, item_type: str, spec: PolicySpec
) -> None:
    # parse_rungs raises PolicyError (a ValueError) with a clear message.
    try:
        rungs = parse_rungs(spec.rungs)
    except ValueError as error:
        raise Invalid(f"rungs: {error}", field="rungs") from error
    offsets = [(f"rung {name}", rung.offset) for name, rung in rungs.items() if rung]
    if spec.response_target is not None:
        if item_type != "handoff":
            raise Invalid(
                "only the handoff type has a response_target: a task's due date is given",
                field="response_target",
            )
        try:
            offsets.append(("response_target", Offset.from_dict(spec.response_target)))
        except ValueError as error:
            raise Invalid(f"response_target: {error}", field="response_target") from error
    calendar = await session.scalar(
        select(BusinessCalendarRow.id).where(
            BusinessCalendarRow.id == spec.calendar_id,
            BusinessCalendarRow.account_id == account_id,
        )
    )
    if calendar is None:
        raise Invalid(f"unknown calendar {spec.calendar_id}", field="calendar_id")
    wanted = {
        r.removeprefix("role:")
        for rung in rungs.values()
        if rung
        for r in rung.recipients
        if r.startswith("role:")
    }
    known = set(
        await session.scalars(
            select(Role.key).where(Role.account_id == account_id, Role.key.in_(wanted))
        )
    )
    if wanted - known:
        raise Invalid(
            f"rungs name roles that do not exist: {sorted(wanted - known)} (POST /v1/roles)",
            field="rungs",
        )
