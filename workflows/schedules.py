"""The reconciler's Schedule, created idempotently whenever a worker starts."""

from __future__ import annotations

from datetime import timedelta

from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
)

from workflows.reconcile import ReconcileWorkflow

RECONCILER_ID = "escalator-reconciler"


async def ensure_reconciler(client: Client, task_queue: str, every: timedelta) -> bool:
    """Create the schedule unless it exists; True if this call created it."""
    try:
        await client.create_schedule(
            RECONCILER_ID,
            Schedule(
                action=ScheduleActionStartWorkflow(
                    ReconcileWorkflow.run, id="escalator-reconcile", task_queue=task_queue
                ),
                spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=every)]),
                policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
            ),
        )
    except ScheduleAlreadyRunningError:
        return False
    return True
