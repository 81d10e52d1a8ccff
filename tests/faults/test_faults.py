"""The fault suite (`make faults`): real processes broken on purpose while rungs fire.

One embedded Postgres, one `temporal server start-dev` on a persistent SQLite file, one SMTP
sink, and the real `worker.py` process, killed and restarted as a scenario says. Each
scenario prints what a user would ask: how many notifications were lost, how many doubled,
how late the latest was, and how long recovery took. Timings are printed, never asserted;
what is asserted is the guarantee (nothing lost, nothing doubled beyond what the scenario
allows, nothing after a claim).

`FAULTS_ITEMS` (default 100) sets how many rungs each scenario fires.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from datetime import timedelta

import pytest
from sqlalchemy import select

from config import Settings
from db import create_engine, create_sessionmaker, tenant_session
from domain import lifecycle
from domain.clock import utcnow
from domain.models import PushEvent
from mailsink import MailSink
from tests.faults.conftest import CLAIM_SPREAD, ITEMS, Stack, in_flight, outcome, until_mails

pytestmark = pytest.mark.faults


async def test_worker_sigkill_mid_burst(stack: Stack) -> None:
    tenant = await stack.tenant()
    due = utcnow() + timedelta(seconds=10)
    items = await stack.items_due(tenant, ITEMS, due)
    await until_mails(stack, ITEMS // 3)
    stack.kill_worker()
    sending = await in_flight(stack, tenant)
    restarted = time.time()
    stack.start_worker()
    result = await outcome(stack.sink, "worker SIGKILL mid-burst", items, due, restarted)
    print(f"[faults]   sends in flight at the kill: {sending}")  # noqa: T201
    assert result.lost == 0
    assert result.duplicates <= sending


async def test_postgres_restart_mid_send(stack: Stack) -> None:
    tenant = await stack.tenant()
    stack.sink.delay = 0.05  # sends take a moment, so some are inside SMTP at the stop
    due = utcnow() + timedelta(seconds=10)
    items = await stack.items_due(tenant, ITEMS, due)
    await until_mails(stack, ITEMS // 4)
    stack.postgres.stop()
    await asyncio.sleep(10)
    stack.postgres.start()
    back = time.time()
    result = await outcome(stack.sink, "Postgres stopped 10 s mid-send", items, due, back)
    assert result.lost == 0
    assert result.duplicates == 0


async def test_smtp_down(stack: Stack) -> None:
    tenant = await stack.tenant()
    down = float(os.environ.get("FAULTS_SMTP_DOWN", "60"))
    due = utcnow() + timedelta(seconds=8)
    items = await stack.items_due(tenant, ITEMS, due)
    port = stack.sink.port
    stack.sink.stop()
    await asyncio.sleep(max((due - utcnow()).total_seconds(), 0) + down)
    stack.sink = MailSink(port=port).start()
    back = time.time()
    result = await outcome(stack.sink, f"SMTP down {down:.0f} s", items, due, back, within=400)
    assert result.lost == 0
    assert result.duplicates == 0


async def test_a_claim_at_the_instant_of_firing(stack: Stack) -> None:
    tenant = await stack.tenant()
    due = utcnow() + timedelta(seconds=10)
    items = await stack.items_due(tenant, ITEMS, due)
    engine = create_engine(Settings(database_url=stack.url))
    sessionmaker = create_sessionmaker(engine)
    claimed_at: dict[str, float] = {}

    async def claim(index: int, item_id: uuid.UUID) -> None:
        # Spread from just before the firing instant to past the end of the burst (its
        # rungs go out over several seconds): some claims win, some rungs win, and some
        # meet inside one send.
        at = due + timedelta(seconds=CLAIM_SPREAD * index / len(items) - 1)
        await asyncio.sleep(max((at - utcnow()).total_seconds(), 0))
        await stack.claim(sessionmaker, tenant, item_id, committed=claimed_at)

    await asyncio.gather(*(claim(n, i) for n, i in enumerate(items)))
    await asyncio.sleep(15)
    late_mails = [
        m
        for m in stack.sink.mails
        if m.message["X-Escalator-Item"] in claimed_at
        and m.received_wall > claimed_at[m.message["X-Escalator-Item"]]
    ]
    async with tenant.owner() as session:
        events = list(
            await session.scalars(
                select(PushEvent)
                .where(PushEvent.account_id == tenant.account_id)
                .order_by(PushEvent.id)
            )
        )
    claim_event = {e.item_id: e.id for e in events if e.kind == "item.claimed"}
    late_pushes = [
        e for e in events if e.kind == "rung.fired" and e.id > claim_event.get(e.item_id, 1 << 62)
    ]
    before = sum(1 for m in stack.sink.mails if m.message["X-Escalator-Item"] in claimed_at)
    print(  # noqa: T201
        f"\n[faults] claim at the instant of firing: {len(items)} claims, "
        f"{before} mails went out before their claim committed, "
        f"{len(late_mails)} mails and {len(late_pushes)} pushes after"
    )
    await engine.dispose()
    assert late_mails == []
    assert late_pushes == []


async def test_temporal_down_during_release_heals(stack: Stack) -> None:
    """The releases commit while Temporal is down, so their signals are lost; after the
    restart (on the same persistent database) the reconciler's nudge re-opens them, and
    their remind fires."""
    tenant = await stack.tenant()
    count = max(ITEMS // 5, 5)
    due = utcnow() + timedelta(seconds=45)
    items = await stack.items_due(tenant, count, due)
    engine = create_engine(Settings(database_url=stack.url))
    sessionmaker = create_sessionmaker(engine)
    for item_id in items:
        await stack.claim(sessionmaker, tenant, item_id)
    await asyncio.sleep(2)
    stack.temporal.stop()
    for item_id in items:  # what the API commits; its signal would fail now
        async with tenant_session(sessionmaker, tenant.account_id) as session:
            await lifecycle.transition(
                session, tenant.account_id, item_id, tenant.user("emil"), utcnow(), "release"
            )
    await asyncio.sleep(5)
    stack.temporal.start()
    stack.client = await stack.temporal.client()
    back = time.time()
    result = await outcome(stack.sink, "Temporal down during release", items, due, back)
    await engine.dispose()
    assert result.lost == 0
    assert result.duplicates == 0


async def test_temporal_restart_mid_burst(stack: Stack) -> None:
    """The dev server is killed while rungs fire and started again on its database: the
    worker reconnects, the timers and activities carry on, and sends already recorded as
    `sent` are not repeated."""
    tenant = await stack.tenant()
    due = utcnow() + timedelta(seconds=10)
    items = await stack.items_due(tenant, ITEMS, due)
    await until_mails(stack, ITEMS // 3)
    stack.temporal.stop()
    await asyncio.sleep(5)
    stack.temporal.start()
    stack.client = await stack.temporal.client()
    back = time.time()
    result = await outcome(stack.sink, "Temporal restarted mid-burst", items, due, back)
    assert result.lost == 0
    assert result.duplicates == 0
