"""Recipient resolution: walk a rung's resolver chain; the first resolver that yields at least
one *valid* recipient wins. Valid means active, not soft-deleted, with an email address.

"Non-empty but all invalid" falls through to the next resolver (EasySynQ's P1 bug: a role
full of deactivated people silently swallowed the escalation).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from domain.models import Item, Role, RoleMember, User


@dataclass(frozen=True, kw_only=True)
class Recipient:
    user_id: str
    email: str
    name: str
    timezone: str
    quiet_start: str | None = None  # "HH:MM" local; None = no quiet hours
    quiet_end: str | None = None


@dataclass(frozen=True, kw_only=True)
class Resolution:
    recipients: tuple[Recipient, ...]
    resolver: str | None  # the resolver that won; None when the whole chain came up empty
    tried: tuple[str, ...]


def is_valid(user: User) -> bool:
    return user.is_active and user.deleted_at is None and bool(user.email)


def _recipient(user: User) -> Recipient:
    assert user.email is not None
    return Recipient(
        user_id=str(user.id),
        email=user.email,
        name=user.name,
        timezone=user.timezone,
        quiet_start=user.quiet_start.strftime("%H:%M") if user.quiet_start else None,
        quiet_end=user.quiet_end.strftime("%H:%M") if user.quiet_end else None,
    )


def _candidates(item: Item, resolver: str, actor_id: uuid.UUID | None) -> Select[User]:
    users = select(User).where(User.account_id == item.account_id)
    if resolver == "assignee":
        return users.where(User.id == item.assignee_id)
    if resolver == "claimer":
        return users.where(User.id == item.claimed_by)
    if resolver == "assignee_manager":
        assignee = aliased(User)
        managers = select(assignee.manager_id).where(
            assignee.id == item.assignee_id, assignee.account_id == item.account_id
        )
        return users.where(User.id == managers.scalar_subquery())
    if resolver.startswith("role:"):
        key = resolver.removeprefix("role:")
        members = (
            select(RoleMember.user_id)
            .join(Role, Role.id == RoleMember.role_id)
            .where(
                Role.account_id == item.account_id,
                RoleMember.account_id == item.account_id,
                Role.key == key,
            )
        )
        return users.where(User.id.in_(members))
    if resolver.startswith("account_roles:"):
        roles = resolver.removeprefix("account_roles:").split(",")
        chosen = users.where(User.role.in_(roles))
        # The person who escalated is never notified of their own escalation.
        return chosen.where(User.id != actor_id) if actor_id is not None else chosen
    raise ValueError(f"unknown resolver {resolver!r}")


async def resolve(
    session: AsyncSession, item: Item, chain: Sequence[str], *, actor_id: uuid.UUID | None
) -> Resolution:
    tried: list[str] = []
    for resolver in chain:
        tried.append(resolver)
        found = (await session.scalars(_candidates(item, resolver, actor_id))).all()
        valid = sorted((u for u in found if is_valid(u)), key=lambda u: (u.email or "", u.id))
        if valid:
            return Resolution(
                recipients=tuple(_recipient(u) for u in valid),
                resolver=resolver,
                tried=tuple(tried),
            )
    return Resolution(recipients=(), resolver=None, tried=tuple(tried))
