"""Item state transitions in the database, shared by the API and the tests.

Each one is a single conditional UPDATE, so concurrent requests cannot both pass a check and
both write: the database picks the winner. Each writes its audit row in the same
transaction. Callers signal the workflow only after the commit.

```
open ──claim──▶ claimed ──release──▶ open
open ──pause──▶ paused ──resume──▶ open          (a paused item can be claimed too)
open | paused | claimed ──resolve / cancel──▶ resolved | cancelled
```
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    DateTime,
    case,
    cast,
    func,
    literal,
    literal_column,
    null,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession

from domain import audit, deliveries, item_hooks, push, send_guard
from domain.errors import AlreadyClaimed, IllegalTransition, NotFound
from domain.models import AuditEvent, Item, User

ACTIVE = ("open", "paused", "claimed")
# Lifecycle changes every open queue page must see at once: the ones that post a webhook.
PUSHED = item_hooks.HOOKED


@dataclass(frozen=True, kw_only=True)
class Transition:
    item: Item
    changed: bool  # False when the request was already true (claiming what you hold)


async def get_item(session: AsyncSession, account_id: uuid.UUID, item_id: uuid.UUID) -> Item:
    item = await session.scalar(
        select(Item).where(Item.id == item_id, Item.account_id == account_id)
    )
    if item is None:
        raise NotFound(f"item {item_id} not found")
    return item


async def _transition(
    session: AsyncSession,
    account_id: uuid.UUID,
    item_id: uuid.UUID,
    *,
    allowed_from: tuple[str, ...],
    values: dict[str, Any],
    extra_condition: ColumnElement[bool] | None = None,
) -> Item | None:
    if "open" in allowed_from and values.get("state", "open") != "open":
        await send_guard.transitioning(session, item_id)  # after the slow sends in flight
    condition = (Item.id == item_id) & (Item.account_id == account_id)
    condition &= Item.state.in_(allowed_from)
    if extra_condition is not None:
        condition &= extra_condition
    item = await session.scalar(
        update(Item)
        .where(condition)
        .values(**values, version=Item.version + 1)
        .returning(Item)
        .execution_options(populate_existing=True)
    )
    if item is not None and item.state != "open":
        # Nothing waits to go out about an item nobody needs to be told of any more.
        await deliveries.suppress_item(
            session, account_id, item_id, f"not sent: the item is {item.state}"
        )
    return item


async def claim(
    session: AsyncSession,
    account_id: uuid.UUID,
    item_id: uuid.UUID,
    user_id: uuid.UUID,
    now: datetime,
) -> Transition:
    """Exactly one of any number of concurrent claims wins; the others learn who did."""
    item = await _transition(
        session,
        account_id,
        item_id,
        allowed_from=("open", "paused"),
        values={
            "state": "claimed",
            "claimed_by": user_id,
            "claimed_at": now,
            # Claiming a paused item ends its pause, as in the workflow.
            "paused_at": None,
            "pauses": case((Item.state == "paused", _close_pause(now)), else_=Item.pauses),
        },
    )
    if item is None:
        current = await get_item(session, account_id, item_id)
        if current.state == "claimed" and current.claimed_by == user_id:
            return Transition(item=current, changed=False)
        if current.state == "claimed":
            claimer = await session.get(User, current.claimed_by) if current.claimed_by else None
            name = claimer.name if claimer is not None else None
            raise AlreadyClaimed(
                f"item already claimed by {name or 'someone else'}",
                claimed_by={"id": str(current.claimed_by), "name": name},
                claimed_at=current.claimed_at.isoformat() if current.claimed_at else None,
            )
        raise IllegalTransition(f"cannot claim an item that is {current.state}")
    await _audit(session, item, "claimed", user_id, now)
    return Transition(item=item, changed=True)


@dataclass(frozen=True, kw_only=True)
class Rule:
    action: str  # the audit action, past tense
    allowed_from: tuple[str, ...]
    values: Callable[[datetime], dict[str, Any]]


def _instant(now: datetime) -> Any:
    # Typed, because jsonb functions take polymorphic arguments asyncpg cannot infer.
    return cast(literal(now), DateTime(timezone=True))


def _close_pause(now: datetime) -> Any:
    path: Any = literal_column("'{-1,end}'::text[]")
    return func.jsonb_set(Item.pauses, path, func.to_jsonb(_instant(now)))


RULES: dict[str, Rule] = {
    "release": Rule(
        action="released",
        allowed_from=("claimed",),
        values=lambda now: {"state": "open", "claimed_by": None, "claimed_at": None},
    ),
    "resolve": Rule(
        action="resolved", allowed_from=ACTIVE, values=lambda now: {"state": "resolved"}
    ),
    "cancel": Rule(
        action="cancelled", allowed_from=ACTIVE, values=lambda now: {"state": "cancelled"}
    ),
    "pause": Rule(
        action="paused",
        allowed_from=("open",),
        values=lambda now: {
            "state": "paused",
            "paused_at": now,
            "pauses": Item.pauses.op("||")(
                func.jsonb_build_array(
                    func.jsonb_build_object(
                        literal_column("'start'"), _instant(now), literal_column("'end'"), null()
                    )
                )
            ),
        },
    ),
    "resume": Rule(
        action="resumed",
        allowed_from=("paused",),
        # Closing the open pause is what shifts the rungs later.
        values=lambda now: {"state": "open", "paused_at": None, "pauses": _close_pause(now)},
    ),
}


async def transition(
    session: AsyncSession,
    account_id: uuid.UUID,
    item_id: uuid.UUID,
    actor_id: uuid.UUID | None,
    now: datetime,
    verb: str,
    *,
    extra_values: dict[str, Any] | None = None,
    data: dict[str, Any] | None = None,
) -> Transition:
    """Apply `RULES[verb]`: one conditional UPDATE, then its audit row. An illegal
    transition is a 409 that says the current state and what was allowed."""
    rule = RULES[verb]
    values = {**rule.values(now), **(extra_values or {})}
    item = await _transition(
        session, account_id, item_id, allowed_from=rule.allowed_from, values=values
    )
    if item is None:
        current = await get_item(session, account_id, item_id)
        raise IllegalTransition(
            f"cannot {verb} an item that is {current.state} "
            f"(allowed from: {', '.join(rule.allowed_from)})",
            state=current.state,
        )
    await _audit(session, item, rule.action, actor_id, now, data)
    return Transition(item=item, changed=True)


RULES["change_due"] = Rule(action="due_changed", allowed_from=ACTIVE, values=lambda now: {})


async def change_due(
    session: AsyncSession,
    account_id: uuid.UUID,
    item_id: uuid.UUID,
    actor_id: uuid.UUID,
    now: datetime,
    due_at: datetime,
) -> Transition:
    before = (await get_item(session, account_id, item_id)).due_at
    return await transition(
        session,
        account_id,
        item_id,
        actor_id,
        now,
        "change_due",
        extra_values={"due_at": due_at},
        data={"from": before.isoformat() if before else None, "to": due_at.isoformat()},
    )


async def _audit(
    session: AsyncSession,
    item: Item,
    action: str,
    actor_id: uuid.UUID | None,
    now: datetime,
    data: dict[str, Any] | None = None,
) -> None:
    key = f"{item.id}:{action}:{now.isoformat()}"
    await audit.record(
        session,
        account_id=item.account_id,
        item_id=item.id,
        action=action,
        actor_id=actor_id,
        data=data,
        key=key,
    )
    await item_hooks.plan(session, item, action, actor_id)  # its webhooks, if any take it
    if action in PUSHED:
        # Last in the transaction: the outbox's ordering lock is held until commit.
        await push.publish(
            session,
            account_id=item.account_id,
            item=item,
            kind=f"item.{action}",
            dedup_key=key,
            data={"actor_id": str(actor_id) if actor_id else None},
        )


async def add_note(
    session: AsyncSession, account_id: uuid.UUID, item_id: uuid.UUID, actor_id: uuid.UUID, text: str
) -> int:
    """A note on the item's timeline (any state, ended ones too: "resolved: the valve was
    replaced"), audited with its author and pushed; the audit row's id."""
    item = await get_item(session, account_id, item_id)
    note_id = uuid.uuid4()
    await audit.record(
        session,
        account_id=account_id,
        item_id=item.id,
        action="noted",
        key=f"{item.id}:note:{note_id}",
        actor_id=actor_id,
        data={"text": text},
    )
    await push.publish(
        session,
        account_id=account_id,
        item=item,
        kind="item.noted",
        dedup_key=f"{item.id}:note:{note_id}",
        data={"actor_id": str(actor_id)},
    )
    found = await session.scalar(
        select(AuditEvent.id).where(AuditEvent.idempotency_key == f"{item.id}:note:{note_id}")
    )
    assert found is not None  # written just above
    return found


