"""The reconciler's one activity: start the workflows that should exist but do not."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.client import Client

from api.workflows import start_item
from domain.clock import Clock

# Younger items are probably being started by the API right now.
GRACE = timedelta(seconds=30)
BATCH = 500


class ReconcileActivities:
    def __init__(
        self,
        client: Client,
        sessionmaker: async_sessionmaker[AsyncSession],
        task_queue: str,
        clock: Clock,
    ) -> None:
        self._client = client
        self._sessionmaker = sessionmaker
        self._task_queue = task_queue
        self._clock = clock

    @activity.defn
    async def start_missing_workflows(self) -> int:
        """Side effect: starts workflows (id `item-<uuid>`, so a repeat is a no-op) for
        active items the API committed but never started, e.g. because Temporal was down.
        Reads across accounts through the one definer function made for it; each start then
        writes as that item's account."""
        async with self._sessionmaker() as session:
            rows = await session.execute(
                text("SELECT * FROM escalator_items_to_start(:before, :max_rows)"),
                {"before": self._clock.now() - GRACE, "max_rows": BATCH},
            )
            missing = [tuple(row) for row in rows]
        started = 0
        for item_id, account_id, item_type, title in missing:
            summary = f"{item_type}: {title}"
            if await start_item(
                self._client, self._sessionmaker, self._task_queue, item_id, account_id, summary
            ):
                started += 1
        activity.logger.info("reconcile.done", extra={"missing": len(missing), "started": started})
        return started
