"""Administration: users, named roles and their members, business calendars and SLA policies.

Any authenticated role may read; admins and owners may write. Policy versions are never
changed: a PUT adds version max+1 and items keep their version until replanned
(`POST /v1/items/{id}/replan`, or `POST /v1/replan` for many). Calendars are versioned the
same way. Admin writes are not audited (the audit trail is per item), except an address
change, which is audited at each step with its actor.
"""

from __future__ import annotations

import functools
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Response, status

from api.admin_schemas import (
    CalendarCreate,
    CalendarIn,
    CalendarOut,
    CalendarPreviewOut,
    PolicyCreate,
    PolicyOut,
    PolicyVersionIn,
    RoleCreate,
    RoleOut,
    UserCreate,
    UserOut,
    UserPatch,
)
from api.auth import Admin, Viewer
from api.deps import SettingsDep, TemporalDep, UowDep
from api.errors import ErrorResponse
from domain import admin, calendars
from domain import admin_policies as policies
from domain.clock import utcnow
from workflows.starts import start_account_mails
from workflows.types import AccountMail, AccountMails

router = APIRouter(prefix="/v1", tags=["admin"])
RoleKey = Annotated[str, Path(max_length=64)]
ItemType = Annotated[str, Path(max_length=64)]
_ERROR = {"model": ErrorResponse}
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: _ERROR}
WRITE: dict[int | str, dict[str, Any]] = {400: _ERROR, 403: _ERROR, 404: _ERROR, 409: _ERROR}


def _calendar_spec(body: CalendarIn) -> policies.CalendarSpec:
    return policies.CalendarSpec(
        name=body.name,
        tz=body.tz,
        hours={day: [list(pair) for pair in pairs] for day, pairs in body.hours.items()},
        holiday_country=body.holiday_country,
        holiday_subdivision=body.holiday_subdivision,
        custom_holidays=[day.isoformat() for day in body.custom_holidays],
    )


def _policy_spec(body: PolicyVersionIn) -> policies.PolicySpec:
    rungs, response_target = body.documents()
    return policies.PolicySpec(
        calendar_id=body.calendar_id, rungs=rungs, response_target=response_target
    )


# --- users ------------------------------------------------------------------------------


@router.get("/users", response_model=list[UserOut], summary="List users")
async def list_users(uow: UowDep, _: Viewer, include_deleted: bool = False) -> list[UserOut]:
    """Deleted users are left out unless `include_deleted=true`."""
    users = await admin.list_users(
        uow.session, uow.principal.account_id, include_deleted=include_deleted
    )
    return [UserOut.of(u) for u in users]


@router.post(
    "/users",
    response_model=UserOut,
    status_code=status.HTTP_201_CREATED,
    responses=WRITE,
    summary="Create a user",
)
async def create_user(
    body: UserCreate, uow: UowDep, principal: Admin, settings: SettingsDep
) -> UserOut:
    """The email is unique in the account (case-insensitive; deleted users keep theirs) and
    deliverable by the configured SMTP server (400 `undeliverable_address`: a non-ASCII part
    before @ needs `ESCALATOR_SMTP_UTF8`). The manager must be a user of this account;
    nobody grants a role above their own."""
    user = await admin.create_user(
        uow.session,
        principal.account_id,
        actor_role=principal.role,
        values=body.model_dump(),
        smtputf8=settings.smtp_utf8,
    )
    return UserOut.of(user)


@router.get("/users/{user_id}", response_model=UserOut, responses=NOT_FOUND, summary="A user")
async def get_user(user_id: uuid.UUID, uow: UowDep, _: Viewer) -> UserOut:
    """A deleted user is still returned, with `deleted_at` set."""
    return UserOut.of(await admin.get_user(uow.session, uow.principal.account_id, user_id))


@router.patch("/users/{user_id}", response_model=UserOut, responses=WRITE, summary="Change a user")
async def patch_user(
    user_id: uuid.UUID,
    body: UserPatch,
    uow: UowDep,
    principal: Admin,
    settings: SettingsDep,
    temporal: TemporalDep,
) -> UserOut:
    """Only the fields sent change. The last active owner cannot be demoted or deactivated;
    a deleted user cannot be changed (409); a new email must be deliverable (400).

    A new email is not used at once: it is `pending_email` until a link mailed to it is
    used (`POST /v1/auth/address`), and the old address is told. Only an owner changes an
    owner's address (403). Sending the current address withdraws a pending change; sending
    the pending one again mails anew."""
    user, change = await admin.update_user(
        uow.session,
        principal.account_id,
        user_id,
        actor_id=principal.user_id,
        actor_role=principal.role,
        changes=body.model_dump(exclude_unset=True),
        smtputf8=settings.smtp_utf8,
    )
    if change is not None:
        actor = await admin.get_user(uow.session, principal.account_id, principal.user_id)
        mails = address_change_mails(change, actor.name)

        async def start() -> None:
            await start_account_mails(temporal, settings.task_queue, mails)

        uow.after_commit(start)
    return UserOut.of(user)


