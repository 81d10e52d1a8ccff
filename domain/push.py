"""The push outbox: one `push_event` row per event, and a NOTIFY in the same transaction.

Every API process LISTENs on `CHANNEL` and fans out to its SSE subscribers; a client that
missed events replays them from the outbox by id. Publishers take one transaction-scoped
advisory lock first, so ids commit in increasing order: a reader that has seen id N can
never later meet a smaller id, which is what makes "resume after N" lossless.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Row, Select, Text, cast, func, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from domain.models import Item, PushEvent

CHANNEL = "escalator_push"
_ORDER_LOCK = 0x65736361  # any constant shared by every publisher


async def publish(
    session: AsyncSession,
    *,
    account_id: uuid.UUID,
    item: Item | Row[Any] | None,
    kind: str,
    dedup_key: str,
    data: dict[str, Any],
) -> int | None:
    """Insert the event once per `dedup_key` and NOTIFY; returns its id, None if a duplicate.
    Call it last in a transaction: the ordering lock is held until commit."""
    await session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _ORDER_LOCK})
    payload = {**(summary(item) if item else {}), **data}
    inserted = (
        insert(PushEvent)
        .values(
            account_id=account_id,
            item_id=item.id if item else None,
            kind=kind,
            payload=payload,
            dedup_key=dedup_key,
        )
        .on_conflict_do_nothing(index_elements=["dedup_key"])
        .returning(PushEvent.id)
        .cte("inserted")
    )
    # The NOTIFY in the same statement (one round trip); it is delivered at commit, so
    # listeners never see an event that rolled back. No row inserted, no NOTIFY.
    note = func.json_build_object("id", inserted.c.id, "account_id", str(account_id))
    notified = select(inserted.c.id, func.pg_notify(CHANNEL, cast(note, Text)))
    new_id: int | None = await session.scalar(notified)
    return new_id


def summary(item: Item | Row[Any]) -> dict[str, Any]:
    """The item as every push event carries it (an ORM `Item`, or a Core row with at least
    these columns)."""
    return {
        "item": {
            "id": str(item.id),
            "kind": item.kind,
            "type": item.item_type,
            "title": item.title,
            "state": item.state,
            "intent": item.intent,
            "priority": item.priority,
            "due_at": item.due_at.isoformat() if item.due_at else None,
            "claimed_by": str(item.claimed_by) if item.claimed_by else None,
        }
    }


def replay_query(account_id: uuid.UUID, after: int, oldest: datetime) -> Select[PushEvent]:
    """The account's events after id `after` still within retention, in id order. The
    account filter is explicit: row-level security is the second wall, not the only one."""
    return (
        select(PushEvent)
        .where(
            PushEvent.account_id == account_id,
            PushEvent.id > after,
            PushEvent.created_at >= oldest,
        )
        .order_by(PushEvent.id)
    )
