"""Admin services: users, named roles and their members, business calendars, SLA policies.

Like every service these flush and never commit, scope every query to the caller's account
(RLS is the second wall), and check everything before writing, so a rejected request leaves
nothing half-written. Unknown ids, other accounts' included, are "not found".

Rules worth knowing:
- Users are soft-deleted. A deleted user stays readable by id (old items and audit events
  still name them) but is left out of lists, cannot be changed and keeps its email taken.
- Nobody creates, changes or deletes a user above their own role (an admin cannot make an
  owner), and the account's last active owner cannot be demoted, deactivated or deleted.
- A policy version is never updated: a change is version max+1, and items keep the version
  they pinned until they are replanned.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from domain.calendar import BusinessCalendar
from domain.clock import utcnow
from domain.errors import Conflict, DomainError, Invalid, NotFound
from domain.holidays_expand import build_calendar
from domain.lifecycle import ACTIVE
from domain.models import USER_ROLES, BusinessCalendarRow, Item, Role, RoleMember, SlaPolicy, User
from domain.planning import Offset
from domain.policy import parse_rungs

# Longer offsets are typos, and far enough out they leave the calendar maths' date range.
MAX_OFFSET = timedelta(days=366)


class Forbidden(DomainError):
    status = 403
    code = "forbidden"


# --- users ------------------------------------------------------------------------------


async def list_users(
    session: AsyncSession, account_id: uuid.UUID, *, include_deleted: bool = False
) -> list[User]:
    query = select(User).where(User.account_id == account_id)
    if not include_deleted:
        query = query.where(User.deleted_at.is_(None))
    return list(await session.scalars(query.order_by(User.name, User.id)))


async def get_user(session: AsyncSession, account_id: uuid.UUID, user_id: uuid.UUID) -> User:
    user = await session.scalar(
        select(User).where(User.id == user_id, User.account_id == account_id)
    )
    if user is None:
        raise NotFound(f"user {user_id} not found")
    return user


async def create_user(
    session: AsyncSession,
    account_id: uuid.UUID,
    *,
    actor_role: str,
    values: Mapping[str, Any],
) -> User:
    """`values`: email, name, role, manager_id, timezone, quiet_start, quiet_end ("HH:MM")."""
    _may_grant(actor_role, values["role"])
    user = User(id=uuid.uuid4(), account_id=account_id, is_active=True)
    await _apply(session, user, values)
    session.add(user)
    await session.flush()
    return user


async def update_user(
    session: AsyncSession,
    account_id: uuid.UUID,
    user_id: uuid.UUID,
    *,
    actor_role: str,
    changes: Mapping[str, Any],
) -> User:
    """`changes`: any of create's fields plus is_active; a null clears manager/quiet hours."""
    user = await _changeable(session, account_id, user_id, actor_role)
    if "role" in changes:
        _may_grant(actor_role, changes["role"])
    if user.role == "owner" and (
        changes.get("role", "owner") != "owner" or changes.get("is_active") is False
    ):
        await _keep_an_owner(session, user)
    await _apply(session, user, changes)
    await session.flush()
    return user


async def delete_user(
    session: AsyncSession,
    account_id: uuid.UUID,
    user_id: uuid.UUID,
    *,
    actor_id: uuid.UUID,
    actor_role: str,
) -> None:
    """Soft delete; deleting a deleted user again changes nothing."""
    user = await get_user(session, account_id, user_id)
    if user.deleted_at is not None:
        return
    if user_id == actor_id:
        raise Conflict("you cannot delete yourself")
    await _changeable(session, account_id, user_id, actor_role)
    if user.role == "owner":
        await _keep_an_owner(session, user)
    user.deleted_at = utcnow()
    await session.flush()


def _rank(role: str) -> int:
    return USER_ROLES.index(role)


def _may_grant(actor_role: str, role: str) -> None:
    if _rank(role) > _rank(actor_role):
        raise Forbidden(f"a {actor_role} cannot grant the role {role}")


async def _changeable(
    session: AsyncSession, account_id: uuid.UUID, user_id: uuid.UUID, actor_role: str
) -> User:
    user = await get_user(session, account_id, user_id)
    if user.deleted_at is not None:
        raise Conflict(f"user {user_id} is deleted")
    if _rank(user.role) > _rank(actor_role):
        raise Forbidden(f"a {actor_role} cannot change or delete a {user.role}")
    return user


