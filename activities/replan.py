"""`replan_batch`, `fail_replan`: a bulk re-plan's database steps (`domain.replan`), run by
`ReplanWorkflow` as local activities, one transaction each."""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

from db import tenant_session
from domain import replan
from domain.clock import Clock, SystemClock
from domain.errors import DomainError
from domain.models import ReplanJob
from domain.policy import PolicyError
from workflows.replan_types import ReplanBatch, ReplanFailed, ReplanProgress


class ReplanActivities:
    def __init__(
        self, sessionmaker: async_sessionmaker[AsyncSession], clock: Clock | None = None
    ) -> None:
        self._sessionmaker = sessionmaker
        self._clock = clock or SystemClock()

    @activity.defn
    async def replan_batch(self, batch: ReplanBatch) -> ReplanProgress:
        """Side effect: one batch of the job in one transaction: up to `batch.size` of its
        items after `batch.after` locked and moved (version + 1, a `replanned` audit row
        each), the job's counts and cursor, and its `replan.progress` / `replan.done` push
        event. Idempotency key: the job's cursor: a retry of a batch that committed finds
        the job past `after` and does nothing. A business rejection (the job is gone, a
        policy that cannot be planned with) is non-retryable: the job is then failed."""
        account_id = uuid.UUID(batch.account_id)
        try:
            async with tenant_session(self._sessionmaker, account_id) as session:
                done = await replan.run_batch(
                    session,
                    account_id,
                    uuid.UUID(batch.job_id),
                    self._clock.now(),
                    after=uuid.UUID(batch.after) if batch.after else None,
                    size=batch.size,
                )
        except (DomainError, PolicyError) as rejected:
            raise ApplicationError(
                f"re-plan job {batch.job_id} cannot go on: {rejected}",
                type="ReplanRejected",
                non_retryable=True,
            ) from rejected
        return _progress(done.job, done.moved)

    @activity.defn
    async def fail_replan(self, failed: ReplanFailed) -> ReplanProgress:
        """Side effect: the job `failed` with the error, and `replan.failed` pushed; returns
        the job as it now stands. Idempotency: a job no longer running is left as it is."""
        account_id = uuid.UUID(failed.account_id)
        try:
            async with tenant_session(self._sessionmaker, account_id) as session:
                job = await replan.fail_job(
                    session, account_id, uuid.UUID(failed.job_id), self._clock.now(), failed.error
                )
        except DomainError:  # the job is gone (its account was deleted): nothing to tell
            return ReplanProgress(
                state="failed", cursor=None, matched=0, replanned=0, rungs_moved=0, moved=[]
            )
        return _progress(job, [])


def _progress(job: ReplanJob, moved: list[uuid.UUID]) -> ReplanProgress:
    return ReplanProgress(
        state=job.state,
        cursor=str(job.cursor) if job.cursor else None,
        matched=job.matched,
        replanned=job.replanned,
        rungs_moved=job.rungs_moved,
        moved=[str(item_id) for item_id in moved],
    )
