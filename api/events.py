"""Live events for SSE subscribers, across processes.

Each API process holds one LISTEN connection (`Hub`). A NOTIFY only says "event N exists";
the hub then reads every outbox row after the last one it dispatched, in id order, and hands
each to the subscribers of that event's account. An account's publishers commit in id order
(see `domain.push`), but two accounts' may not: an id the hub skipped over is remembered as
a gap and asked for again on every later read, for `GAP_WAIT_SECONDS` (an id that never
commits, a rolled-back or deduplicated insert, is then forgotten). So nothing is lost, and
each account's events still reach its subscribers in order. When the connection drops the
hub reconnects and reads on from where it was, so nothing published meanwhile is lost
either.

A subscriber has a bounded buffer. One that cannot keep up is disconnected rather than
allowed to block the others or silently miss events: its client resumes by id.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import structlog

import metrics
from config import to_libpq_url
from domain.clock import utcnow
from domain.push import CHANNEL

log = structlog.get_logger()
APPLICATION_NAME = "escalator-events-hub"  # how operators (and tests) find its connection
BATCH = 1000
# How long an id the hub skipped is asked for again: longer than any transaction that
# publishes can stay open (the statement and lock timeouts end a stuck one well before).
GAP_WAIT_SECONDS = 120.0
MAX_GAPS = 10_000  # a jump wider than this (a restore, a sequence reset) is not tracked


@dataclass(frozen=True)
class Event:
    id: int
    account_id: uuid.UUID
    kind: str
    payload: dict[str, Any]


@dataclass(eq=False)
class Subscriber:
    account_id: uuid.UUID
    queue: asyncio.Queue[Event]
    overflowed: asyncio.Event = field(default_factory=asyncio.Event)

    def offer(self, event: Event) -> None:
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            self.overflowed.set()


class Hub:
    def __init__(self, database_url: str, buffer: int = 1000) -> None:
        # Plain asyncpg as the app role: it reads every account's events through the one
        # definer function made for it (`escalator_push_after`) and routes each to its
        # account's subscribers only.
        self._dsn = to_libpq_url(database_url)
        self._buffer = buffer
        self._subscribers: dict[uuid.UUID, set[Subscriber]] = defaultdict(set)
        self._wake = asyncio.Event()
        self.last_id = 0
        self._gaps: dict[int, float] = {}  # an id skipped over -> when (monotonic)
        self._positioned = False
        self.connected = asyncio.Event()

    def subscribe(self, account_id: uuid.UUID) -> Subscriber:
        subscriber = Subscriber(account_id, asyncio.Queue(maxsize=self._buffer))
        self._subscribers[account_id].add(subscriber)
        metrics.SSE_SUBSCRIBERS.inc()
        return subscriber

    def unsubscribe(self, subscriber: Subscriber) -> None:
        subscribers = self._subscribers[subscriber.account_id]
        if subscriber in subscribers:
            subscribers.remove(subscriber)
            metrics.SSE_SUBSCRIBERS.dec()

    @property
    def subscriber_count(self) -> int:
        return sum(len(s) for s in self._subscribers.values())

    async def run(self) -> None:
        """Listen for ever, reconnecting with backoff; cancelled at shutdown."""
        delay = 0.2
        while True:
            try:
                await self._listen()
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
                self.connected.clear()
                log.warning("events.listen_lost", error=str(error), retry_in=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def _listen(self) -> None:
        connection = await asyncpg.connect(
            self._dsn, server_settings={"application_name": APPLICATION_NAME}
        )
        try:
            if not self._positioned:  # start at the head once: history is what resume is for
                self.last_id = await connection.fetchval("SELECT escalator_push_head()")
                self._positioned = True
            await connection.add_listener(CHANNEL, lambda *_: self._wake.set())
            # A dropped connection wakes the loop at once, so it reconnects without delay.
            connection.add_termination_listener(lambda *_: self._wake.set())
            self.connected.set()
            log.info("events.listening", after=self.last_id)
            self._wake.set()  # catch up on anything published while we were away
            while not connection.is_closed():
                with contextlib.suppress(TimeoutError):
                    # Also poll now and then: a dead connection shows up on use.
                    await asyncio.wait_for(self._wake.wait(), timeout=5.0)
                self._wake.clear()
                await self._dispatch_new(connection)
        finally:
            self.connected.clear()
            try:  # a graceful goodbye, bounded; a server that never answers is cut off
                await connection.close(timeout=2.0)
            except Exception:
                connection.terminate()

    async def _dispatch_new(self, connection: asyncpg.Connection) -> None:
        await self._dispatch_gaps(connection)
        while True:
            rows = await connection.fetch(
                "SELECT id, account_id, kind, payload, created_at"
                " FROM escalator_push_after($1, $2)",
                self.last_id,
                BATCH,
            )
            for row in rows:
                skipped = row["id"] - self.last_id - 1
                if 0 < skipped <= MAX_GAPS:
                    seen = time.monotonic()
                    self._gaps.update(dict.fromkeys(range(self.last_id + 1, row["id"]), seen))
                self._dispatch(row)
                self.last_id = row["id"]
            if len(rows) < BATCH:
                return

    async def _dispatch_gaps(self, connection: asyncpg.Connection) -> None:
        """The ids skipped over that have committed since; each is dispatched once."""
        if not self._gaps:
            return
        expired = time.monotonic() - GAP_WAIT_SECONDS
        self._gaps = {gap: since for gap, since in self._gaps.items() if since > expired}
        rows = await connection.fetch(
            "SELECT id, account_id, kind, payload, created_at"
            " FROM escalator_push_by_ids($1::bigint[])",
            list(self._gaps),
        )
        for row in rows:
            self._gaps.pop(row["id"], None)
            self._dispatch(row)

    def _dispatch(self, row: asyncpg.Record) -> None:
        metrics.OUTBOX_LAG.observe(max((utcnow() - row["created_at"]).total_seconds(), 0.0))
        event = Event(row["id"], row["account_id"], row["kind"], json.loads(row["payload"]))
        for subscriber in list(self._subscribers.get(event.account_id, ())):
            subscriber.offer(event)
