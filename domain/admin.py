"""Admin services for people: users, named roles and their members.

Like every service these flush and never commit, scope every query to the caller's account
(RLS is the second wall), and check everything before writing, so a rejected request leaves
nothing half-written. Unknown ids, other accounts' included, are "not found".

- Users are soft-deleted. A deleted user stays readable by id (old items and audit events
  still name them) but is left out of lists, cannot be changed and keeps its email taken.
- Nobody creates, changes or deletes a user above their own role (an admin cannot make an
  owner), and the account's last active owner cannot be demoted, deactivated or deleted.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import time
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from domain import addresses, audit
from domain.clock import utcnow
from domain.errors import Conflict, DomainError, Invalid, NotFound, UndeliverableAddress
from domain.lifecycle import ACTIVE
from domain.models import USER_ROLES, Item, Role, RoleMember, SlaPolicy, User


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
    smtputf8: bool = False,
) -> User:
    """`values`: email, name, role, manager_id, timezone, quiet_start, quiet_end ("HH:MM").
    `smtputf8`: whether the SMTP server takes a non-ASCII part before @."""
    _may_grant(actor_role, values["role"])
    user = User(id=uuid.uuid4(), account_id=account_id, is_active=True)
    await _apply(session, user, values, smtputf8=smtputf8)
    session.add(user)
    await session.flush()
    return user


@dataclass(frozen=True, kw_only=True)
class AddressChange:
    """A change of `user_id`'s address asked for by `actor_id`: `new` is used once a link
    mailed to it is used; `old` (if any) is told meanwhile."""

    id: uuid.UUID
    account_id: uuid.UUID
    user_id: uuid.UUID
    actor_id: uuid.UUID
    old: str | None
    new: str


async def update_user(
    session: AsyncSession,
    account_id: uuid.UUID,
    user_id: uuid.UUID,
    *,
    actor_id: uuid.UUID,
    actor_role: str,
    changes: Mapping[str, Any],
    smtputf8: bool = False,
) -> tuple[User, AddressChange | None]:
    """`changes`: any of create's fields plus is_active; a null clears manager/quiet hours.
    A new email is not set but asked for (`pending_email`, the `AddressChange` returned):
    the caller mails the confirmation and the notice. Sending the current address again
    withdraws a pending change."""
    user = await _changeable(session, account_id, user_id, actor_role)
    if "role" in changes:
        _may_grant(actor_role, changes["role"])
    if user.role == "owner" and (
        changes.get("role", "owner") != "owner" or changes.get("is_active") is False
    ):
        await _keep_an_owner(session, user)
    change = None
    if "email" in changes:
        change = await _ask_address_change(
            session, user, changes["email"], actor_id=actor_id, smtputf8=smtputf8
        )
    before = (user.role, user.is_active)
    await _apply(session, user, {k: v for k, v in changes.items() if k != "email"}, smtputf8=False)
    if (user.role, user.is_active) != before:
        revoke_tokens(user)  # a new role or status: earlier tokens stop working
    await session.flush()
    return user, change


async def _ask_address_change(
    session: AsyncSession, user: User, email: str, *, actor_id: uuid.UUID, smtputf8: bool
) -> AddressChange | None:
    new = await _free_address(session, user, email, smtputf8=smtputf8)
    if new == user.email:
        user.pending_email = None  # withdrawn (or never asked)
        return None
    if user.role == "owner" and user.id != actor_id:
        raise Forbidden("an owner's address can be changed only by that owner", field="email")
    user.pending_email = new
    change = AddressChange(
        id=uuid.uuid4(),
        account_id=user.account_id,
        user_id=user.id,
        actor_id=actor_id,
        old=user.email,
        new=new,
    )
    await audit.record(
        session,
        account_id=user.account_id,
        item_id=None,
        action="user.email_change_requested",
        key=f"address:{change.id}:requested",
        actor_id=actor_id,
        data={"user_id": str(user.id), "from": user.email, "to": new},
    )
    return change


async def confirm_address(
    session: AsyncSession, account_id: uuid.UUID, user_id: uuid.UUID, new: str, link: uuid.UUID
) -> User:
    """The new address, confirmed by a link mailed to it, becomes the user's: earlier tokens
    stop working. A link for an address no longer pending (withdrawn, superseded, or taken
    by someone else since) changes nothing."""
    user = await get_user(session, account_id, user_id)
    if user.deleted_at is not None or not user.is_active or user.pending_email != new:
        raise Conflict("this address change was withdrawn or replaced: ask your admin again")
    await _free_address(session, user, new, smtputf8=True)
    old, user.email, user.pending_email = user.email, new, None
    revoke_tokens(user)
    await audit.record(
        session,
        account_id=account_id,
        item_id=None,
        action="user.email_changed",
        key=f"address:{link}:confirmed",
        actor_id=user.id,
        data={"user_id": str(user.id), "from": old, "to": new},
    )
    await session.flush()
    return user


def revoke_tokens(user: User) -> None:
    """Every token minted for `user` so far stops working (a reactivation keeps it so)."""
    user.token_epoch = user.token_epoch + 1


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
    revoke_tokens(user)
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


async def _free_address(session: AsyncSession, user: User, email: str, *, smtputf8: bool) -> str:
    """`email`, normalised, if it can be sent to and no other user of the account has it."""
    email = email.strip().lower()
    try:
        addresses.for_smtp(email, smtputf8=smtputf8)
    except addresses.Undeliverable as error:
        raise UndeliverableAddress(str(error), field="email") from None
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
    return email


async def _apply(
    session: AsyncSession, user: User, values: Mapping[str, Any], *, smtputf8: bool
) -> None:
    """Check the fields in `values` against the rest of the user, then set them."""
    if "email" in values:
        user.email = await _free_address(session, user, values["email"], smtputf8=smtputf8)
    if "timezone" in values:
        user.timezone = check_timezone(values["timezone"])
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


def check_timezone(name: str) -> str:
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
        .where(RoleMember.role_id == role.id, RoleMember.account_id == role.account_id)
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
    member = await session.scalar(
        select(RoleMember).where(
            RoleMember.role_id == role.id,
            RoleMember.user_id == user.id,
            RoleMember.account_id == account_id,
        )
    )
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
