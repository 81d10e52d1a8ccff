"""Creation is authoritative: with Temporal unreachable the item is still created (workflow
pending), and the reconciler starts its workflow later."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import select, text, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleIntervalSpec,
    ScheduleSpec,
    WorkflowExecutionStatus,
    WorkflowHandle,
)
from temporalio.service import RPCError
from temporalio.testing import ActivityEnvironment, WorkflowEnvironment

from activities import reconcile as reconcile_module
from activities.reconcile import ReconcileActivities
from db import tenant_session
from domain import lifecycle
from domain.clock import SystemClock, utcnow
from domain.models import Item, PushEvent, UsedLink
from mailsink import free_port
from tests.api.conftest import Api
from tests.support.tenants import Tenant
from workflows.escalation import EscalationWorkflow
from workflows.schedules import RECONCILER_ID, ensure_reconciler
from workflows.starts import start_item
from workflows.types import Nudged, NudgePass, StateView, workflow_id


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

    handle = dev_env.client.get_workflow_handle(workflow_id(str(item_id)))
    first = await handle.describe()
    assert first.id == workflow_id(str(item_id))
    # No worker serves that queue, so the workflow never ran and nothing stamped it (its
    # first step does): a second pass starts it again, a no-op on the same run.
    await ActivityEnvironment().run(reconcile.start_missing_workflows)
    assert (await handle.describe()).run_id == first.run_id
    assert (await tenant.item(item_id)).workflow_started_at is None


async def test_the_reconciler_is_one_long_lived_workflow_started_once(
    dev_env: WorkflowEnvironment,
) -> None:
    """One `escalator-reconciler` run (a timer between rounds), not one workflow a minute
    from a Schedule; a Schedule left by an earlier version is deleted."""
    client, queue = dev_env.client, f"q-{uuid.uuid4()}"
    handle = client.get_workflow_handle(RECONCILER_ID)
    with contextlib.suppress(RPCError):  # a worker process in this session may have made it
        await handle.terminate("test")
    with contextlib.suppress(RPCError):
        await client.create_schedule(
            RECONCILER_ID,
            Schedule(
                action=ScheduleActionStartWorkflow("ReconcileWorkflow", id="old", task_queue=queue),
                spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=timedelta(minutes=1))]),
            ),
        )
    first = await ensure_reconciler(client, queue, 60)
    second = await ensure_reconciler(client, queue, 60)
    assert (first, second) == (True, False)
    described = await handle.describe()
    assert (described.status, described.task_queue) == (WorkflowExecutionStatus.RUNNING, queue)
    with pytest.raises(RPCError):
        await client.get_schedule_handle(RECONCILER_ID).describe()
    # Left running on a queue nobody serves, as a finished worker leaves it: later worker
    # processes in this session find it running and start none of their own.


async def test_a_lost_release_and_due_change_heal_at_the_next_reconcile(
    api: Api, tenant: Tenant, dev_env: WorkflowEnvironment
) -> None:
    """Postgres is the truth and signals are nudges: the release and the new due date are
    committed while their signals are lost (as with Temporal down); the workflow stays
    claimed until the reconciler sees its item's version ahead and nudges it."""
    created = await api.task(tenant)
    item_id = uuid.UUID(created.json()["id"])
    emil = api.headers(tenant, "emil")
    assert (await api.client.post(f"/v1/items/{item_id}/claim", headers=emil)).status_code == 200
    handle = dev_env.client.get_workflow_handle(workflow_id(str(item_id)))
    await until(lambda s: s.state == "claimed", handle)
    await until_applied(tenant, item_id)

    new_due = (utcnow() + timedelta(days=20)).replace(microsecond=0)
    async with tenant_session(api.app.state.sessionmaker, tenant.account_id) as session:
        now = utcnow()
        await lifecycle.transition(
            session, tenant.account_id, item_id, tenant.user("emil"), now, "release"
        )
        await lifecycle.change_due(
            session, tenant.account_id, item_id, tenant.user("ada"), now, new_due
        )
    await asyncio.sleep(1.0)
    assert (await handle.query(EscalationWorkflow.get_state)).state == "claimed"  # not healed

    reconcile = ReconcileActivities(
        dev_env.client, api.app.state.sessionmaker, api.settings.task_queue, Later()
    )
    nudged = await ActivityEnvironment().run(reconcile.nudge_lagging_workflows, NudgePass())
    assert nudged.nudged >= 1
    state = await until(lambda s: s.state == "open" and s.due_at == new_due, handle)
    assert state.claimed_by is None
    assert any(r.status == "pending" for r in state.rungs)  # armed to escalate again
    await until_applied(tenant, item_id)
    # A duplicate nudge is harmless: nothing lags, nothing changes.
    assert item_id not in await lagging(tenant)
    await handle.signal(EscalationWorkflow.sync)
    again = await until(lambda s: s.state == "open", handle)
    assert again.rungs == state.rungs


