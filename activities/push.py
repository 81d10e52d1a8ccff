"""Live push: an outbox row plus NOTIFY, in one transaction. API replicas LISTEN and fan out
to their SSE subscribers; a client that missed events replays them from the outbox by id."""

from __future__ import annotations

import json
import uuid

from sqlalchemy import text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity

from db import tenant_session
from domain.models import Item, PushEvent
from workflows.types import PublishEvent

CHANNEL = "escalator_push"


async def publish(
    session: AsyncSession,
    *,
    account_id: uuid.UUID,
    item: Item | None,
    kind: str,
    dedup_key: str,
    data: dict[str, object],
) -> int | None:
    """Insert the event once per `dedup_key` and NOTIFY; returns its id, None if a duplicate."""
    payload = {**(summary(item) if item else {}), **data}
    new_id = await session.scalar(
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
    )
    if new_id is not None:
        # NOTIFY is delivered at commit, so listeners never see an event that rolled back.
        note = json.dumps({"id": new_id, "account_id": str(account_id)})
        await session.execute(
            text("SELECT pg_notify(:channel, :note)"), {"channel": CHANNEL, "note": note}
        )
    return new_id


def summary(item: Item) -> dict[str, object]:
    return {
        "item": {
            "id": str(item.id),
            "kind": item.kind,
            "type": item.item_type,
            "title": item.title,
            "state": item.state,
            "priority": item.priority,
            "due_at": item.due_at.isoformat() if item.due_at else None,
            "claimed_by": str(item.claimed_by) if item.claimed_by else None,
        }
    }


class PushActivities:
    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
        self._sessionmaker = sessionmaker

    @activity.defn
    async def publish_event(self, request: PublishEvent) -> int | None:
        """Side effect: one push_event outbox row + NOTIFY. Idempotency key:
        `request.dedup_key` (unique), so a retried publish is delivered once."""
        account_id = uuid.UUID(request.account_id)
        async with tenant_session(self._sessionmaker, account_id) as session:
            item = await session.get(Item, uuid.UUID(request.item_id))
            return await publish(
                session,
                account_id=account_id,
                item=item,
                kind=request.kind,
                dedup_key=request.dedup_key,
                data=request.data,
            )
