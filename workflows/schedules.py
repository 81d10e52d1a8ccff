"""The reconciler's one long-lived workflow, started idempotently whenever a worker starts
(an earlier version ran it from a Schedule, one workflow a minute: that Schedule is deleted
on the way)."""

from __future__ import annotations

import contextlib

from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.service import RPCError

from workflows.reconcile import ReconcileWorkflow
from workflows.types import ReconcileInput

RECONCILER_ID = "escalator-reconciler"


async def ensure_reconciler(client: Client, task_queue: str, every_seconds: int) -> bool:
    """Start the reconciler unless it runs; True if this call started it."""
    with contextlib.suppress(RPCError):  # the Schedule of earlier versions, if any
        await client.get_schedule_handle(RECONCILER_ID).delete()
    with contextlib.suppress(RPCError):  # not found: never started
        described = await client.get_workflow_handle(RECONCILER_ID).describe()
        if described.status == WorkflowExecutionStatus.RUNNING:
            return False
    await client.start_workflow(
        ReconcileWorkflow.run,
        ReconcileInput(every_seconds=every_seconds),
        id=RECONCILER_ID,
        task_queue=task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,  # another worker won
        id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
        static_summary="escalator's reconciler: one round a minute",
    )
    return True
