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
import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client

from config import Settings
from db import create_engine, create_sessionmaker, migrate, tenant_session
from devstack import temporal_argv
from domain import lifecycle
from domain.clock import utcnow
from domain.demo import rung
from domain.models import Delivery, Item, PushEvent
from mailsink import MailSink, free_port
from tests.support.pg import StoppablePostgres
from tests.support.tenants import Tenant
from workflows.escalation import EscalationWorkflow
from workflows.types import ClaimSignal, EscalationInput, workflow_id

pytestmark = pytest.mark.faults
ROOT = Path(__file__).resolve().parents[2]
ITEMS = int(os.environ.get("FAULTS_ITEMS", "100"))
QUEUE = f"faults-{uuid.uuid4()}"
CLAIM_SPREAD = 20.0  # seconds
REMIND_NOW = {
    "remind": rung({"business_seconds": 0}, ["assignee"], "task.reminder"),
    "escalate_1": None,
    "escalate_2": None,
}


class Temporal:
    """`temporal server start-dev` on a SQLite file, so a restart keeps every workflow."""

    def __init__(self, state: Path) -> None:
        port, ui = free_port(), free_port()
        self.address = f"127.0.0.1:{port}"
        self.settings = Settings(
            temporal_address=self.address, temporal_ui_port=ui, state_dir=state
        )
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        argv = [str(a) for a in temporal_argv(self.settings)]
        self.process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()

    async def client(self) -> Client:
        for _ in range(120):
            with contextlib.suppress(Exception):
                client = await Client.connect(self.address)
                await client.service_client.check_health()
                return client
            await asyncio.sleep(0.5)
        raise TimeoutError("the Temporal dev server did not come up")