async def time_out_claim(
    session: AsyncSession,
    account_id: uuid.UUID,
    item_id: uuid.UUID,
    claimed_by: uuid.UUID,
    claimed_at: datetime,
    now: datetime,
) -> bool:
    """Reopen the item if `claimed_by`'s claim of `claimed_at` still holds (a claim not
    resolved within the policy's `claim_timeout`), audited `claim_timed_out` with no actor;
    False if it was released, resolved or claimed anew meanwhile."""
    item = await _transition(
        session,
        account_id,
        item_id,
        allowed_from=("claimed",),
        values=RULES["release"].values(now),
        extra_condition=(Item.claimed_by == claimed_by) & (Item.claimed_at == claimed_at),
    )
    if item is None:
        return False
    data = {"claimed_by": str(claimed_by), "claimed_at": claimed_at.isoformat()}
    await _audit(session, item, "claim_timed_out", None, now, data)
    return True


# ---- falling due: not a transition, an event (audited, then pushed) ----------------------
@dataclass(frozen=True)
class FellDue:
    """The `fell_due` audit row's key and data: keyed by the item and the due instant (a
    new due date falls due anew)."""

    key: str
    data: dict[str, str]


def fell_due(item_id: uuid.UUID, due: datetime) -> FellDue:
    at = due.isoformat()
    return FellDue(key=f"{item_id}:fell_due:{at}", data={"due_at": at})


def overdue_event(item_id: uuid.UUID, due: datetime) -> dict[str, Any]:
    """The `item.overdue` event's kind, key and data (the item's summary goes with it)."""
    at = due.isoformat()
    return {
        "kind": "item.overdue",
        "dedup_key": f"{item_id}:overdue:{at}",
        "data": {"overdue_since": at},
    }


async def audit_fell_due(session: AsyncSession, item: Item | Any, due: datetime) -> bool:
    """The item's `fell_due` audit row; True if this call wrote it (then `publish_overdue`
    follows)."""
    row = fell_due(item.id, due)
    return await audit.record(
        session,
        account_id=item.account_id,
        item_id=item.id,
        action="fell_due",
        key=row.key,
        data=row.data,
    )


async def publish_overdue(session: AsyncSession, item: Item | Any, due: datetime) -> None:
    """The `item.overdue` push event, so an open page shows the item at once (last in its
    transaction, as every push; once per item and due instant)."""
    event = overdue_event(item.id, due)
    await push.publish(
        session,
        account_id=item.account_id,
        item=item,
        kind=event["kind"],
        dedup_key=event["dedup_key"],
        data=event["data"],
    )