async def until(
    ready: Callable[[StateView], bool], handle: WorkflowHandle[Any, Any], within: float = 20
) -> StateView:
    deadline = time.monotonic() + within
    while not ready(state := await handle.query(EscalationWorkflow.get_state)):
        assert time.monotonic() < deadline, f"never got there: {state}"
        await asyncio.sleep(0.1)
    return state


async def until_applied(tenant: Tenant, item_id: uuid.UUID, within: float = 20) -> None:
    deadline = time.monotonic() + within
    while (item := await tenant.item(item_id)).applied_version != item.version:
        assert time.monotonic() < deadline, (item.version, item.applied_version)
        await asyncio.sleep(0.1)


async def lagging(tenant: Tenant) -> set[uuid.UUID]:
    async with tenant.owner() as session:
        rows = await session.execute(
            text(
                "SELECT id FROM escalator_items_to_nudge(:before, 'epoch', :nil, 100000) "
                "WHERE account_id = :account"
            ),
            {
                "before": utcnow() + timedelta(minutes=5),
                "nil": uuid.UUID(int=0),
                "account": tenant.account_id,
            },
        )
        return {item_id for (item_id,) in rows}


async def stuck(tenant: Tenant, count: int, state: str) -> list[uuid.UUID]:
    """`count` items that lag with no workflow in Temporal (an ended or lost one), older
    than anything else: what used to fill the nudge query's 500 rows for ever."""
    long_ago = utcnow() - timedelta(days=30)
    ids = await tenant.add_items([utcnow() + timedelta(days=5)] * count)
    async with tenant.owner() as session, session.begin():
        await session.execute(
            update(Item)
            .where(Item.id.in_(ids))
            .values(
                state=state,
                version=Item.applied_version + 1,
                workflow_started_at=long_ago,
                updated_at=long_ago,
            )
        )
    return ids


