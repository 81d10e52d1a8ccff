"""The fault suite's stack (`make faults`): one embedded Postgres, one `temporal server
start-dev` on a persistent SQLite file, one SMTP sink and the real `worker.py` process, with
the helpers every scenario uses to break them and to count what users would ask about."""

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
from datetime import datetime
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
from domain.models import Delivery, Item
from mailsink import MailSink, free_port
from tests.support.pg import StoppablePostgres
from tests.support.tenants import Tenant
from workflows.escalation import EscalationWorkflow
from workflows.types import ClaimSignal, EscalationInput, workflow_id

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
        return await remind_now_tenant(self.url)

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


async def remind_now_tenant(url: str) -> Tenant:
    """A fresh account whose remind rung fires at the due instant, around the clock."""
    engine = create_engine(Settings(database_url=url), owner=True)
    tenant = await Tenant.create(create_sessionmaker(engine))
    await tenant.around_the_clock(REMIND_NOW)
    return tenant


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
    sink: MailSink,
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
        mails = [m for m in sink.mails if m.message["X-Escalator-Item"] in wanted]
        unique = {m.message_id for m in mails}
        if len(unique) >= len(wanted) or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.5)
    await asyncio.sleep(3)  # a late duplicate would show up now
    mails = [m for m in sink.mails if m.message["X-Escalator-Item"] in wanted]
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
