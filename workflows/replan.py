"""`ReplanWorkflow`: a bulk re-plan (`POST /v1/replan`), id `replan-<job id>`. No signals,
no queries, no timers.

It runs `replan_batch` (a local database step: one transaction that locks, moves and audits
the job's next `batch` items in id order, and counts them on the job) until the job's last
batch. After each batch it signals `replan` to the workflow of every item that batch moved,
so its timers follow; a signal that fails (no such workflow, or one that has ended) is
ignored: Postgres is the truth, and the reconciler nudges any workflow whose item's version
is ahead of it. After `batches_per_run` batches (or when Temporal suggests it) it continues
as new from the job's cursor, so its history stays short however many items the job has. A
batch rejected for good (the job is gone, a policy that cannot be planned with) marks the
job `failed` (`fail_replan`).
"""

from __future__ import annotations

import asyncio
import dataclasses

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.replan import ReplanActivities
    from workflows.replan_types import ReplanBatch, ReplanFailed, ReplanInput, ReplanProgress
    from workflows.retries import REPLAN_BATCH_TIMEOUT, db_step
    from workflows.types import workflow_id


@workflow.defn
class ReplanWorkflow:
    @workflow.run
    async def run(self, input: ReplanInput) -> ReplanProgress:
        """The job as its last batch left it (done or failed)."""
        after = input.after
        for _ in range(input.batches_per_run):
            step = ReplanBatch(
                job_id=input.job_id, account_id=input.account_id, after=after, size=input.batch
            )
            try:
                done = await db_step(ReplanActivities.replan_batch, step, REPLAN_BATCH_TIMEOUT)
            # A local activity's failure arrives as its own error, a remote one's wrapped.
            except (ActivityError, ApplicationError) as error:
                wrapped = isinstance(error, ActivityError) and error.cause is not None
                reason = str(error.cause if wrapped else error)
                failed = ReplanFailed(
                    job_id=input.job_id, account_id=input.account_id, error=reason
                )
                workflow.logger.warning("replan.failed", extra={"error": reason})
                return await db_step(ReplanActivities.fail_replan, failed)
            await asyncio.gather(*(_nudge(item_id) for item_id in done.moved))
            if done.last:
                return done
            after = done.cursor
            if workflow.info().is_continue_as_new_suggested():
                break
        workflow.continue_as_new(dataclasses.replace(input, after=after))


async def _nudge(item_id: str) -> None:
    """Signal `replan` to the item's workflow; a failure is the reconciler's to heal."""
    try:
        await workflow.get_external_workflow_handle(workflow_id(item_id)).signal("replan")
    except Exception as error:  # missing or ended: the item's version is ahead of it
        workflow.logger.info(
            "replan.signal_failed", extra={"item_id": item_id, "error": str(error)}
        )