async def test_no_lagging_item_waits_behind_stuck_ones(
    api: Api, tenant: Tenant, dev_env: WorkflowEnvironment, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 23: the nudge query's first 500 rows were items whose workflow had ended, so a
    lagging item behind them was never nudged. Now the walk goes on from a cursor, pass
    after pass, and settles what has no workflow: an ended item counts as applied, an
    active one is started afresh by the next start step."""
    monkeypatch.setattr(reconcile_module, "BATCH", 5)  # pages of 5: the walk shows
    # Short passes: the walk never reads far into other tests' rows (they lag too, here).
    monkeypatch.setattr(reconcile_module, "PASS_BUDGET", timedelta(seconds=1))
    ended = await stuck(tenant, 6, "resolved")
    lost = await stuck(tenant, 1, "open")
    deaf = await stuck(tenant, 12, "open")  # their workflows take the signal, never apply it
    for deaf_id in deaf:
        assert await start_item(dev_env.client, "nobody", deaf_id, tenant.account_id, "deaf")
    created = await api.task(tenant)
    item_id = uuid.UUID(created.json()["id"])
    await until_applied(tenant, item_id)
    async with tenant_session(api.app.state.sessionmaker, tenant.account_id) as session:
        await lifecycle.change_due(  # its signal lost: only the reconciler can heal it
            session,
            tenant.account_id,
            item_id,
            tenant.user("ada"),
            utcnow(),
            utcnow() + timedelta(days=9),
        )
    async with tenant.owner() as session, session.begin():  # right behind the stuck ones
        await session.execute(
            update(Item).where(Item.id == item_id).values(updated_at=utcnow() - timedelta(days=29))
        )
    reconcile = ReconcileActivities(
        dev_env.client, api.app.state.sessionmaker, api.settings.task_queue, Later()
    )
    env, after = ActivityEnvironment(), None
    passes: list[Nudged] = []
    while (item := await tenant.item(item_id)).applied_version < item.version:
        assert len(passes) < 10, passes
        done = await env.run(reconcile.nudge_lagging_workflows, NudgePass(after=after))
        passes.append(done)
        after = done.after
        with contextlib.suppress(AssertionError):
            await until_applied(tenant, item_id, within=2)  # nudged, and healed
    assert sum(p.gone for p in passes) >= 7
    assert sum(p.nudged for p in passes) >= 13  # each deaf one, and the healed one
    assert not (set(ended) | set(lost) | {item_id}) & await lagging(tenant)
    assert set(deaf) <= await lagging(tenant)  # still lagging: the next walk nudges again
    for item in [await tenant.item(i) for i in ended]:
        assert item.applied_version == item.version  # nothing left to tell a workflow
    gone = await tenant.item(lost[0])
    assert gone.workflow_started_at is None  # the start step starts it afresh


async def test_failed_nudges_are_counted_and_tried_again(
    tenant: Tenant,
    app_sessionmaker: async_sessionmaker[AsyncSession],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Temporal unreachable: each signal fails, is counted, and the walk still ends, so the
    same items are tried on the next one."""
    monkeypatch.setattr(reconcile_module, "PASS_BUDGET", timedelta(seconds=1))
    [item_id] = await stuck(tenant, 1, "open")
    dead = await Client.connect(f"127.0.0.1:{free_port()}", lazy=True)
    reconcile = ReconcileActivities(dead, app_sessionmaker, "nobody", Later())
    before = REGISTRY.get_sample_value("escalator_reconciler_nudges_failed_total") or 0.0
    done = await ActivityEnvironment().run(reconcile.nudge_lagging_workflows, NudgePass())
    assert done.failed >= 1
    assert done.gone == 0
    after = REGISTRY.get_sample_value("escalator_reconciler_nudges_failed_total") or 0.0
    assert after >= before + 1
    assert item_id in await lagging(tenant)  # still there for the next walk


async def test_pruning_keeps_only_what_can_still_be_needed(
    tenant: Tenant,
    app_sessionmaker: async_sessionmaker[AsyncSession],
    dev_env: WorkflowEnvironment,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Issue 23: push events past the retention window and used links past their link's
    life are deleted, in batches (here of 2), and nothing younger."""
    monkeypatch.setattr(reconcile_module, "PRUNE_BATCH", 2)
    now = utcnow()
    ago = {"old": now - timedelta(days=8), "new": now - timedelta(days=6)}
    async with tenant.owner() as session, session.begin():
        for n in range(5):
            for age, at in ago.items():
                session.add(
                    PushEvent(
                        account_id=tenant.account_id,
                        kind="rung.fired",
                        payload={"n": n},
                        dedup_key=f"{tenant.slug}:prune:{age}:{n}",
                        created_at=at,
                    )
                )
        links = {  # (purpose, used how long ago): kept?
            ("sign_in", timedelta(minutes=20)): False,
            ("sign_in", timedelta(minutes=5)): True,
            ("address", timedelta(hours=25)): False,
            ("address", timedelta(hours=23)): True,
            ("claim", timedelta(days=8)): False,
            ("claim", timedelta(days=6)): True,
            ("stream_ticket", timedelta(minutes=2)): False,
            ("stream_ticket", timedelta(seconds=10)): True,
        }
        jtis = {key: uuid.uuid4() for key in links}
        for (purpose, used_ago), jti in jtis.items():
            session.add(
                UsedLink(
                    jti=jti,
                    account_id=tenant.account_id,
                    purpose=purpose,
                    user_id=tenant.user("erin"),
                    used_at=now - used_ago,
                )
            )
    reconcile = ReconcileActivities(dev_env.client, app_sessionmaker, "nobody", SystemClock())
    pruned = await ActivityEnvironment().run(reconcile.prune_tables)

    assert pruned.push_events >= 5
    assert pruned.used_links >= 4
    async with tenant.owner() as session:
        kept = await session.scalars(
            select(PushEvent.dedup_key).where(PushEvent.account_id == tenant.account_id)
        )
        assert sorted(kept) == sorted(f"{tenant.slug}:prune:new:{n}" for n in range(5))
        left = set(
            await session.scalars(
                select(UsedLink.jti).where(UsedLink.account_id == tenant.account_id)
            )
        )
    assert {key for key, jti in jtis.items() if jti in left} == {
        k for k, keep in links.items() if keep
    }
