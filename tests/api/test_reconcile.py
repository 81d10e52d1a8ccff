"""Creation is authoritative: with Temporal unreachable the item is still created (workflow
pending), and the reconciler starts its workflow later."""

from __future__ import annotations

import contextlib
import uuid
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.service import RPCError
from temporalio.testing import ActivityEnvironment, WorkflowEnvironment

from activities.reconcile import ReconcileActivities
from domain.clock import utcnow
from tests.api.conftest import Api
from tests.support.tenants import Tenant
from workflows.schedules import RECONCILER_ID, ensure_reconciler
from workflows.types import workflow_id


class Later:
    def now(self) -> datetime:
        return utcnow() + timedelta(minutes=5)


async def test_creation_succeeds_with_temporal_down_and_the_reconciler_starts_it(
    api_without_temporal: Api,
    tenant: Tenant,
    dev_env: WorkflowEnvironment,
    app_sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    created = await api_without_temporal.task(tenant)
    assert created.status_code == 201, created.text
    assert created.json()["workflow"] == "pending"
    item_id = uuid.UUID(created.json()["id"])

    reconcile = ReconcileActivities(dev_env.client, app_sessionmaker, f"q-{uuid.uuid4()}", Later())
    assert await ActivityEnvironment().run(reconcile.start_missing_workflows) >= 1

    assert (await tenant.item(item_id)).workflow_started_at is not None
    handle = dev_env.client.get_workflow_handle(workflow_id(str(item_id)))
    assert (await handle.describe()).id == workflow_id(str(item_id))
    # A second pass finds nothing of ours left to start.
    await ActivityEnvironment().run(reconcile.start_missing_workflows)
    assert (await tenant.item(item_id)).workflow_started_at is not None


async def test_the_reconciler_schedule_is_created_once(dev_env: WorkflowEnvironment) -> None:
    queue = f"q-{uuid.uuid4()}"
    with contextlib.suppress(RPCError):  # a worker process in this session may have made it
        await dev_env.client.get_schedule_handle(RECONCILER_ID).delete()
    first = await ensure_reconciler(dev_env.client, queue, timedelta(minutes=1))
    second = await ensure_reconciler(dev_env.client, queue, timedelta(minutes=1))
    assert (first, second) == (True, False)
    described = await dev_env.client.get_schedule_handle(RECONCILER_ID).describe()
    assert described.schedule.spec.intervals[0].every == timedelta(minutes=1)
