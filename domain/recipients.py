"""Recipient resolution: walk a rung's resolver chain; the first resolver that yields at least
one *valid* recipient wins. Valid means active, not soft-deleted, with an email address.

"Non-empty but all invalid" falls through to the next resolver (EasySynQ's P1 bug: a role
full of deactivated people silently swallowed the escalation).

The resolvers run in Postgres (`escalator_recipients`, migration b3c4d5e6f7a8), so a rung's
one call resolves its chain too. Each resolver names people: `assignee`, `claimer`,
`assignee_manager`, `role:<key>` (a named role's members), `account_roles:<a>,<b>` (everyone
with one of those account roles, the escalator left out).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import time
from typing import Any, Protocol

from sqlalchemy import Text, bindparam, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncSession

from domain.models import User
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


@dataclass(frozen=True, kw_only=True)
class Found:
    """One person a chain's resolver named (`escalator_recipients`' row), from JSON."""

    rank: int
    id: uuid.UUID
    email: str
    name: str
    timezone: str
    quiet_start: time | None
    quiet_end: time | None

    @classmethod
    def from_json(cls, row: dict[str, Any]) -> Found:
        start, end = row["quiet_start"], row["quiet_end"]
        return cls(
            rank=row["rank"],
            id=uuid.UUID(row["id"]),
            email=row["email"],
            name=row["name"],
            timezone=row["timezone"],
            quiet_start=time.fromisoformat(start) if start else None,
            quiet_end=time.fromisoformat(end) if end else None,
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
    """The resolution from `escalator_recipients` rows (one rank: the first resolver with
    people), ordered by (email, id)."""
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


_RESOLVE = text(
    "SELECT * FROM escalator_recipients(:account, :assignee, :claimer, :chain, :actor)"
).bindparams(bindparam("chain", type_=ARRAY(Text)))


async def resolve(
    session: AsyncSession, item: Subject, chain: Sequence[str], *, actor_id: uuid.UUID | None
) -> Resolution:
    """The first resolver of `chain` with at least one valid recipient: one call."""
    params = {
        "account": item.account_id,
        "assignee": item.assignee_id,
        "claimer": item.claimed_by,
        "chain": list(chain),
        "actor": actor_id,
    }
    return winners((await session.execute(_RESOLVE, params)).all(), chain)
