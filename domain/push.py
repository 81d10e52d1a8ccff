"""The push outbox: one `push_event` row per event, and a NOTIFY in the same transaction.

Every API process LISTENs on `CHANNEL` and fans out to its SSE subscribers; a client that
missed events replays them from the outbox by id. Publishers take their account's
transaction-scoped advisory lock first, so an account's ids commit in increasing order: a
reader of one account's stream that has seen id N can never later meet a smaller id of it,
which is what makes "resume after N" lossless. Accounts never wait for each other; the hub,
which reads all of them, re-reads the ids it saw missing (`api.events`).

The API publishes at its commit: a request's events are queued on the session
(`defer_until_commit`) and written by `flush` just before the commit, so the lock is held
for that moment only, never while the response is built.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Row, Select, bindparam, select, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncSession

from domain.models import Item, PushEvent

CHANNEL = "escalator_push"
# The advisory lock space's class for the per-account ordering lock (two-key form, as the
# send guard's 7201) that `escalator_publish` takes.
ORDER_CLASS = 7202
_DEFERRED = "escalator.push.deferred"


def defer_until_commit(session: AsyncSession) -> None:
    """From now on `publish` on this session queues; `flush` writes the queue."""
    session.info[_DEFERRED] = []


async def flush(session: AsyncSession) -> None:
    """Publish what was queued on this session, in one statement (call it last before the
    commit)."""
    queued: list[dict[str, Any]] = session.info.get(_DEFERRED) or []
    session.info[_DEFERRED] = []
    await _publish(session, queued)


async def publish(
    session: AsyncSession,
    *,
    account_id: uuid.UUID,
    item: Item | Row[Any] | None,
    kind: str,
    dedup_key: str,
    data: dict[str, Any],
) -> None:
    """Insert the event once per `dedup_key` and NOTIFY, or queue it until `flush` on a
    session that defers. Call it last in a transaction: the ordering lock is held until
    commit."""
    event: dict[str, Any] = {
        "account_id": account_id,
        "payload": {**(summary(item) if item else {}), **data},
        "item_id": item.id if item else None,
        "kind": kind,
        "dedup_key": dedup_key,
    }
    queued: list[dict[str, Any]] | None = session.info.get(_DEFERRED)
    if queued is not None:
        queued.append(event)
        return
    await _publish(session, [event])


_PUBLISH = text("SELECT escalator_publish(:account, :events)").bindparams(
    bindparam("events", type_=JSONB)
)


async def _publish(session: AsyncSession, events: list[dict[str, Any]]) -> None:
    """The events of one account (a session is pinned to one), in their order, with the
    account's ordering lock and their NOTIFYs, in one statement (`escalator_publish`: the
    rows' ids are drawn after the lock is held; the NOTIFY is delivered at commit, so
    listeners never see an event that rolled back; a duplicate key inserts and notifies
    nothing)."""
    if not events:
        return
    account_id = events[0]["account_id"]
    assert all(e["account_id"] == account_id for e in events), "one account per transaction"
    rows = [
        {
            "item_id": str(e["item_id"]) if e["item_id"] else None,
            "kind": e["kind"],
            "payload": e["payload"],
            "dedup_key": e["dedup_key"],
        }
        for e in events
    ]
    await session.execute(_PUBLISH, {"account": account_id, "events": rows})


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


def replay_query(
    account_id: uuid.UUID, after: int, oldest: datetime, limit: int | None = None
) -> Select[PushEvent]:
    """The account's events after id `after` still within retention, in id order (at most
    `limit`: a page). The account filter is explicit: row-level security is the second
    wall, not the only one."""
    return (
        select(PushEvent)
        .where(
            PushEvent.account_id == account_id,
            PushEvent.id > after,
            PushEvent.created_at >= oldest,
        )
        .order_by(PushEvent.id)
        .limit(limit)
    )
