"""Recipient resolution: walk a rung's resolver chain; the first resolver that yields at least
one *valid* recipient wins. Valid means active, not soft-deleted, with an email address.

"Non-empty but all invalid" falls through to the next resolver (EasySynQ's P1 bug: a role
full of deactivated people silently swallowed the escalation).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy import (
    ColumnElement,
    CompoundSelect,
    FromClause,
    ScalarSelect,
    and_,
    func,
    literal,
    select,
    union_all,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from domain.models import Role, RoleMember, User
from domain.people import Recipient

__all__ = ["Recipient"]  # re-exported: the resolvers return it


@dataclass(frozen=True, kw_only=True)
class Resolution:
    recipients: tuple[Recipient, ...]
    resolver: str | None  # the resolver that won; None when the whole chain came up empty
    tried: tuple[str, ...]


class Subject(Protocol):
    """What a resolver reads of an item: an ORM `Item` or a Core row of its columns."""

    @property
    def account_id(self) -> uuid.UUID: ...
    @property
    def assignee_id(self) -> uuid.UUID | None: ...
    @property
    def claimed_by(self) -> uuid.UUID | None: ...


def is_valid(user: User) -> bool:
    return user.is_active and user.deleted_at is None and bool(user.email)


def _who(item: Subject, resolver: str, actor_id: uuid.UUID | None) -> ColumnElement[bool]:
    """The users `resolver` names, as a condition on `app_user`."""
    if resolver == "assignee":
        return User.id == item.assignee_id
    if resolver == "claimer":
        return User.id == item.claimed_by
    if resolver == "assignee_manager":
        assignee = aliased(User)
        managers = select(assignee.manager_id).where(
            assignee.id == item.assignee_id, assignee.account_id == item.account_id
        )
        return User.id == managers.scalar_subquery()
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
        return User.id.in_(members)
    if resolver.startswith("account_roles:"):
        roles = User.role.in_(resolver.removeprefix("account_roles:").split(","))
        # The person who escalated is never notified of their own escalation.
        return and_(roles, User.id != actor_id) if actor_id is not None else roles
    raise ValueError(f"unknown resolver {resolver!r}")


def ranked(item: Subject, chain: Sequence[str], actor_id: uuid.UUID | None) -> CompoundSelect[Any]:
    """Every resolver's valid users, each row ranked by its resolver's place in the chain
    (`rank`); the best rank present wins. Valid: active, not soft-deleted, with an email."""
    return union_all(
        *(
            select(
                literal(rank).label("rank"),
                User.id,
                User.email,
                User.name,
                User.timezone,
                User.quiet_start,
                User.quiet_end,
            ).where(
                User.account_id == item.account_id,
                User.is_active.is_(True),
                User.deleted_at.is_(None),
                User.email.is_not(None),
                User.email != "",
                _who(item, resolver, actor_id),
            )
            for rank, resolver in enumerate(chain)
        )
    )


# Who an escalated handoff goes to: every senior colleague (its escalator left out).
HANDOFF_FAN_OUT = "account_roles:engineer,admin,owner"
HANDOFF_EVENT = "handoff.escalated"


def describe(resolver: str) -> str:
    """A resolver as a person reads it: "the assignee's manager", "role quality_manager"."""
    fixed = {
        "assignee": "the assignee",
        "assignee_manager": "the assignee's manager",
        "claimer": "whoever claimed it",
    }
    if resolver in fixed:
        return fixed[resolver]
    if resolver.startswith("role:"):
        return f"role {resolver.removeprefix('role:')}"
    roles = resolver.removeprefix("account_roles:").split(",")
    listed = " or ".join([", ".join(roles[:-1]), roles[-1]]) if len(roles) > 1 else roles[0]
    return f"everyone who is {listed}"


def winners(rows: Sequence[Any], chain: Sequence[str]) -> Resolution:
    """The resolution from `ranked` rows of the best rank, ordered by (email, id)."""
    if not rows:
        return Resolution(recipients=(), resolver=None, tried=tuple(chain))
    best = min(row.rank for row in rows)
    chosen = sorted((row for row in rows if row.rank == best), key=lambda r: (r.email, r.id))
    return Resolution(
        recipients=tuple(
            Recipient(
                user_id=str(row.id),
                email=row.email,
                name=row.name,
                timezone=row.timezone,
                quiet_start=row.quiet_start.strftime("%H:%M") if row.quiet_start else None,
                quiet_end=row.quiet_end.strftime("%H:%M") if row.quiet_end else None,
            )
            for row in chosen
        ),
        resolver=chain[best],
        tried=tuple(chain[: best + 1]),
    )


async def resolve(
    session: AsyncSession, item: Subject, chain: Sequence[str], *, actor_id: uuid.UUID | None
) -> Resolution:
    """The first resolver of `chain` with at least one valid recipient: one query for the
    whole chain."""
    if not chain:
        return Resolution(recipients=(), resolver=None, tried=())
    best = ranked(item, chain, actor_id).subquery()
    rows = (await session.execute(select(best).where(best.c.rank == best_rank(best)))).all()
    return winners(rows, chain)


def best_rank(found: FromClause) -> ScalarSelect[Any]:
    """The winning rank among `ranked` rows (as a subquery or CTE)."""
    return select(func.min(found.c.rank)).scalar_subquery()
