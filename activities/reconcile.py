"""The reconciler's activities: start the workflows that should exist but do not, and nudge
the ones whose item changed without their hearing of it (a signal lost while Temporal was
away). Both read across accounts through definer functions made for them."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.client import Client

import metrics
from domain.clock import Clock
from workflows.starts import signal_item, start_item, start_sign_in
from workflows.types import SignIn

# Younger items and sign-in requests are probably being started by the API right now.
GRACE = timedelta(seconds=30)
# An older sign-in request is not answered any more: its link would not live long enough
# (15 minutes from the request) to be worth a mail.
SIGN_IN_SPAN = timedelta(minutes=10)
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
            if await start_item(self._client, self._task_queue, item_id, account_id, summary):
                started += 1
        metrics.RECONCILER_REPAIRS.labels(kind="started").inc(started)
        activity.logger.info("reconcile.done", extra={"missing": len(missing), "started": started})
        return started

    @activity.defn
    async def nudge_lagging_workflows(self) -> int:
        """Side effect: a `sync` signal to each workflow whose item's version is ahead of the
        version it applied (after a grace for the API's own signal). Idempotent: a workflow
        that already caught up ignores the extra nudge; one that has ended is skipped."""
        async with self._sessionmaker() as session:
            rows = await session.execute(
                text("SELECT id FROM escalator_items_to_nudge(:before, :max_rows)"),
                {"before": self._clock.now() - GRACE, "max_rows": BATCH},
            )
            lagging = [item_id for (item_id,) in rows]
        nudged = 0
        for item_id in lagging:
            if await signal_item(self._client, item_id, "sync", None):
                nudged += 1
        metrics.RECONCILER_REPAIRS.labels(kind="nudged").inc(nudged)
        activity.logger.info("reconcile.nudged", extra={"lagging": len(lagging), "nudged": nudged})
        return nudged

    @activity.defn
    async def start_missing_sign_ins(self) -> int:
        """Side effect: starts the workflow (id `sign-in-<request id>`, so a repeat is a
        no-op) of each sign-in request of the last 10 minutes nobody handled, e.g. because
        Temporal was down when it was made."""
        now = self._clock.now()
        async with self._sessionmaker() as session:
            rows = await session.execute(
                text("SELECT id FROM escalator_sign_ins_to_start(:before, :since, :max_rows)"),
                {"before": now - GRACE, "since": now - SIGN_IN_SPAN, "max_rows": BATCH},
            )
            missing = [request_id for (request_id,) in rows]
        started = 0
        for request_id in missing:
            if await start_sign_in(self._client, self._task_queue, SignIn(request_id=request_id)):
                started += 1
        metrics.RECONCILER_REPAIRS.labels(kind="sign_in").inc(started)
        activity.logger.info(
            "reconcile.sign_ins", extra={"missing": len(missing), "started": started}
        )
        return started
