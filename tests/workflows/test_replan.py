"""ReplanWorkflow on the time-skipping server with the real worker and Postgres: a bulk
re-plan runs batch after batch, each committed with its counts and pushed, and the workflow
of every item it moved follows; a batch that cannot go on fails the job on the record."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import workflow
from temporalio.client import WorkflowHandle

from db import tenant_session
from domain import admin_policies, replan
from domain.demo import stable_id
from domain.models import BusinessCalendarVersion, Item, PushEvent, ReplanJob, SlaPolicy
from tests.support.tenants import Tenant
from tests.workflows.conftest import Runner, save_history
from workflows.replan import ReplanWorkflow
from workflows.replan_types import (
    REPLAN_WORKFLOW,
    ReplanInput,
    ReplanProgress,
    replan_workflow_id,
)

BERLIN = ZoneInfo("Europe/Berlin")
NOON_TO_EIGHT = {str(day): [["12:00", "20:00"]] for day in range(5)}


def wednesday_ten(now: datetime) -> datetime:
    """10:00 Berlin on a Wednesday two weeks or so after `now`: inside 9-17, outside 12-20,
    so every CAPA rung (whole business days around it) moves when the hours become 12-20."""
    day = (now + timedelta(days=14)).astimezone(BERLIN).date()
    day += timedelta(days=(2 - day.weekday()) % 7)
    return datetime.combine(day, time(10), tzinfo=BERLIN)


async def start_job(
    runner: Runner,
    app: async_sessionmaker[AsyncSession],
    tenant: Tenant,
    batch: int,
    batches_per_run: int = 20,
) -> tuple[uuid.UUID, WorkflowHandle[ReplanWorkflow, ReplanProgress]]:
    """A job for every active CAPA item, as the API writes it, and its workflow."""
    async with tenant_session(app, tenant.account_id) as session:
        job = await replan.create_job(
            session, tenant.account_id, tenant.user("ada"), await runner.now(), item_type="CAPA"
        )
    handle = await runner.env.client.start_workflow(
        ReplanWorkflow.run,
        ReplanInput(
            job_id=str(job.id),
            account_id=str(tenant.account_id),
            batch=batch,
            batches_per_run=batches_per_run,
        ),
        id=replan_workflow_id(str(job.id)),
        task_queue=runner.task_queue,
    )
    return job.id, handle


async def finished(tenant: Tenant, job_id: uuid.UUID, within: float = 20.0) -> ReplanJob:
    """Poll the job's row (not the workflow's result: waiting on that lets the time-skipping
    server jump to the item workflows' timers)."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        async with tenant.owner() as session:
            job = await session.get(ReplanJob, job_id)
        assert job is not None
        if job.state != "running":
            return job
        assert asyncio.get_running_loop().time() < deadline, "the job never finished"
        await asyncio.sleep(0.1)


async def pushed(tenant: Tenant) -> list[tuple[str, int]]:
    async with tenant.owner() as session:
        rows = await session.execute(
            select(PushEvent.kind, PushEvent.payload)
            .where(PushEvent.account_id == tenant.account_id, PushEvent.kind.like("replan.%"))
            .order_by(PushEvent.id)
        )
        return [(kind, payload["matched"]) for kind, payload in rows]


async def calendar_version(tenant: Tenant, item_id: uuid.UUID) -> int:
    async with tenant.owner() as session:
        version = await session.scalar(
            select(BusinessCalendarVersion.version)
            .join(Item, Item.calendar_version_id == BusinessCalendarVersion.id)
            .where(Item.id == item_id)
        )
    assert version is not None
    return version


def test_the_name_the_api_starts_is_the_workflows() -> None:
    defn = workflow._Definition.from_class(ReplanWorkflow)
    assert defn is not None
    assert defn.name == REPLAN_WORKFLOW


async def test_a_bulk_replan_runs_in_batches_and_every_moved_workflow_follows(
    runner: Runner, tenant: Tenant, app_sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    due = wednesday_ten(await runner.now())
    ids = [await tenant.add_item(due_at=due) for _ in range(5)]
    other = await tenant.add_item(due_at=due, item_type="DOC_ACK")  # not selected
    handles = [await runner.start(tenant, item_id) for item_id in ids[:2]]  # 3 have none
    for item_handle in handles:
        rungs = (await runner.state(item_handle)).rungs
        assert {r.fire_at.astimezone(BERLIN).hour for r in rungs} == {10}
    berlin = stable_id(tenant.slug, "calendar:berlin")
    async with tenant_session(app_sessionmaker, tenant.account_id) as session:
        spec = admin_policies.CalendarSpec(
            name="Berlin office", tz="Europe/Berlin", hours=NOON_TO_EIGHT
        )
        await admin_policies.save_calendar(session, tenant.account_id, spec, berlin)

    # Batches of two, two batches a run: the last batch runs after a continue-as-new.
    job_id, job_handle = await start_job(
        runner, app_sessionmaker, tenant, batch=2, batches_per_run=2
    )
    job = await finished(tenant, job_id)
    assert (job.state, job.matched, job.replanned, job.error) == ("done", 5, 5, None)
    assert job.rungs_moved == 15  # three rungs of each item, 10:00 to 12:00
    assert job.cursor == max(ids)
    # Two full batches and the last, each committed with its counts and pushed.
    assert await pushed(tenant) == [
        ("replan.progress", 2),
        ("replan.progress", 4),
        ("replan.done", 5),
    ]
    for item_id in ids:
        assert await calendar_version(tenant, item_id) == 2
        assert [a for a, _ in await tenant.audit(item_id) if a == "replanned"] == ["replanned"]
    assert await calendar_version(tenant, other) == 1
    # The items' workflows were nudged after their batch: their timers follow.
    for item_handle in handles:
        await runner.state_when(
            item_handle, lambda s: {r.fire_at.astimezone(BERLIN).hour for r in s.rungs} == {12}
        )
    result = await job_handle.result()
    assert (result.state, result.replanned, result.moved) == ("done", 5, [str(max(ids))])
    first_run = runner.env.client.get_workflow_handle(
        job_handle.id, run_id=job_handle.first_execution_run_id
    )
    history = await first_run.fetch_history()
    assert history.events[-1].workflow_execution_continued_as_new_event_attributes.input
    await save_history(first_run, "replanned_in_batches")
    await save_history(job_handle, "replan_continued")  # the latest run: the last batch


async def test_a_batch_that_cannot_go_on_fails_the_job_on_the_record(
    runner: Runner, tenant: Tenant, app_sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    """A policy that cannot be planned with is a rejection, not something to retry for
    ever: the job says `failed` and why, and what earlier batches moved stays moved."""
    now = await runner.now()
    ids = sorted([await tenant.add_item(due_at=wednesday_ten(now)) for _ in range(3)])
    async with tenant.owner() as session, session.begin():
        session.add(
            SlaPolicy(
                account_id=tenant.account_id,
                item_type="CAPA",
                version=2,
                calendar_id=stable_id(tenant.slug, "calendar:berlin"),
                rungs={"bogus": None},
            )
        )
    job_id, handle = await start_job(runner, app_sessionmaker, tenant, batch=2)
    job = await finished(tenant, job_id)
    assert job.state == "failed"
    assert "unknown rungs ['bogus']" in (job.error or "")
    assert (job.matched, job.replanned, job.cursor) == (0, 0, None)
    assert await pushed(tenant) == [("replan.failed", 0)]
    assert [(await tenant.item(i)).version for i in ids] == [1, 1, 1]
    await save_history(handle, "replan_failed")
