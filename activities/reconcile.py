"""The reconciler's activities: start the workflows that should exist but do not, and nudge
the ones whose item changed without their hearing of it (a signal lost while Temporal was
away). Both read across accounts through definer functions made for them."""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.client import Client

import metrics
from domain.clock import Clock
from domain.replan import BATCH as REPLAN_BATCH
from workflows.replan_types import ReplanInput
from workflows.starts import (
    FAILED,
    GONE,
    SENT,
    signal_outcome,
    start_item,
    start_replan,
    start_sign_in,
)
from workflows.types import NudgeCursor, Nudged, NudgePass, Pruned, SignIn

# Younger items and sign-in requests are probably being started by the API right now.
GRACE = timedelta(seconds=30)
# An older sign-in request is not answered any more: its link would not live long enough
# (15 minutes from the request) to be worth a mail.
SIGN_IN_SPAN = timedelta(minutes=10)
BATCH = 500
PASS_BUDGET = timedelta(seconds=20)  # one nudge pass: then the walk goes on next round
SIGNALS_AT_ONCE = 32
PRUNE_BATCH = 5_000
PRUNE_BUDGET = timedelta(seconds=10)
BEGINNING = datetime(1970, 1, 1, tzinfo=UTC)
NIL = str(uuid.UUID(int=0))


