"""The per-process hub: slow subscribers are cut off without holding up the others, and a
dropped LISTEN connection is re-established without losing what was published meanwhile."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.events import APPLICATION_NAME, Event, Hub, Subscriber
from config import Settings
from db import tenant_session
from domain.clock import utcnow
from domain.models import Item
from domain.push import publish
from tests.support.tenants import Tenant


@pytest.fixture
async def hub(settings: Settings) -> AsyncIterator[Hub]:
    hub = Hub(settings.async_database_url, buffer=3)
    running = asyncio.create_task(hub.run())
    await asyncio.wait_for(hub.connected.wait(), 10)
    yield hub
    running.cancel()


async def emit(
    sessionmaker: async_sessionmaker[AsyncSession], tenant: Tenant, item_id: uuid.UUID, n: int
) -> None:
    async with tenant_session(sessionmaker, tenant.account_id) as session:
        item = await session.get(Item, item_id)
        await publish(
            session,
            account_id=tenant.account_id,
            item=item,
            kind="rung.fired",
            dedup_key=f"{item_id}:hub:{n}:{uuid.uuid4()}",
            data={"n": n},
        )


async def drain(subscriber: Subscriber, count: int) -> list[Event]:
    return [await asyncio.wait_for(subscriber.queue.get(), 10) for _ in range(count)]


async def test_a_slow_subscriber_is_cut_off_and_the_others_get_everything(
    hub: Hub, tenant: Tenant, app_sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    item_id = await tenant.add_item(due_at=utcnow() + timedelta(days=3))
    slow, fast = hub.subscribe(tenant.account_id), hub.subscribe(tenant.account_id)
    received: list[Event] = []

    async def keep_up() -> None:
        while len(received) < 10:
            received.append(await fast.queue.get())

    reader = asyncio.create_task(keep_up())
    for n in range(10):
        await emit(app_sessionmaker, tenant, item_id, n)
    await asyncio.wait_for(reader, 10)
    assert [e.payload["n"] for e in received] == list(range(10))
    assert slow.overflowed.is_set()  # its buffer of 3 overflowed: the stream ends it


async def test_the_hub_reconnects_and_delivers_what_was_published_while_it_was_down(
    hub: Hub,
    tenant: Tenant,
    app_sessionmaker: async_sessionmaker[AsyncSession],
    owner_sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    item_id = await tenant.add_item(due_at=utcnow() + timedelta(days=3))
    subscriber = hub.subscribe(tenant.account_id)
    async with owner_sessionmaker() as session, session.begin():
        await session.execute(
            text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = :name"
            ),
            {"name": APPLICATION_NAME},
        )
    for n in range(3):  # published while the hub's connection is gone
        await emit(app_sessionmaker, tenant, item_id, n)
    got = await drain(subscriber, 3)
    assert [e.payload["n"] for e in got] == [0, 1, 2]


async def test_accounts_never_wait_for_each_other_and_nothing_is_lost(
    hub: Hub,
    tenant: Tenant,
    app_sessionmaker: async_sessionmaker[AsyncSession],
    owner_sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    """Account A publishes in a transaction that stays open; account B publishes after it,
    takes no lock of A's, commits and is delivered at once. A commits last, with the
    smaller id, which the hub has already skipped over: it is delivered all the same."""
    other = await Tenant.create(owner_sessionmaker)
    a_item = await tenant.add_item(due_at=utcnow() + timedelta(days=3))
    b_item = await other.add_item(due_at=utcnow() + timedelta(days=3))
    a_sees, b_sees = hub.subscribe(tenant.account_id), hub.subscribe(other.account_id)
    async with tenant_session(app_sessionmaker, tenant.account_id) as session:
        await publish(
            session,
            account_id=tenant.account_id,
            item=await session.get(Item, a_item),
            kind="rung.fired",
            dedup_key=f"{a_item}:hub:slow",
            data={"n": 1},
        )
        await asyncio.wait_for(emit(app_sessionmaker, other, b_item, 2), 5)  # no wait for A
        [b_event] = await drain(b_sees, 1)
        assert a_sees.queue.empty()
    [a_event] = await drain(a_sees, 1)
    assert a_event.id < b_event.id
    assert (a_event.payload["n"], b_event.payload["n"]) == (1, 2)
