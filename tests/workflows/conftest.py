"""A worker on a fresh task queue per test, against the time-skipping server."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.workflowservice.v1 import DescribeWorkflowExecutionRequest
from temporalio.client import WorkflowHandle
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from config import Settings
from db import tenant_session
from domain import lifecycle
from mailsink import MailSink
from tests.support.tenants import Tenant
from worker import build_worker
from workflows.escalation import EscalationWorkflow
from workflows.types import (
    AtSignal,
    ChangeDueSignal,
    ClaimSignal,
    EscalationInput,
    EscalationResult,
    StateView,
    workflow_id,
)

# One generation until the first release (see test_replay.py); a scenario's history is
# saved as `<scenario>.json`.
HISTORIES = Path(__file__).with_name("histories")

Handle = WorkflowHandle[Any, EscalationResult]


@dataclass
class Runner:
    env: WorkflowEnvironment
    task_queue: str
    sink: MailSink
    app: async_sessionmaker[AsyncSession]
    started: list[Handle] = field(default_factory=list)

    async def now(self) -> datetime:
        return await self.env.get_current_time()

    async def start(self, tenant: Tenant, item_id: uuid.UUID) -> Handle:
        handle = await self.env.client.start_workflow(
            EscalationWorkflow.run,
            EscalationInput(item_id=str(item_id), account_id=str(tenant.account_id)),
            id=workflow_id(str(item_id)),
            task_queue=self.task_queue,
        )
        self.started.append(handle)
        # A query is answered once the first workflow task is done: the item is loaded and
        # planned, so no task is in flight when a test starts skipping time.
        await handle.query(EscalationWorkflow.get_state)
        return handle

    async def stop_all(self) -> None:
        """End what this test started: on the shared time-skipping server, a workflow whose
        worker has gone would hold its task open and stop time from skipping for the next."""
        for handle in self.started:
            with contextlib.suppress(RPCError):
                await handle.terminate("test finished")

    async def skip_to(self, target: datetime) -> None:
        """Skip server time to `target`. The server skips only while no task is in flight;
        on a loaded machine its sleep call can time out first, so carry on from where the
        clock got to (a few times, then give up loudly)."""
        for attempt in range(3):
            gap = target - await self.now()
            if gap <= timedelta(0):
                return
            try:
                await self.env.sleep(gap)
                return
            except RPCError:
                if attempt == 2:
                    raise

    async def state(self, handle: Handle) -> StateView:
        return await handle.query(EscalationWorkflow.get_state)

    async def state_when(
        self, handle: Handle, ready: Callable[[StateView], bool], within: float = 10.0
    ) -> StateView:
        """Signals are asynchronous: poll the query until it shows what was signalled."""
        deadline = asyncio.get_running_loop().time() + within
        while not ready(state := await self.state(handle)):
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"workflow state never got there: {state}")
            await asyncio.sleep(0.05)
        return state

    async def claim(self, tenant: Tenant, handle: Handle, item_id: uuid.UUID, who: str) -> None:
        """What the API does: the race-safe DB claim, committed, then the signal."""
        at = await self.now()
        async with tenant_session(self.app, tenant.account_id) as session:
            await lifecycle.claim(session, tenant.account_id, item_id, tenant.user(who), at)
        await handle.signal(
            EscalationWorkflow.claim, ClaimSignal(user_id=str(tenant.user(who)), at=at)
        )

    async def act(
        self,
        tenant: Tenant,
        handle: Handle,
        item_id: uuid.UUID,
        verb: str,
        *,
        who: str = "ada",
        at: datetime | None = None,
        due_at: datetime | None = None,
    ) -> None:
        """What the API does for release, resolve, cancel, pause, resume and change_due:
        commit the change in Postgres (the truth), then nudge the workflow with a signal."""
        at = at or await self.now()
        async with tenant_session(self.app, tenant.account_id) as session:
            if verb == "change_due":
                assert due_at is not None
                await lifecycle.change_due(
                    session, tenant.account_id, item_id, tenant.user(who), at, due_at
                )
            else:
                await lifecycle.transition(
                    session, tenant.account_id, item_id, tenant.user(who), at, verb
                )
        signal: Any = ChangeDueSignal(due_at=due_at) if due_at else AtSignal(at=at)
        await handle.signal(verb, signal)

    async def search_attribute(self, handle: Handle, name: str) -> Any:
        """Read one attribute from the raw description: the SDK's decoder trips over the
        time-skipping server's encoding of an unset Datetime attribute."""
        client = self.env.client
        described = await client.workflow_service.describe_workflow_execution(
            DescribeWorkflowExecutionRequest(
                namespace=client.namespace, execution=WorkflowExecution(workflow_id=handle.id)
            )
        )
        fields = described.workflow_execution_info.search_attributes
        payload = fields.indexed_fields.get(name)
        return None if payload is None or not payload.data else json.loads(payload.data)

    async def save_history(self, handle: Handle, name: str) -> None:
        await save_history(handle, name)


async def save_history(handle: WorkflowHandle[Any, Any], name: str) -> None:
    """With ESCALATOR_SAVE_HISTORIES=1, keep this run as a replay fixture."""
    if os.environ.get("ESCALATOR_SAVE_HISTORIES"):
        HISTORIES.mkdir(exist_ok=True)
        history = await handle.fetch_history()
        (HISTORIES / f"{name}.json").write_text(history.to_json())


@pytest.fixture
async def runner(
    time_skipping_env: WorkflowEnvironment,
    settings: Settings,
    mail_sink: MailSink,
    engine: AsyncEngine,
    app_sessionmaker: async_sessionmaker[AsyncSession],
) -> AsyncIterator[Runner]:
    task_queue = f"test-{uuid.uuid4()}"
    worker_settings = settings.model_copy(
        update={"task_queue": task_queue, "smtp_port": mail_sink.port}
    )
    async with build_worker(time_skipping_env.client, worker_settings, engine):
        runner = Runner(time_skipping_env, task_queue, mail_sink, app_sessionmaker)
        try:
            yield runner
        finally:
            await runner.stop_all()