def address_change_mails(change: admin.AddressChange, actor: str) -> AccountMails:
    """The confirmation to the new address and, if there is one, the notice to the old."""
    mail = functools.partial(
        AccountMail,
        account_id=str(change.account_id),
        user_id=str(change.user_id),
        requested_at=utcnow(),
    )
    mails = [mail(delivery_id=str(uuid.uuid4()), kind="auth.confirm_email", address=change.new)]
    if change.old is not None:
        notice = mail(
            delivery_id=str(uuid.uuid4()),
            kind="auth.email_changing",
            address=change.old,
            new_address=change.new,
            actor=actor,
        )
        mails.append(notice)
    return AccountMails(id=str(change.id), mails=mails)


@router.delete(
    "/users/{user_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=WRITE,
    summary="Delete a user (soft)",
)
async def delete_user(user_id: uuid.UUID, uow: UowDep, principal: Admin) -> None:
    """Sets `deleted_at`: the user is no longer listed, assigned or notified, but stays
    readable by id. Repeating it is a no-op."""
    await admin.delete_user(
        uow.session,
        principal.account_id,
        user_id,
        actor_id=principal.user_id,
        actor_role=principal.role,
    )


# --- named roles ------------------------------------------------------------------------


@router.get("/roles", response_model=list[RoleOut], summary="Named roles and their members")
async def list_roles(uow: UowDep, _: Viewer) -> list[RoleOut]:
    roles = await admin.list_roles(uow.session, uow.principal.account_id)
    return [RoleOut.of(role, members) for role, members in roles]


@router.post(
    "/roles",
    response_model=RoleOut,
    status_code=status.HTTP_201_CREATED,
    responses=WRITE,
    summary="Create a named role",
)
async def create_role(body: RoleCreate, uow: UowDep, principal: Admin) -> RoleOut:
    role = await admin.create_role(uow.session, principal.account_id, body.key, body.name)
    return RoleOut.of(role, [])


@router.delete(
    "/roles/{key}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=WRITE,
    summary="Delete a named role",
)
async def delete_role(key: RoleKey, uow: UowDep, principal: Admin) -> None:
    """409 while a policy that is current, or pinned by an unfinished item, names it."""
    await admin.delete_role(uow.session, principal.account_id, key)


@router.put(
    "/roles/{key}/members/{user_id}",
    response_model=RoleOut,
    responses=WRITE,
    summary="Add a member (idempotent)",
)
async def add_member(key: RoleKey, user_id: uuid.UUID, uow: UowDep, principal: Admin) -> RoleOut:
    role = await admin.add_member(uow.session, principal.account_id, key, user_id)
    return RoleOut.of(role, await admin.role_members(uow.session, role))


@router.delete(
    "/roles/{key}/members/{user_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=WRITE,
    summary="Remove a member (idempotent)",
)
async def remove_member(key: RoleKey, user_id: uuid.UUID, uow: UowDep, principal: Admin) -> None:
    await admin.remove_member(uow.session, principal.account_id, key, user_id)


# --- calendars --------------------------------------------------------------------------


@router.get("/calendars", response_model=list[CalendarOut], summary="Business calendars")
async def list_calendars(uow: UowDep, _: Viewer) -> list[CalendarOut]:
    rows = await policies.list_calendars(uow.session, uow.principal.account_id)
    return [CalendarOut.of(row) for row in rows]


@router.post(
    "/calendars",
    response_model=CalendarOut,
    status_code=status.HTTP_201_CREATED,
    responses=WRITE,
    summary="Create a business calendar",
)
async def create_calendar(body: CalendarCreate, uow: UowDep, principal: Admin) -> CalendarOut:
    """Checked as it will be used: a real zone, ordered non-overlapping hours on at least one
    weekday, a known holiday country and subdivision, ISO custom dates."""
    row = await policies.save_calendar(uow.session, principal.account_id, _calendar_spec(body))
    return CalendarOut.of(row)


@router.get(
    "/calendars/{calendar_id}",
    response_model=CalendarOut,
    responses=NOT_FOUND,
    summary="A business calendar",
)
async def get_calendar(calendar_id: uuid.UUID, uow: UowDep, _: Viewer) -> CalendarOut:
    row = await policies.get_calendar(uow.session, uow.principal.account_id, calendar_id)
    return CalendarOut.of(row)


