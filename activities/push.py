"""Live push from the worker: the outbox row plus NOTIFY of `domain.push`."""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity

from db import get_in_account, tenant_session
from domain.models import Item
from domain.push import publish
from workflows.types import PublishEvent


class PushActivities:
    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
        self._sessionmaker = sessionmaker

    @activity.defn
    async def publish_event(self, request: PublishEvent) -> int | None:
        """Side effect: one push_event outbox row + NOTIFY. Idempotency key:
        `request.dedup_key` (unique), so a retried publish is delivered once."""
        account_id = uuid.UUID(request.account_id)
        async with tenant_session(self._sessionmaker, account_id) as session:
            item = await get_in_account(session, Item, uuid.UUID(request.item_id), account_id)
            return await publish(
                session,
                account_id=account_id,
                item=item,
                kind=request.kind,
                dedup_key=request.dedup_key,
                data=request.data,
            )