async def _keep_an_owner(session: AsyncSession, leaving: User) -> None:
    # Locking every active owner serialises concurrent demotions: the second one re-reads
    # the owners after the first commits and finds itself the last.
    owners = await session.scalars(
        select(User.id)
        .where(
            User.account_id == leaving.account_id,
            User.role == "owner",
            User.is_active,
            User.deleted_at.is_(None),
        )
        .with_for_update()
    )
    if not set(owners) - {leaving.id}:
        raise Conflict("the account needs an active owner: make someone else owner first")


async def _apply(session: AsyncSession, user: User, values: Mapping[str, Any]) -> None:
    """Check the fields in `values` against the rest of the user, then set them."""
    if "email" in values:
        email = values["email"].strip().lower()
        taken = await session.scalar(
            select(User).where(
                User.account_id == user.account_id,
                func.lower(User.email) == email,
                User.id != user.id,
            )
        )
        if taken is not None:
            gone = " (a deleted user)" if taken.deleted_at is not None else ""
            raise Conflict(f"email {email} is already used by user {taken.id}{gone}", field="email")
        user.email = email
    if "timezone" in values:
        user.timezone = _timezone(values["timezone"])
    if values.get("manager_id") is not None:
        await _check_manager(session, user, values["manager_id"])
    quiet = {
        key: _hhmm(values[key]) if key in values else getattr(user, key)
        for key in ("quiet_start", "quiet_end")
    }
    if (quiet["quiet_start"] is None) != (quiet["quiet_end"] is None):
        raise Invalid("quiet_start and quiet_end go together: give both or neither")
    if quiet["quiet_start"] is not None and quiet["quiet_start"] == quiet["quiet_end"]:
        raise Invalid("quiet_start and quiet_end must differ (give neither for no quiet hours)")
    for key in ("name", "role", "manager_id", "is_active"):
        if key in values:
            setattr(user, key, values[key])
    user.quiet_start, user.quiet_end = quiet["quiet_start"], quiet["quiet_end"]


def _timezone(name: str) -> str:
    # "localtime" is the host's zone, not an IANA name: it would differ between machines.
    try:
        if name != "localtime":
            ZoneInfo(name)
            return name
    except (ZoneInfoNotFoundError, ValueError, OSError):
        pass
    raise Invalid(f"unknown time zone {name!r}: use an IANA name like 'Europe/Berlin'")


def _hhmm(text: str | None) -> time | None:
    if text is None:
        return None
    try:
        return time.fromisoformat(text)
    except ValueError as error:
        raise Invalid(f"quiet hours must look like '07:30', got {text!r}") from error


async def _check_manager(session: AsyncSession, user: User, manager_id: uuid.UUID) -> None:
    if manager_id == user.id:
        raise Invalid("a user cannot be their own manager", field="manager_id")
    manager = await session.scalar(
        select(User).where(User.id == manager_id, User.account_id == user.account_id)
    )
    if manager is None:
        raise Invalid(f"unknown manager {manager_id}", field="manager_id")
    if manager.deleted_at is not None:
        raise Invalid(f"manager {manager_id} is deleted", field="manager_id")
    above, seen = manager.manager_id, {manager.id}
    while above is not None and above not in seen:
        if above == user.id:
            raise Invalid(f"manager {manager_id} reports to this user", field="manager_id")
        seen.add(above)
        above = await session.scalar(
            select(User.manager_id).where(User.id == above, User.account_id == user.account_id)
        )


# --- named roles ------------------------------------------------------------------------


async def list_roles(
    session: AsyncSession, account_id: uuid.UUID
) -> list[tuple[Role, list[uuid.UUID]]]:
    roles = list(
        await session.scalars(select(Role).where(Role.account_id == account_id).order_by(Role.key))
    )
    members: dict[uuid.UUID, list[uuid.UUID]] = {role.id: [] for role in roles}
    rows = await session.execute(
        select(RoleMember.role_id, RoleMember.user_id)
        .where(RoleMember.account_id == account_id)
        .order_by(RoleMember.created_at, RoleMember.user_id)
    )
    for role_id, user_id in rows:
        members[role_id].append(user_id)
    return [(role, members[role.id]) for role in roles]


async def role_members(session: AsyncSession, role: Role) -> list[uuid.UUID]:
    rows = await session.scalars(
        select(RoleMember.user_id)
        .where(RoleMember.role_id == role.id)
        .order_by(RoleMember.created_at, RoleMember.user_id)
    )
    return list(rows)


async def get_role(session: AsyncSession, account_id: uuid.UUID, key: str) -> Role:
    role = await session.scalar(select(Role).where(Role.account_id == account_id, Role.key == key))
    if role is None:
        raise NotFound(f"role {key!r} not found")
    return role