@router.put(
    "/calendars/{calendar_id}",
    response_model=CalendarOut,
    responses=WRITE,
    summary="Replace a business calendar",
)
async def replace_calendar(
    calendar_id: uuid.UUID, body: CalendarIn, uow: UowDep, principal: Admin
) -> CalendarOut:
    """A change of working time (zone, hours, holidays) adds version max+1. Running items
    keep planning on the version they pinned until they are replanned (`POST /v1/replan`
    with this `calendar_id` moves them all and says how many rungs moved). A rename, or a
    body equal to the calendar as it is, adds no version."""
    row = await policies.save_calendar(
        uow.session, principal.account_id, _calendar_spec(body), calendar_id
    )
    return CalendarOut.of(row)


@router.get(
    "/calendars/{calendar_id}/versions",
    response_model=list[CalendarOut],
    responses=NOT_FOUND,
    summary="Every version of a business calendar, newest first",
)
async def calendar_versions(calendar_id: uuid.UUID, uow: UowDep, _: Viewer) -> list[CalendarOut]:
    row = await policies.get_calendar(uow.session, uow.principal.account_id, calendar_id)
    versions = await policies.calendar_versions(uow.session, uow.principal.account_id, calendar_id)
    return [CalendarOut.of(row, version) for version in versions]


@router.get(
    "/calendars/{calendar_id}/preview",
    response_model=CalendarPreviewOut,
    responses=NOT_FOUND,
    summary="A business calendar's working time, day by day from today",
)
async def calendar_preview(
    calendar_id: uuid.UUID,
    uow: UowDep,
    _: Viewer,
    days: Annotated[int, Query(ge=1, le=31, description="how many local dates")] = 14,
) -> CalendarPreviewOut:
    """The calendar as it is now, from today in its zone: each date's working intervals in
    local wall time, or why it has none (`weekend`, a `holiday` by its name, a `custom`
    date)."""
    row = await policies.get_calendar(uow.session, uow.principal.account_id, calendar_id)
    return CalendarPreviewOut.of(row, calendars.preview(row, utcnow(), days))


# --- policies ---------------------------------------------------------------------------


@router.get("/policies", response_model=list[PolicyOut], summary="The latest policy per type")
async def list_policies(uow: UowDep, _: Viewer) -> list[PolicyOut]:
    rows = await policies.latest_policies(uow.session, uow.principal.account_id)
    return [PolicyOut.of(row) for row in rows]


@router.post(
    "/policies",
    response_model=PolicyOut,
    status_code=status.HTTP_201_CREATED,
    responses=WRITE,
    summary="Create a policy for a new item type (version 1)",
)
async def create_policy(body: PolicyCreate, uow: UowDep, principal: Admin) -> PolicyOut:
    """409 if the type has a policy already (PUT adds a version). The rungs must plan, the
    roles they name must exist, and only `handoff` has a response target."""
    policy = await policies.create_policy(
        uow.session, principal.account_id, body.item_type, _policy_spec(body)
    )
    return PolicyOut.of(policy)


@router.get(
    "/policies/{item_type}",
    response_model=PolicyOut,
    responses=NOT_FOUND,
    summary="The latest version of a type's policy",
)
async def get_policy(item_type: ItemType, uow: UowDep, _: Viewer) -> PolicyOut:
    versions = await policies.policy_versions(uow.session, uow.principal.account_id, item_type)
    return PolicyOut.of(versions[0])


@router.get(
    "/policies/{item_type}/versions",
    response_model=list[PolicyOut],
    responses=NOT_FOUND,
    summary="Every version of a type's policy, newest first",
)
async def policy_versions(item_type: ItemType, uow: UowDep, _: Viewer) -> list[PolicyOut]:
    versions = await policies.policy_versions(uow.session, uow.principal.account_id, item_type)
    return [PolicyOut.of(row) for row in versions]


@router.put(
    "/policies/{item_type}",
    response_model=PolicyOut,
    status_code=status.HTTP_201_CREATED,
    responses={**WRITE, 200: {"model": PolicyOut, "description": "same as the latest: no-op"}},
    summary="Add a new version of a type's policy",
)
async def add_policy_version(
    item_type: ItemType, body: PolicyVersionIn, response: Response, uow: UowDep, principal: Admin
) -> PolicyOut:
    """Adds version max+1; in-flight items keep the version they started with until replanned.
    A body equal to the latest version adds nothing and answers 200 with it."""
    policy, added = await policies.add_policy_version(
        uow.session, principal.account_id, item_type, _policy_spec(body)
    )
    if not added:
        response.status_code = status.HTTP_200_OK
    return PolicyOut.of(policy)
