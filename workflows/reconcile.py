"""`ReconcileWorkflow`: run every minute by the `escalator-reconciler` Schedule (created at
worker start). No signals or queries: start missing workflows, nudge lagging ones, start
the sign-in requests nobody answered, done."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.reconcile import ReconcileActivities


@workflow.defn
class ReconcileWorkflow:
    @workflow.run
    async def run(self) -> int:
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