@dataclass
class Stack:
    postgres: StoppablePostgres
    temporal: Temporal
    sink: MailSink
    client: Client
    queue: str = QUEUE  # one for the module: the reconciler Schedule names it once
    worker: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return self.postgres.url

    def start_worker(self) -> None:
        env = {
            **os.environ,
            "DATABASE_URL": self.url,
            "ESCALATOR_TEMPORAL_ADDRESS": self.temporal.address,
            "ESCALATOR_TASK_QUEUE": self.queue,
            "ESCALATOR_SMTP_PORT": str(self.sink.port),
            "ESCALATOR_RECONCILE_EVERY_SECONDS": "5",
        }
        self.worker = subprocess.Popen(
            [sys.executable, "worker.py"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def kill_worker(self) -> None:
        assert self.worker is not None
        self.worker.send_signal(signal.SIGKILL)
        self.worker.wait()

    def stop_worker(self) -> None:
        if self.worker is not None and self.worker.poll() is None:
            self.worker.terminate()
            self.worker.wait(timeout=30)

    async def claim(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        tenant: Tenant,
        item_id: uuid.UUID,
        committed: dict[str, float] | None = None,
    ) -> None:
        """What the API does: Emil's race-safe claim committed, then the nudge."""
        emil = tenant.user("emil")
        async with tenant_session(sessionmaker, tenant.account_id) as session:
            await lifecycle.claim(session, tenant.account_id, item_id, emil, utcnow())
        if committed is not None:
            committed[str(item_id)] = time.time()
        await self.client.get_workflow_handle(workflow_id(str(item_id))).signal(
            EscalationWorkflow.claim, ClaimSignal(user_id=str(emil), at=utcnow())
        )

    async def tenant(self) -> Tenant:
        engine = create_engine(Settings(database_url=self.url), owner=True)
        tenant = await Tenant.create(create_sessionmaker(engine))
        await tenant.around_the_clock(REMIND_NOW)
        return tenant

    async def items_due(self, tenant: Tenant, count: int, due: datetime) -> list[uuid.UUID]:
        """Items whose remind is due at `due`, their workflows started (as the API does)."""
        ids = [await tenant.add_item(due_at=due) for _ in range(count)]
        for chunk in range(0, len(ids), 50):
            await asyncio.gather(
                *(
                    self.client.start_workflow(
                        EscalationWorkflow.run,
                        EscalationInput(item_id=str(i), account_id=str(tenant.account_id)),
                        id=workflow_id(str(i)),
                        task_queue=self.queue,
                    )
                    for i in ids[chunk : chunk + 50]
                )
            )
        async with tenant.owner() as session, session.begin():
            await session.execute(
                update(Item).where(Item.id.in_(ids)).values(workflow_started_at=utcnow())
            )
        return ids


@dataclass
class Outcome:
    scenario: str
    expected: int
    unique: int
    duplicates: int
    max_lateness: float
    recovery: float | None

    @property
    def lost(self) -> int:
        return self.expected - self.unique

    def report(self) -> None:
        recovery = "-" if self.recovery is None else f"{self.recovery:.1f} s"
        print(  # noqa: T201  (the suite's output is these lines)
            f"\n[faults] {self.scenario}: expected {self.expected}, lost {self.lost}, "
            f"duplicates {self.duplicates}, max lateness {self.max_lateness:.1f} s, "
            f"recovery {recovery}"
        )


async def outcome(
    stack: Stack,
    scenario: str,
    items: list[uuid.UUID],
    due: datetime,
    since: float | None,
    within: float = 240,
) -> Outcome:
    """Wait until every item's mail arrived (or `within`), then count."""
    wanted = {str(i) for i in items}
    deadline = time.monotonic() + within
    while True:
        mails = [m for m in stack.sink.mails if m.message["X-Escalator-Item"] in wanted]
        unique = {m.message_id for m in mails}
        if len(unique) >= len(wanted) or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.5)
    await asyncio.sleep(3)  # a late duplicate would show up now
    mails = [m for m in stack.sink.mails if m.message["X-Escalator-Item"] in wanted]
    unique = {m.message_id for m in mails}
    last = max((m.received_wall for m in mails), default=due.timestamp())
    result = Outcome(
        scenario=scenario,
        expected=len(wanted),
        unique=len(unique),
        duplicates=len(mails) - len(unique),
        max_lateness=last - due.timestamp(),
        recovery=None if since is None else last - since,
    )
    result.report()
    return result


@pytest.fixture(scope="module")
def processes(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[StoppablePostgres, Temporal]]:
    postgres = StoppablePostgres(tmp_path_factory.mktemp("faults-pg"))
    migrate(postgres.url)
    temporal = Temporal(tmp_path_factory.mktemp("faults-temporal"))
    temporal.start()
    yield postgres, temporal
    temporal.stop()
    postgres.close()


@pytest.fixture
async def stack(processes: tuple[StoppablePostgres, Temporal]) -> AsyncIterator[Stack]:
    postgres, temporal = processes
    sink = MailSink().start()
    built = Stack(postgres, temporal, sink, await temporal.client())
    built.start_worker()
    yield built
    built.stop_worker()
    built.sink.stop()  # the scenario may have replaced it


async def until_mails(stack: Stack, count: int, within: float = 120) -> None:
    deadline = time.monotonic() + within
    while len(stack.sink.mails) < count:
        assert time.monotonic() < deadline, f"only {len(stack.sink.mails)} of {count} mails"
        await asyncio.sleep(0.1)


async def in_flight(stack: Stack, tenant: Tenant) -> int:
    async with tenant.owner() as session:
        count = await session.scalar(
            select(func.count())
            .select_from(Delivery)
            .where(Delivery.account_id == tenant.account_id, Delivery.status == "sending")
        )
    return int(count or 0)


async def test_worker_sigkill_mid_burst(stack: Stack) -> None:
    tenant = await stack.tenant()
    due = utcnow() + timedelta(seconds=10)
    items = await stack.items_due(tenant, ITEMS, due)
    await until_mails(stack, ITEMS // 3)
    stack.kill_worker()
    sending = await in_flight(stack, tenant)
    restarted = time.time()
    stack.start_worker()
    result = await outcome(stack, "worker SIGKILL mid-burst", items, due, restarted)
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
    result = await outcome(stack, "Postgres stopped 10 s mid-send", items, due, back)
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
    result = await outcome(stack, f"SMTP down {down:.0f} s", items, due, back, within=400)
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
    result = await outcome(stack, "Temporal down during release", items, due, back)
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
    result = await outcome(stack, "Temporal restarted mid-burst", items, due, back)
    assert result.lost == 0
    assert result.duplicates == 0
