"""Live push from the worker: the outbox row plus NOTIFY of `domain.push`.

A push that notifies people of an item (`NOTIFYING`) re-checks the item under a row lock in
the same transaction as its outbox row, exactly as `send_email` does: a claim's UPDATE and
this FOR SHARE exclude each other, so a push is written before the claim commits or never.
"""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity

from db import get_in_account, tenant_session
from domain.models import Item
from domain.push import publish
from workflows.types import PublishEvent

NOTIFYING = frozenset({"rung.fired", "handoff.escalated"})


class PushActivities:
    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
        self._sessionmaker = sessionmaker

    @activity.defn
    async def publish_event(self, request: PublishEvent) -> int | None:
        """Side effect: one push_event outbox row + NOTIFY. Idempotency key:
        `request.dedup_key` (unique), so a retried publish is delivered once. A notifying
        push for an item no longer open is not written (returns None)."""
        account_id = uuid.UUID(request.account_id)
        notifying = request.kind in NOTIFYING
        async with tenant_session(self._sessionmaker, account_id) as session:
            item = await get_in_account(
                session,
                Item,
                uuid.UUID(request.item_id),
                account_id,
                lock="share" if notifying else None,
            )
            if notifying and (item is None or item.state != "open"):
                activity.logger.info(
                    "push.suppressed", extra={"kind": request.kind, "item": request.item_id}
                )
                return None
            return await publish(
                session,
                account_id=account_id,
                item=item,
                kind=request.kind,
                dedup_key=request.dedup_key,
                data=request.data,
            )
