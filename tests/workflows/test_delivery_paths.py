"""The send path's edges, run through the workflow on the time-skipping server: a claim whose
signal was lost (the rung's fire finds it and the workflow follows the database), Postgres
failing while a rung's outcomes are recorded (the workflow records them, nobody is mailed
twice), and the reconciler's own workflow. Each saves its history for the replay test."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.reconcile import ReconcileActivities
from config import Settings
from db import tenant_session
from domain import lifecycle
from domain.clock import utcnow
from domain.send_guard import GUARD_CLASS
from mailsink import MailSink
from tests.activities.test_email_truth import app_role_locked_out
from tests.api.test_reconcile import Later
from tests.conftest import binary
from tests.support.tenants import Tenant
from tests.workflows.conftest import Runner, save_history
from tests.workflows.test_escalation import MINUTE, friday_after, weekday
from worker import build_worker
from workflows import search_attributes
from workflows.escalation import EscalationWorkflow
from workflows.reconcile import ReconcileWorkflow
from workflows.types import EscalationInput, ReconcileInput, workflow_id


async def test_a_claim_whose_signal_was_lost_stops_the_rung_at_its_fire(
    runner: Runner, tenant: Tenant
) -> None:
    """The claim committed but its signal never came: the rung's fire finds the item
    claimed, writes and sends nothing, and the workflow follows the database until the
    reconciler's `sync` records the version."""
    due = friday_after(await runner.now())
    item_id = await tenant.add_item(due_at=due)
    handle = await runner.start(tenant, item_id)
    async with tenant_session(runner.app, tenant.account_id) as session:
        at = await runner.now()
        await lifecycle.claim(session, tenant.account_id, item_id, tenant.user("emil"), at)

    await runner.skip_to(weekday(due, -1) + MINUTE)  # remind's instant
    state = await runner.state_when(handle, lambda s: s.state == "claimed")
    assert state.claimed_by == str(tenant.user("emil"))
    assert runner.sink.mails == []
    assert await tenant.deliveries(item_id) == []
    await handle.signal(EscalationWorkflow.sync)
    await runner.state_when(handle, lambda s: s.state == "claimed")
    await runner.save_history(handle, "claim_signal_lost")