class ReconcileActivities:
    def __init__(
        self,
        client: Client,
        sessionmaker: async_sessionmaker[AsyncSession],
        task_queue: str,
        clock: Clock,
        push_retention_days: int = 7,
    ) -> None:
        self._push_retention_days = push_retention_days
        self._client = client
        self._sessionmaker = sessionmaker
        self._task_queue = task_queue
        self._clock = clock
        self._signals = asyncio.Semaphore(SIGNALS_AT_ONCE)

    @activity.defn
    async def start_missing_workflows(self) -> int:
        """Side effect: starts workflows (id `item-<uuid>`, so a repeat is a no-op) for
        active items the API committed but never started, e.g. because Temporal was down;
        and the workflow of every re-plan job still `running` (id `replan-<job>`: one that
        runs is left alone, one that never started or ended early starts from the job's
        cursor). Reads across accounts through the definer functions made for them; each
        start then writes as its account. Returns how many items' workflows it started."""
        async with self._sessionmaker() as session:
            rows = await session.execute(
                text("SELECT * FROM escalator_items_to_start(:before, :max_rows)"),
                {"before": self._clock.now() - GRACE, "max_rows": BATCH},
            )
            missing = [tuple(row) for row in rows]
            jobs = await session.execute(
                text("SELECT * FROM escalator_replans_to_start(:before, :max_rows)"),
                {"before": self._clock.now() - GRACE, "max_rows": BATCH},
            )
            replans = [tuple(row) for row in jobs]
        started = 0
        for item_id, account_id, item_type, title in missing:
            summary = f"{item_type}: {title}"
            if await start_item(self._client, self._task_queue, item_id, account_id, summary):
                started += 1
        for job_id, account_id, cursor in replans:  # a running one is left as it is
            job = ReplanInput(
                job_id=str(job_id),
                account_id=str(account_id),
                batch=REPLAN_BATCH,
                after=str(cursor) if cursor else None,
            )
            await start_replan(self._client, self._task_queue, job)
        metrics.RECONCILER_REPAIRS.labels(kind="started").inc(started)
        activity.logger.info("reconcile.done", extra={"missing": len(missing), "started": started})
        return started

    @activity.defn
    async def nudge_lagging_workflows(self, request: NudgePass) -> Nudged:
        """Side effect: a `sync` signal to each workflow whose item's version is ahead of the
        version it applied (after a grace for the API's own signal), walking the lagging
        items in (updated_at, id) order from `request.after`, a page at a time, for at most
        `PASS_BUDGET`; returns where the walk stands, so the next pass goes on from there
        and no item waits behind others for ever. An item whose workflow Temporal no longer
        has is settled (`escalator_workflows_gone`); a signal that fails otherwise is
        counted and logged, and tried again on the next walk. Idempotent: a workflow that
        already caught up ignores the extra nudge."""
        started = time.monotonic()
        done, after = Nudged(), request.after
        while time.monotonic() - started < PASS_BUDGET.total_seconds():
            page = await self._lagging(after)
            outcomes = await asyncio.gather(*(self._nudge(row.id) for row in page))
            gone = [row.id for row, outcome in zip(page, outcomes, strict=True) if outcome == GONE]
            if gone:
                async with self._sessionmaker() as session, session.begin():
                    await session.execute(
                        text("SELECT * FROM escalator_workflows_gone(:ids)"), {"ids": gone}
                    )
            done = Nudged(
                nudged=done.nudged + outcomes.count(SENT),
                gone=done.gone + len(gone),
                failed=done.failed + outcomes.count(FAILED),
            )
            if len(page) < BATCH:
                after = None  # the end: the next pass starts over
                break
            after = NudgeCursor(updated_at=page[-1].updated_at, item_id=str(page[-1].id))
        metrics.RECONCILER_REPAIRS.labels(kind="nudged").inc(done.nudged)
        metrics.RECONCILER_REPAIRS.labels(kind="gone").inc(done.gone)
        metrics.RECONCILER_NUDGES_FAILED.inc(done.failed)
        summary = {**asdict(done), "seconds": round(time.monotonic() - started, 3)}
        log = activity.logger.warning if done.failed else activity.logger.info
        log("reconcile.nudged", extra={**summary, "walk": "on" if after else "complete"})
        return Nudged(nudged=done.nudged, gone=done.gone, failed=done.failed, after=after)

    async def _lagging(self, after: NudgeCursor | None) -> list[Any]:
        """The next page of lagging items after the cursor."""
        at, item_id = (after.updated_at, after.item_id) if after else (BEGINNING, NIL)
        async with self._sessionmaker() as session:
            rows = await session.execute(
                text(
                    "SELECT id, state, updated_at FROM "
                    "escalator_items_to_nudge(:before, :after_at, :after_id, :max_rows)"
                ),
                {
                    "before": self._clock.now() - GRACE,
                    "after_at": at,
                    "after_id": uuid.UUID(item_id),
                    "max_rows": BATCH,
                },
            )
            return list(rows)

    async def _nudge(self, item_id: uuid.UUID) -> str:
        """One `sync` signal, a bounded number at a time: SENT, GONE (Temporal has no such
        workflow, or it has ended) or FAILED (logged by `signal_outcome`)."""
        async with self._signals:
            return await signal_outcome(self._client, item_id, "sync")

    @activity.defn
    async def prune_tables(self) -> Pruned:
        """Side effect: deletes push events older than the retention window and used-link
        rows whose link can no longer be valid (`escalator_prune`), `PRUNE_BATCH` of each
        per transaction, until none are left or `PRUNE_BUDGET` has passed (the rest go
        next round). Idempotent: what is gone stays gone."""
        started, done = time.monotonic(), Pruned()
        now = self._clock.now()
        while time.monotonic() - started < PRUNE_BUDGET.total_seconds():
            async with self._sessionmaker() as session, session.begin():
                events, links = (
                    await session.execute(
                        text("SELECT * FROM escalator_prune(:now, :push_before, :max_rows)"),
                        {
                            "now": now,
                            "push_before": now - timedelta(days=self._push_retention_days),
                            "max_rows": PRUNE_BATCH,
                        },
                    )
                ).one()
            done = Pruned(push_events=done.push_events + events, used_links=done.used_links + links)
            if events < PRUNE_BATCH and links < PRUNE_BATCH:
                break
        metrics.PRUNED.labels(table="push_event").inc(done.push_events)
        metrics.PRUNED.labels(table="used_link").inc(done.used_links)
        if done.push_events or done.used_links:
            activity.logger.info("reconcile.pruned", extra=asdict(done))
        return done

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
