"""`ReconcileWorkflow`: one long-lived workflow, `escalator-reconciler`, started (once, by
id) whenever a worker starts. No signals or queries. Each round starts missing workflows,
nudges lagging ones and starts the sign-in requests nobody answered, then sleeps
`every_seconds` (a durable timer); after `ROUNDS_PER_RUN` rounds it continues as new, so
the Temporal UI lists one reconciler, not one workflow a minute, and its history stays
short."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.reconcile import ReconcileActivities
    from workflows.types import ReconcileInput

ROUNDS_PER_RUN = 60


@workflow.defn
class ReconcileWorkflow:
    @workflow.run
    async def run(self, input: ReconcileInput) -> int:
        """The repairs made; returns only when `input.rounds` is set (tests)."""
        done = 0
        rounds = input.rounds or ROUNDS_PER_RUN
        for round_ in range(rounds):
            done += await _round()
            if input.rounds is not None and round_ == rounds - 1:
                return done
            await workflow.sleep(
                timedelta(seconds=input.every_seconds), summary="until the next round"
            )
        workflow.continue_as_new(ReconcileInput(every_seconds=input.every_seconds))


async def _round() -> int:
    done = 0
    steps = (
        ReconcileActivities.start_missing_workflows,
        ReconcileActivities.nudge_lagging_workflows,
        ReconcileActivities.start_missing_sign_ins,
    )
    for step in steps:
        done += await workflow.execute_activity_method(
            step,
            start_to_close_timeout=timedelta(minutes=5),
            retry_policy=RetryPolicy(maximum_attempts=3),
        )
    return done
