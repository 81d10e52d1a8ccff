"""Recipient resolution as an activity (a read; the workflow keeps the answer in history)."""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

from db import get_in_account, tenant_session
from domain import recipients
from domain.models import Item
from workflows.types import ResolvedRecipients, ResolveRecipients


class RecipientActivities:
    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
        self._sessionmaker = sessionmaker

    @activity.defn
    async def resolve_recipients(self, request: ResolveRecipients) -> ResolvedRecipients:
        """Side effect: none (a read), so retries are safe. Walks the chain; the first
        resolver with at least one valid recipient wins."""
        account_id = uuid.UUID(request.account_id)
        async with tenant_session(self._sessionmaker, account_id) as session:
            item = await get_in_account(session, Item, uuid.UUID(request.item_id), account_id)
            if item is None:
                raise ApplicationError(f"item {request.item_id} not found", non_retryable=True)
            actor = uuid.UUID(request.actor_id) if request.actor_id else None
            found = await recipients.resolve(session, item, request.chain, actor_id=actor)
        return ResolvedRecipients(
            recipients=list(found.recipients), resolver=found.resolver, tried=list(found.tried)
        )
