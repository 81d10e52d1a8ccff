"""The reconciler's one activity: start the workflows that should exist but do not."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.client import Client

from api.workflows import start_item
from domain.clock import Clock
from domain.models import Item

# Younger items are probably being started by the API right now.
GRACE = timedelta(seconds=30)
BATCH = 500


class ReconcileActivities:
    def __init__(
        self,
        client: Client,
        owner_sessionmaker: async_sessionmaker[AsyncSession],
        app_sessionmaker: async_sessionmaker[AsyncSession],
        task_queue: str,
        clock: Clock,
    ) -> None:
        self._client = client
        self._owner = owner_sessionmaker
        self._app = app_sessionmaker
        self._task_queue = task_queue
        self._clock = clock

    @activity.defn
    async def start_missing_workflows(self) -> int:
        """Side effect: starts workflows (id `item-<uuid>`, so a repeat is a no-op) for
        active items the API committed but never started, e.g. because Temporal was down.
        Reads across accounts, so it uses the owner's connection."""
        async with self._owner() as session:
            rows = await session.execute(
                select(Item.id, Item.account_id, Item.item_type, Item.title)
                .where(
                    Item.workflow_started_at.is_(None),
                    Item.state.in_(("open", "paused", "claimed")),
                    Item.created_at < self._clock.now() - GRACE,
                )
                .order_by(Item.created_at)
                .limit(BATCH)
            )
            missing = list(rows)
        started = 0
        for item_id, account_id, item_type, title in missing:
            summary = f"{item_type}: {title}"
            if await start_item(
                self._client, self._app, self._task_queue, item_id, account_id, summary
            ):
                started += 1
        activity.logger.info("reconcile.done", extra={"missing": len(missing), "started": started})
        return started
