"""`ReconcileWorkflow`: one long-lived workflow, `escalator-reconciler`, started (once, by
id) whenever a worker starts. No signals or queries. Each round starts missing workflows,
nudges lagging ones (a time-bounded pass of a walk through them, whose cursor the workflow
keeps, so none waits behind others for ever), starts the sign-in requests nobody answered
and prunes the push events and used links past keeping, then sleeps
`every_seconds` (a durable timer); after `ROUNDS_PER_RUN` rounds it continues as new, so
the Temporal UI lists one reconciler, not one workflow a minute, and its history stays
short."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.reconcile import ReconcileActivities
    from workflows.types import NudgeCursor, NudgePass, ReconcileInput

ROUNDS_PER_RUN = 60


@workflow.defn
class ReconcileWorkflow:
    @workflow.run
    async def run(self, input: ReconcileInput) -> int:
        """The repairs made; returns only when `input.rounds` is set (tests)."""
        done, after = 0, input.after
        rounds = input.rounds or ROUNDS_PER_RUN
        for round_ in range(rounds):
            repaired, after = await _round(after)
            done += repaired
            if input.rounds is not None and round_ == rounds - 1:
                return done
            await workflow.sleep(
                timedelta(seconds=input.every_seconds), summary="until the next round"
            )
        workflow.continue_as_new(ReconcileInput(every_seconds=input.every_seconds, after=after))


async def _round(after: NudgeCursor | None) -> tuple[int, NudgeCursor | None]:
    """Start what is missing, nudge a pass of the lagging walk (from `after`), answer the
    sign-in requests nobody answered, prune what is past keeping: the repairs, and where
    the walk goes on."""
    options: dict[str, Any] = {
        "start_to_close_timeout": timedelta(minutes=5),
        "retry_policy": RetryPolicy(maximum_attempts=3),
    }
    started = await workflow.execute_activity_method(
        ReconcileActivities.start_missing_workflows, **options
    )
    nudged = await workflow.execute_activity_method(
        ReconcileActivities.nudge_lagging_workflows, NudgePass(after=after), **options
    )
    answered = await workflow.execute_activity_method(
        ReconcileActivities.start_missing_sign_ins, **options
    )
    await workflow.execute_activity_method(ReconcileActivities.prune_tables, **options)
    return started + nudged.nudged + nudged.gone + answered, nudged.after