async def create_role(session: AsyncSession, account_id: uuid.UUID, key: str, name: str) -> Role:
    if await session.scalar(select(Role).where(Role.account_id == account_id, Role.key == key)):
        raise Conflict(f"role {key!r} already exists", field="key")
    role = Role(account_id=account_id, key=key, name=name)
    session.add(role)
    await session.flush()
    return role


async def delete_role(session: AsyncSession, account_id: uuid.UUID, key: str) -> None:
    role = await get_role(session, account_id, key)
    users = await _policies_naming(session, account_id, f"role:{key}")
    if users:
        raise Conflict(
            f"role {key!r} is a recipient in {', '.join(users)}: change those policies first",
            policies=users,
        )
    await session.delete(role)  # members go with it (ON DELETE CASCADE)
    await session.flush()


async def add_member(
    session: AsyncSession, account_id: uuid.UUID, key: str, user_id: uuid.UUID
) -> Role:
    """Idempotent: adding a member twice leaves one membership."""
    role = await get_role(session, account_id, key)
    user = await get_user(session, account_id, user_id)
    if user.deleted_at is not None:
        raise Conflict(f"user {user_id} is deleted")
    await session.execute(
        insert(RoleMember)
        .values(account_id=account_id, role_id=role.id, user_id=user.id)
        .on_conflict_do_nothing(index_elements=["role_id", "user_id"])
    )
    return role


async def remove_member(
    session: AsyncSession, account_id: uuid.UUID, key: str, user_id: uuid.UUID
) -> None:
    """Idempotent: removing someone who is not a member is not an error."""
    role = await get_role(session, account_id, key)
    user = await get_user(session, account_id, user_id)
    member = await session.get(RoleMember, (role.id, user.id))
    if member is not None:
        await session.delete(member)
        await session.flush()


async def _policies_naming(
    session: AsyncSession, account_id: uuid.UUID, resolver: str
) -> list[str]:
    """Policy versions that still matter (the latest of each type, or pinned by an item not
    yet finished) and name `resolver` as a recipient: "CAPA v2"."""
    policies = list(
        await session.scalars(select(SlaPolicy).where(SlaPolicy.account_id == account_id))
    )
    latest: dict[str, int] = {}
    for p in policies:
        latest[p.item_type] = max(latest.get(p.item_type, 0), p.version)
    pinned = set(
        await session.scalars(
            select(Item.policy_id).where(Item.account_id == account_id, Item.state.in_(ACTIVE))
        )
    )
    return sorted(
        f"{p.item_type} v{p.version}"
        for p in policies
        if (p.version == latest[p.item_type] or p.id in pinned) and resolver in _resolvers(p.rungs)
    )


def _resolvers(rungs: Mapping[str, Any]) -> Iterator[str]:
    for rung in rungs.values():
        if isinstance(rung, Mapping) and isinstance(rung.get("recipients"), list):
            yield from (str(r) for r in rung["recipients"])


# --- calendars --------------------------------------------------------------------------


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
    session: AsyncSession, account_id: uuid.UUID, calendar_id: uuid.UUID
) -> BusinessCalendarRow:
    row = await session.scalar(
        select(BusinessCalendarRow).where(
            BusinessCalendarRow.id == calendar_id, BusinessCalendarRow.account_id == account_id
        )
    )
    if row is None:
        raise NotFound(f"calendar {calendar_id} not found")
    return row


async def save_calendar(
    session: AsyncSession,
    account_id: uuid.UUID,
    spec: CalendarSpec,
    calendar_id: uuid.UUID | None = None,
) -> BusinessCalendarRow:
    """Create a calendar, or replace calendar `calendar_id` whole. Policies refer to it by
    id, so a replacement applies to every policy version that uses it."""
    row = (
        BusinessCalendarRow(id=uuid.uuid4(), account_id=account_id)
        if calendar_id is None
        else await get_calendar(session, account_id, calendar_id)
    )
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
    for key, value in values.items():
        setattr(row, key, value)
    session.add(row)
    await session.flush()
    return row


def _checked_calendar(spec: CalendarSpec) -> dict[str, Any]:
    """Validate exactly as `domain.calendars.calendar_from_row` loads it; store the canonical
    form of hours and custom dates."""
    _timezone(spec.tz)
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
    for what, offset in offsets:
        span = offset.business_time or timedelta(days=offset.business_days or 0)
        if span > MAX_OFFSET:
            raise Invalid(f"{what}: offsets are limited to {MAX_OFFSET.days} business days")
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