async def test_postgres_failing_while_a_rung_is_recorded_mails_nobody_twice(
    runner: Runner, tenant: Tenant, owner_sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    """The remind's mail is in flight when Postgres shuts the app out: the fire's local
    activity reports it sent but unrecorded, the workflow's `record_outcomes` is retried
    until Postgres lets it in, and the row ends `sent` after one mail."""
    due = friday_after(await runner.now())
    item_id = await tenant.add_item(due_at=due)
    handle = await runner.start(tenant, item_id)
    runner.sink.delay = 1.5
    skipping = asyncio.create_task(runner.skip_to(weekday(due, -1) + MINUTE))
    for _ in range(400):  # until the remind's mail is inside its SMTP call, under the guard
        async with owner_sessionmaker() as session:
            guarded = await session.scalar(
                text(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
                    "AND classid = :guard AND granted"
                ),
                {"guard": GUARD_CLASS},
            )
        if guarded:
            break
        await asyncio.sleep(0.02)
    assert guarded, "the mail never went out"
    async with app_role_locked_out(owner_sessionmaker):
        await asyncio.sleep(3)  # the record fails; the workflow's record keeps retrying
        [row] = await tenant.deliveries(item_id)
        assert row.status == "sending"
    await skipping
    for _ in range(200):
        [row] = await tenant.deliveries(item_id)
        if row.status == "sent":
            break
        await asyncio.sleep(0.05)
    assert (row.status, row.attempts) == ("sent", 1)
    assert len(runner.sink.mails) == 1
    await runner.save_history(handle, "recorded_after_outage")


async def test_the_reconcilers_workflow_starts_what_the_api_never_did(
    tenant: Tenant,
    dev_env: WorkflowEnvironment,
    app_sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    """On the real dev server (the workflows it starts go to a queue nobody serves, so
    they never run here)."""
    item_id = await tenant.add_item(due_at=utcnow() + timedelta(days=3))
    async with app_sessionmaker() as session, session.begin():
        asked = await session.scalar(
            text("SELECT escalator_sign_in_request(:address, 100, interval '15 minutes')"),
            {"address": tenant.email("ada")},
        )
    reconcile = ReconcileActivities(dev_env.client, app_sessionmaker, f"q-{uuid.uuid4()}", Later())
    queue = f"reconcile-{uuid.uuid4()}"
    activities: list[Callable[..., Any]] = [
        reconcile.start_missing_workflows,
        reconcile.nudge_lagging_workflows,
        reconcile.start_missing_sign_ins,
        reconcile.prune_tables,
    ]
    async with Worker(
        dev_env.client, task_queue=queue, workflows=[ReconcileWorkflow], activities=activities
    ):
        handle = await dev_env.client.start_workflow(
            ReconcileWorkflow.run,
            ReconcileInput(every_seconds=1, rounds=2),  # two rounds: the timer between them
            id=f"reconcile-{uuid.uuid4()}",
            task_queue=queue,
        )
        assert await handle.result() >= 1
    started = await dev_env.client.get_workflow_handle(workflow_id(str(item_id))).describe()
    assert started.id == workflow_id(str(item_id))
    answered = await dev_env.client.get_workflow_handle(f"sign-in-{asked}").describe()
    assert answered.workflow_type == "SignInMailWorkflow"
    await save_history(handle, "reconciled")


@pytest.fixture
async def short_history_env() -> AsyncIterator[WorkflowEnvironment]:
    """A dev server that suggests continue-as-new after 60 events instead of thousands."""
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(binary("temporal")),
        search_attributes=search_attributes.ALL,
        dev_server_log_level="error",
        dev_server_extra_args=[
            "--dynamic-config-value",
            "limit.historyCount.suggestContinueAsNew=60",
        ],
    )
    yield env
    await env.shutdown()


async def test_continue_as_new_carries_a_pending_retry_instead_of_draining_it(
    short_history_env: WorkflowEnvironment,
    tenant: Tenant,
    settings: Settings,
    mail_sink: MailSink,
    engine: AsyncEngine,
) -> None:
    """Otto's mail meets a 451 and waits for its backoff when the history grows long: the
    workflow continues as new at once (it does not wait for the retry), carries the retry
    into the new run, and that run sends it, once."""
    client = short_history_env.client
    # DEMO is on the 24x7 calendar: its escalate_2, 90 s past due, fires at once.
    item_id = await tenant.add_item(
        due_at=utcnow() - timedelta(minutes=10), item_type="DEMO", calendar="always"
    )
    mail_sink.reject(tenant.email("otto"), "451 4.3.0 try again later")
    on_queue = settings.model_copy(
        update={"task_queue": f"can-{uuid.uuid4()}", "smtp_port": mail_sink.port}
    )
    async with build_worker(client, on_queue, engine):
        handle = await client.start_workflow(
            EscalationWorkflow.run,
            EscalationInput(item_id=str(item_id), account_id=str(tenant.account_id)),
            id=workflow_id(str(item_id)),
            task_queue=on_queue.task_queue,
        )
        first_run = handle.result_run_id
        for _ in range(200):  # until the first attempt is on the record
            rows = await tenant.deliveries(item_id)
            if rows and rows[0].status == "pending":
                break
            await asyncio.sleep(0.05)
        for _ in range(40):  # nudges until the history is long enough
            await handle.signal(EscalationWorkflow.sync)
            if (await handle.describe()).run_id != first_run:
                break
            await asyncio.sleep(0.05)
        assert (await handle.describe()).run_id != first_run
        [row] = await tenant.deliveries(item_id)
        assert row.status == "pending"  # carried, not drained: still owed
        mail_sink.accept(tenant.email("otto"))
        [mail] = await mail_sink.wait_for(1, within=30)
        assert mail.rcpt_tos == (tenant.email("otto"),)
        for _ in range(100):
            [row] = await tenant.deliveries(item_id)
            if row.status == "sent":
                break
            await asyncio.sleep(0.05)
        assert row.status == "sent"
        assert row.attempts >= 2  # the 451, then the carried retry
        first = client.get_workflow_handle(handle.id, run_id=first_run)
        await save_history(first, "continued_as_new")
        await save_history(client.get_workflow_handle(handle.id), "resumed_after_continue_as_new")
        await handle.terminate("test finished")
