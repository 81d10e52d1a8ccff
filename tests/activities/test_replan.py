"""`replan_batch` against real Postgres: a batch retried after its commit (the worker died
before Temporal heard of it) moves nothing twice and counts nothing twice."""

from __future__ import annotations

from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.exceptions import ApplicationError

from activities.replan import ReplanActivities
from db import tenant_session
from domain import admin_policies, replan
from domain.clock import utcnow
from domain.demo import stable_id
from domain.models import PushEvent, ReplanJob
from tests.support.tenants import Tenant
from workflows.replan_types import ReplanBatch

BERLIN = ZoneInfo("Europe/Berlin")
NOON_TO_EIGHT = {str(day): [["12:00", "20:00"]] for day in range(5)}


async def test_a_batch_retried_after_its_commit_moves_and_counts_nothing_twice(
    tenant: Tenant, app_sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    day = (utcnow() + timedelta(days=14)).astimezone(BERLIN).date()
    day += timedelta(days=(2 - day.weekday()) % 7)
    due = datetime.combine(day, time(10), tzinfo=BERLIN)  # inside 9-17, not 12-20
    ids = sorted(await tenant.add_items([due] * 3))
    async with tenant_session(app_sessionmaker, tenant.account_id) as session:
        spec = admin_policies.CalendarSpec(
            name="Berlin office", tz="Europe/Berlin", hours=NOON_TO_EIGHT
        )
        calendar = stable_id(tenant.slug, "calendar:berlin")
        await admin_policies.save_calendar(session, tenant.account_id, spec, calendar)
        job = await replan.create_job(
            session, tenant.account_id, tenant.user("ada"), utcnow(), calendar_id=calendar
        )
    activities = ReplanActivities(app_sessionmaker)
    first = ReplanBatch(job_id=str(job.id), account_id=str(tenant.account_id), after=None, size=2)

    done = await activities.replan_batch(first)
    again = await activities.replan_batch(first)  # the same batch, retried after its commit

    assert done.moved == [str(i) for i in ids[:2]]
    assert (done.state, done.cursor, done.matched, done.replanned) == ("running", str(ids[1]), 2, 2)
    assert again.moved == []
    assert (again.state, again.cursor, again.matched, again.replanned) == (
        "running",
        str(ids[1]),
        2,
        2,
    )
    assert [(await tenant.item(i)).version for i in ids] == [2, 2, 1]
    for item_id in ids[:2]:
        assert [a for a, _ in await tenant.audit(item_id) if a == "replanned"] == ["replanned"]

    rest = ReplanBatch(
        job_id=str(job.id), account_id=str(tenant.account_id), after=again.cursor, size=2
    )
    last = await activities.replan_batch(rest)
    assert (last.state, last.moved, last.matched, last.replanned) == ("done", [str(ids[2])], 3, 3)
    retried = await activities.replan_batch(rest)
    assert (retried.state, retried.moved, retried.matched) == ("done", [], 3)
    async with tenant.owner() as session:
        row = await session.get(ReplanJob, job.id)
        kinds = list(
            await session.scalars(
                select(PushEvent.kind)
                .where(PushEvent.account_id == tenant.account_id)
                .order_by(PushEvent.id)
            )
        )
    assert row is not None
    assert (row.matched, row.replanned, row.rungs_moved) == (3, 3, 9)
    assert kinds == ["replan.progress", "replan.done"]


async def test_a_batch_of_another_accounts_job_is_rejected_for_good(
    tenant: Tenant, app_sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    other = await Tenant.create(tenant.owner)
    async with tenant_session(app_sessionmaker, other.account_id) as session:
        job = await replan.create_job(
            session, other.account_id, other.user("ada"), utcnow(), item_type="CAPA"
        )
    foreign = ReplanBatch(job_id=str(job.id), account_id=str(tenant.account_id), after=None, size=2)
    with pytest.raises(ApplicationError, match="not found") as rejected:
        await ReplanActivities(app_sessionmaker).replan_batch(foreign)
    assert rejected.value.non_retryable
