"""The live stream across processes: two API servers (each with its own LISTEN connection)
share one Postgres; worker activities publish; nothing is lost or repeated on resume."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.routers import events as events_router
from api.tokens import Principal, mint
from config import Settings
from db import get_in_account, tenant_session
from domain import push
from domain.clock import utcnow
from domain.models import Item
from mailsink import free_port
from tests.support.live import Sse, serve, sse_events
from tests.support.tenants import Tenant


@pytest.fixture(scope="module")
def two_servers(settings: Settings) -> Iterator[tuple[str, str]]:
    quiet = settings.model_copy(
        update={"temporal_address": f"127.0.0.1:{free_port()}", "sse_heartbeat_seconds": 1.0}
    )
    with serve(quiet) as first, serve(quiet) as second:
        yield first, second


def token(settings: Settings, tenant: Tenant, who: str, role: str) -> str:
    principal = Principal(user_id=tenant.user(who), account_id=tenant.account_id, role=role)
    return mint(principal, settings.jwt_secret, ttl=timedelta(minutes=10), now=utcnow())


@contextlib.asynccontextmanager
async def subscribe(
    base: str, bearer: str, last_event_id: int | None = None
) -> AsyncIterator[AsyncIterator[Sse]]:
    headers = {"Authorization": f"Bearer {bearer}"}
    if last_event_id is not None:
        headers["Last-Event-ID"] = str(last_event_id)
    async with (
        httpx.AsyncClient(base_url=base, timeout=30) as client,
        client.stream("GET", "/v1/events/stream", headers=headers) as response,
    ):
        assert response.status_code == 200, await response.aread()
        events = sse_events(response)
        ready = await anext(events)
        assert ready.event == "ready"
        yield events


async def publish(
    app_sessionmaker: async_sessionmaker[AsyncSession], tenant: Tenant, item_id: uuid.UUID, n: int
) -> None:
    """What a rung's fire writes last: an outbox row and its NOTIFY, committed."""
    async with tenant_session(app_sessionmaker, tenant.account_id) as session:
        item = await get_in_account(session, Item, item_id, tenant.account_id)
        await push.publish(
            session,
            account_id=tenant.account_id,
            item=item,
            kind="rung.fired",
            dedup_key=f"{item_id}:test:{n}",
            data={"n": n, "tier": 1},
        )


async def seen_one(
    base: str,
    bearer: str,
    app_sessionmaker: async_sessionmaker[AsyncSession],
    tenant: Tenant,
    item_id: uuid.UUID,
) -> Sse:
    """Connect, see one event (number 0) arrive, and go away: the resume point."""
    async with subscribe(base, bearer) as events:
        await publish(app_sessionmaker, tenant, item_id, 0)
        [seen] = await take(events, 1)
    return seen


async def take(events: AsyncIterator[Sse], count: int) -> list[Sse]:
    async def gather() -> list[Sse]:
        return [await anext(events) for _ in range(count)]

    return await asyncio.wait_for(gather(), timeout=20)


async def test_an_event_published_by_an_activity_reaches_subscribers_of_both_servers(
    two_servers: tuple[str, str],
    settings: Settings,
    tenant: Tenant,
    app_sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    item_id = await tenant.add_item(due_at=utcnow() + timedelta(days=3))
    bearer = token(settings, tenant, "emil", "engineer")
    first, second = two_servers
    async with subscribe(first, bearer) as one, subscribe(second, bearer) as two:
        await publish(app_sessionmaker, tenant, item_id, 1)
        [a], [b] = await take(one, 1), await take(two, 1)
    assert (a.event, a.id) == (b.event, b.id) == ("rung.fired", a.id)
    assert '"n": 1' in a.data
    assert str(item_id) in a.data


async def test_a_subscriber_that_reconnects_gets_all_it_missed_in_order_once(
    two_servers: tuple[str, str],
    settings: Settings,
    tenant: Tenant,
    app_sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    item_id = await tenant.add_item(due_at=utcnow() + timedelta(days=3))
    bearer = token(settings, tenant, "emil", "engineer")
    first, second = two_servers
    seen = await seen_one(first, bearer, app_sessionmaker, tenant, item_id)
    # The subscriber is gone; 100 events happen without it.
    for n in range(1, 101):
        await publish(app_sessionmaker, tenant, item_id, n)
    async with subscribe(second, bearer, last_event_id=int(seen.id or 0)) as events:
        await publish(app_sessionmaker, tenant, item_id, 101)  # and one live, after the replay
        got = await take(events, 101)
    numbers = [json.loads(e.data)["n"] for e in got]
    assert numbers == list(range(1, 102))
    ids = [int(e.id or 0) for e in got]
    assert ids == sorted(set(ids))


async def an_item_each(tenant: Tenant) -> tuple[Tenant, uuid.UUID, uuid.UUID]:
    """Another account, an item of theirs and an item of `tenant`'s."""
    other = await Tenant.create(tenant.owner)
    theirs = await other.add_item(due_at=utcnow() + timedelta(days=3))
    return other, theirs, await tenant.add_item(due_at=utcnow() + timedelta(days=3))


async def test_viewers_are_refused_and_accounts_never_see_each_other(
    two_servers: tuple[str, str],
    settings: Settings,
    tenant: Tenant,
    app_sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    first, _ = two_servers
    async with httpx.AsyncClient(base_url=first) as client:
        viewer = {"Authorization": f"Bearer {token(settings, tenant, 'vera', 'viewer')}"}
        refused = await client.get("/v1/events/stream", headers=viewer)
        assert refused.status_code == 403
        anonymous = await client.get("/v1/events/stream")
        assert anonymous.status_code == 401
    other, theirs, mine = await an_item_each(tenant)
    async with subscribe(first, token(settings, tenant, "emil", "engineer")) as events:
        await publish(app_sessionmaker, other, theirs, 1)
        await publish(app_sessionmaker, tenant, mine, 2)
        [only] = await take(events, 1)
    assert str(mine) in only.data
    assert str(theirs) not in only.data


async def test_a_replay_from_zero_holds_none_of_another_accounts_events(
    two_servers: tuple[str, str],
    settings: Settings,
    tenant: Tenant,
    app_sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    first, _ = two_servers
    other, theirs, mine = await an_item_each(tenant)
    await publish(app_sessionmaker, other, theirs, 1)
    await publish(app_sessionmaker, tenant, mine, 2)  # after theirs: the replay passes it
    async with subscribe(first, token(settings, tenant, "emil", "engineer"), 0) as events:
        replayed: list[Sse] = []
        while str(mine) not in (replayed[-1].data if replayed else ""):
            replayed += await take(events, 1)
    assert all(str(other.account_id) not in e.data for e in replayed)
    assert all(str(theirs) not in e.data for e in replayed)


async def test_the_replay_query_filters_by_account_even_where_rls_does_not_apply(
    tenant: Tenant, app_sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    """The second wall on its own: run as the owner, whom row-level security skips."""
    other = await Tenant.create(tenant.owner)
    for n, who in enumerate((other, tenant)):
        await publish(app_sessionmaker, who, await who.add_item(due_at=utcnow()), n)
    async with tenant.owner() as session:
        rows = list(
            await session.scalars(
                push.replay_query(tenant.account_id, 0, utcnow() - timedelta(days=1))
            )
        )
    assert rows
    assert {row.account_id for row in rows} == {tenant.account_id}


async def test_a_stream_ticket_works_only_for_the_stream(
    two_servers: tuple[str, str], settings: Settings, tenant: Tenant
) -> None:
    first, _ = two_servers
    async with httpx.AsyncClient(base_url=first, timeout=10) as client:
        bearer = {"Authorization": f"Bearer {token(settings, tenant, 'emil', 'engineer')}"}
        ticket = (await client.post("/v1/events/ticket", headers=bearer)).json()["ticket"]
        as_bearer = await client.get("/v1/queue", headers={"Authorization": f"Bearer {ticket}"})
        assert as_bearer.status_code == 401
        async with client.stream("GET", f"/v1/events/stream?ticket={ticket}") as response:
            assert response.status_code == 200
            first_event = await anext(sse_events(response))
            assert first_event.event == "ready"
        # Single use: the same ticket again (copied from a log, a proxy, a history) is refused.
        again = await client.get(f"/v1/events/stream?ticket={ticket}", timeout=5)
        assert again.status_code == 401
        assert "used already" in again.json()["error"]["message"]


async def test_expired_tickets_rows_are_pruned_when_the_next_is_spent(
    two_servers: tuple[str, str], settings: Settings, tenant: Tenant
) -> None:
    first, _ = two_servers
    stale = uuid.uuid4()
    async with tenant.owner() as session, session.begin():
        await session.execute(
            text(
                "INSERT INTO used_link (jti, account_id, purpose, user_id, used_at) "
                "VALUES (:j, :a, 'stream_ticket', :u, now() - interval '2 minutes')"
            ),
            {"j": stale, "a": tenant.account_id, "u": tenant.user("emil")},
        )
    async with httpx.AsyncClient(base_url=first, timeout=10) as client:
        bearer = {"Authorization": f"Bearer {token(settings, tenant, 'emil', 'engineer')}"}
        ticket = (await client.post("/v1/events/ticket", headers=bearer)).json()["ticket"]
        async with client.stream("GET", f"/v1/events/stream?ticket={ticket}") as response:
            assert response.status_code == 200
    async with tenant.owner() as session:
        kept = await session.scalar(
            text(
                "SELECT count(*) FROM used_link WHERE account_id = :a AND purpose = 'stream_ticket'"
            ),
            {"a": tenant.account_id},
        )
        gone = await session.scalar(
            text("SELECT count(*) FROM used_link WHERE jti = :j"), {"j": stale}
        )
    assert (kept, gone) == (1, 0)  # the new ticket's row stays; the expired one went


async def test_resuming_while_events_keep_coming_gives_each_event_once_in_order(
    two_servers: tuple[str, str],
    settings: Settings,
    tenant: Tenant,
    app_sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    """The replay and the live feed overlap while publishers keep publishing: the stream
    must stitch them with no gap and no repeat."""
    item_id = await tenant.add_item(due_at=utcnow() + timedelta(days=3))
    bearer = token(settings, tenant, "emil", "engineer")
    first, _ = two_servers
    start = await seen_one(first, bearer, app_sessionmaker, tenant, item_id)
    for n in range(1, 31):
        await publish(app_sessionmaker, tenant, item_id, n)

    async def keep_publishing() -> None:
        for n in range(31, 81):
            await publish(app_sessionmaker, tenant, item_id, n)

    publisher = asyncio.create_task(keep_publishing())
    async with subscribe(first, bearer, last_event_id=int(start.id or 0)) as events:
        got = await take(events, 80)
    await publisher
    numbers = [json.loads(e.data)["n"] for e in got]
    assert numbers == list(range(1, 81))


async def test_concurrent_publishers_lose_nothing_for_a_live_subscriber(
    two_servers: tuple[str, str],
    settings: Settings,
    tenant: Tenant,
    app_sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    """Ids are handed out before commit; without the outbox's ordering lock a later id could
    commit first, the hub would move past the earlier one, and live subscribers would never
    see it."""
    item_id = await tenant.add_item(due_at=utcnow() + timedelta(days=3))
    first, _ = two_servers
    async with subscribe(first, token(settings, tenant, "emil", "engineer")) as events:

        async def publisher(base: int) -> None:
            for n in range(base, base + 10):
                await publish(app_sessionmaker, tenant, item_id, n)

        await asyncio.gather(*(publisher(base) for base in range(0, 120, 10)))
        got = await take(events, 120)
    ids = [int(e.id or 0) for e in got]
    assert ids == sorted(ids)
    assert len(set(ids)) == 120


async def test_a_closed_stream_leaves_no_task_pending(
    two_servers: tuple[str, str], settings: Settings, tenant: Tenant
) -> None:
    """Issue 22: each closed stream wrote `Task was destroyed but it is pending!` to the API
    log (the stream's waits on its queue and its overflow flag were left behind)."""
    first, _ = two_servers
    bearer = token(settings, tenant, "emil", "engineer")
    destroyed: list[str] = []

    class Catch(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            destroyed.append(record.getMessage())

    catch = Catch(logging.ERROR)
    logging.getLogger("asyncio").addHandler(catch)
    try:
        for _ in range(5):
            async with subscribe(first, bearer):
                pass  # connected, "ready" read: the client leaves
        await asyncio.sleep(1.5)  # the server sees each disconnect
        gc.collect()
        await asyncio.sleep(0.2)
    finally:
        logging.getLogger("asyncio").removeHandler(catch)
    assert [m for m in destroyed if "destroyed" in m] == []


async def test_a_replay_longer_than_a_page_arrives_whole_and_in_order(
    two_servers: tuple[str, str],
    settings: Settings,
    tenant: Tenant,
    app_sessionmaker: async_sessionmaker[AsyncSession],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Issue 23: the replay reads a page, gives its connection back, sends, and reads the
    next; pages of 7 over 30 missed events lose and repeat nothing."""
    monkeypatch.setattr(events_router, "REPLAY_PAGE", 7)
    item_id = await tenant.add_item(due_at=utcnow() + timedelta(days=3))
    bearer = token(settings, tenant, "emil", "engineer")
    first, _ = two_servers
    seen = await seen_one(first, bearer, app_sessionmaker, tenant, item_id)
    for n in range(1, 31):
        await publish(app_sessionmaker, tenant, item_id, n)
    async with subscribe(first, bearer, last_event_id=int(seen.id or 0)) as events:
        got = await take(events, 30)
    assert [json.loads(e.data)["n"] for e in got] == list(range(1, 31))


async def test_a_client_that_stops_reading_its_replay_holds_no_connection(
    two_servers: tuple[str, str], settings: Settings, tenant: Tenant
) -> None:
    """Issue 23: the replay held a pooled connection, in an open transaction, while it
    streamed to the client, so a storm of slow resumers emptied the pool. A client that
    stops reading a long replay (the server blocks mid-send) now holds none."""
    async with tenant.owner() as session, session.begin():
        await session.execute(
            text(
                "INSERT INTO push_event (account_id, kind, payload, dedup_key) "
                "SELECT CAST(:account AS uuid), 'rung.fired',"
                " jsonb_build_object('n', g, 'pad', repeat('x', 200)),"
                " 'stalled-' || :key || '-' || g FROM generate_series(1, 100000) g"
            ),
            {"account": str(tenant.account_id), "key": str(tenant.account_id)},
        )
    first, _ = two_servers
    host, port = first.removeprefix("http://").split(":")
    bearer = token(settings, tenant, "emil", "engineer")
    # A client with a small receive window that reads the answer's head, then stops.
    stalled = socket.socket()
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stalled.setblocking(False)
    await asyncio.get_running_loop().sock_connect(stalled, (host, int(port)))
    reader, writer = await asyncio.open_connection(sock=stalled)
    writer.write(
        f"GET /v1/events/stream HTTP/1.1\r\nHost: {host}\r\n"
        f"Authorization: Bearer {bearer}\r\nLast-Event-ID: 0\r\n\r\n".encode()
    )
    await writer.drain()
    assert b"200" in await reader.readline()
    await asyncio.sleep(3)  # the server fills what the socket takes, then its send blocks
    async with tenant.owner() as session:
        holding = await session.scalar(
            text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND state = 'idle in transaction' AND query ILIKE '%push_event%'"
            )
        )
    writer.close()
    assert holding == 0
