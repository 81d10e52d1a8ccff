"""Beyond one machine, run for real (`make faults`): two API processes behind HAProxy (Debian's,
as a deployment would run it), two worker processes on the one task queue, one Temporal and
one Postgres; then one API process and one worker killed with SIGKILL mid-burst.

What a user would ask, printed per phase and asserted where it is a guarantee:
- SSE subscribers connected through the proxy get every event of their account once, in
  order, whichever replica serves them, across the kill of the replica they were on
  (they reconnect through the proxy and resume by `Last-Event-ID`);
- creates and claims through the proxy keep answering while a replica dies (HAProxy
  retries a refused connection on the other; a request cut mid-answer is counted);
- the surviving worker takes over the killed one's workflows: no rung lost, duplicates
  only within the SMTP window of the sends in flight, every rung fired within 20 s of due.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from api.tokens import Principal, mint
from config import Settings
from domain.clock import utcnow
from domain.models import PushEvent
from mailsink import MailSink, free_port
from tests.faults.conftest import QUEUE, ROOT, Temporal, outcome, remind_now_tenant
from tests.support.live import sse_events
from tests.support.pg import StoppablePostgres
from tests.support.tenants import Tenant

pytestmark = pytest.mark.faults
HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"
SUBSCRIBERS = 10
BURST = int(os.environ.get("FAULTS_ITEMS", "100")) // 2
CONFIG = """
global
    maxconn 4096
defaults
    mode http
    timeout connect 1s
    timeout client 120s
    timeout server 120s
    timeout tunnel 1h
    retries 3
    option redispatch
frontend api
    bind 127.0.0.1:{port}
    default_backend replicas
backend replicas
    balance roundrobin
    option httpchk GET /health/live
    default-server inter 500ms fall 1 rise 2
{servers}
"""


@dataclass
class Replicas:
    """The two API processes, the two workers and the proxy in front of the APIs."""

    url: str  # the proxy
    apis: list[subprocess.Popen[bytes]]
    workers: list[subprocess.Popen[bytes]]
    proxy: subprocess.Popen[bytes]
    queue: str


@dataclass
class Subscriber:
    """One SSE client through the proxy: what it received, and how often it reconnected."""

    got: list[tuple[int, str]] = field(default_factory=list)
    reconnects: int = 0
    resumed: list[float] = field(default_factory=list)  # when each reconnect was answered


def env(
    postgres: StoppablePostgres, temporal: Temporal, sink: MailSink, queue: str
) -> dict[str, str]:
    return {
        **os.environ,
        "DATABASE_URL": postgres.url,
        "ESCALATOR_TEMPORAL_ADDRESS": temporal.address,
        "ESCALATOR_TASK_QUEUE": queue,
        "ESCALATOR_SMTP_PORT": str(sink.port),
        "ESCALATOR_RECONCILE_EVERY_SECONDS": "5",
        "ESCALATOR_WORKER_METRICS_PORT": "0",
    }


def process(argv: list[str], environment: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        argv, cwd=ROOT, env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


@contextlib.contextmanager
def replicas(
    postgres: StoppablePostgres, temporal: Temporal, sink: MailSink, state: Path
) -> Iterator[Replicas]:
    queue = f"{QUEUE}-replicas"
    environment = env(postgres, temporal, sink, queue)
    ports = [free_port(), free_port()]
    apis = [
        process(
            [sys.executable, "-m", "uvicorn", "--factory", "api.app:create_app", "--port", str(p)],
            environment,
        )
        for p in ports
    ]
    workers = [process([sys.executable, "worker.py"], environment) for _ in range(2)]
    port = free_port()
    servers = "\n".join(f"    server api{n} 127.0.0.1:{p} check" for n, p in enumerate(ports))
    config = state / "haproxy.cfg"
    config.write_text(CONFIG.format(port=port, servers=servers))
    proxy = process([HAPROXY, "-db", "-f", str(config)], environment)
    try:
        yield Replicas(f"http://127.0.0.1:{port}", apis, workers, proxy, queue)
    finally:
        for running in (*apis, *workers, proxy):
            if running.poll() is None:
                running.terminate()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    running.wait(timeout=30)


async def until_both_serve(url: str) -> None:
    """Until the proxy answers through both replicas (each is up and checked healthy)."""
    async with httpx.AsyncClient(base_url=url, timeout=5) as client:
        for _ in range(240):
            with contextlib.suppress(httpx.TransportError):
                answers = [await client.get("/health/ready") for _ in range(4)]
                if all(a.status_code == 200 for a in answers):
                    return
            await asyncio.sleep(0.5)
    raise TimeoutError("the replicas did not come up behind the proxy")


def bearer(settings: Settings, tenant: Tenant, who: str, role: str) -> dict[str, str]:
    principal = Principal(user_id=tenant.user(who), account_id=tenant.account_id, role=role)
    token = mint(principal, settings.jwt_secret, ttl=timedelta(hours=1), now=utcnow())
    return {"Authorization": f"Bearer {token}"}


async def follow(url: str, headers: dict[str, str], after: int, me: Subscriber) -> None:
    """Stay subscribed through the proxy: on any break, reconnect and resume by id."""
    last = after
    async with httpx.AsyncClient(base_url=url, timeout=httpx.Timeout(10, read=60)) as client:
        while True:
            try:
                resume = {**headers, "Last-Event-ID": str(last)}
                async with client.stream("GET", "/v1/events/stream", headers=resume) as response:
                    if response.status_code != 200:
                        raise httpx.TransportError(f"status {response.status_code}")
                    if me.reconnects:
                        me.resumed.append(time.monotonic())
                    async for event in sse_events(response):
                        if event.id is not None:
                            me.got.append((int(event.id), event.event))
                            last = int(event.id)
            except (httpx.TransportError, httpx.HTTPStatusError):
                pass
            me.reconnects += 1
            await asyncio.sleep(0.2)


async def create_tasks(
    url: str, headers: dict[str, str], tenant: Tenant, count: int, due: datetime
) -> list[uuid.UUID]:
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=30) as client:
        made = await asyncio.gather(
            *(
                client.post(
                    "/v1/tasks",
                    json={
                        "type": "CAPA",
                        "title": f"replicas {n}",
                        "assignee_id": str(tenant.user("erin")),
                        "due_at": due.isoformat(),
                    },
                )
                for n in range(count)
            )
        )
    assert all(m.status_code == 201 for m in made), [m.text for m in made if m.status_code != 201]
    return [uuid.UUID(m.json()["id"]) for m in made]


async def keep_asking(
    url: str, headers: dict[str, str], tenant: Tenant, until: float, answers: dict[str, int]
) -> None:
    """Creates and claims through the proxy, one after another, until `until`."""
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=30) as client:
        while time.monotonic() < until:
            try:
                made = await client.post(
                    "/v1/tasks",
                    json={
                        "type": "CAPA",
                        "title": "asked during the kill",
                        "assignee_id": str(tenant.user("erin")),
                        "due_at": (utcnow() + timedelta(days=5)).isoformat(),
                    },
                )
                key = f"create {made.status_code}"
                if made.status_code == 201:
                    claimed = await client.post(f"/v1/items/{made.json()['id']}/claim")
                    answers[f"claim {claimed.status_code}"] = (
                        answers.get(f"claim {claimed.status_code}", 0) + 1
                    )
            except httpx.TransportError as error:
                key = f"cut: {type(error).__name__}"
            answers[key] = answers.get(key, 0) + 1
            await asyncio.sleep(0.05)


async def account_events(tenant: Tenant, after: int) -> list[int]:
    async with tenant.owner() as session:
        ids = await session.scalars(
            select(PushEvent.id)
            .where(PushEvent.account_id == tenant.account_id, PushEvent.id > after)
            .order_by(PushEvent.id)
        )
        return list(ids)


@pytest.fixture
async def sink() -> AsyncIterator[MailSink]:
    running = MailSink().start()
    yield running
    running.stop()


async def test_two_apis_behind_a_proxy_and_two_workers_lose_nothing_when_one_of_each_dies(
    processes: tuple[StoppablePostgres, Temporal],
    sink: MailSink,
    tmp_path: Path,
) -> None:
    postgres, temporal = processes
    settings = Settings(database_url=postgres.url)
    with replicas(postgres, temporal, sink, tmp_path) as stack:
        await until_both_serve(stack.url)
        tenant = await remind_now_tenant(postgres.url)
        async with tenant.owner() as session:
            baseline = await session.scalar(select(func.coalesce(func.max(PushEvent.id), 0)))
        assert baseline is not None
        subscribers = [Subscriber() for _ in range(SUBSCRIBERS)]
        watch = bearer(settings, tenant, "emil", "engineer")
        following = [
            asyncio.create_task(follow(stack.url, watch, baseline, s)) for s in subscribers
        ]
        ada = bearer(settings, tenant, "ada", "admin")

        # 1. A burst through the proxy, and one API process killed while it fires.
        due = utcnow() + timedelta(seconds=12)
        items = await create_tasks(stack.url, ada, tenant, BURST, due)
        answers: dict[str, int] = {}
        asking = asyncio.create_task(
            keep_asking(stack.url, ada, tenant, time.monotonic() + 25, answers)
        )
        await asyncio.sleep(max(0.0, (due - utcnow()).total_seconds()) + 1)
        killed_at = time.monotonic()
        stack.apis[0].send_signal(signal.SIGKILL)
        stack.apis[0].wait()
        first = await outcome(sink, "API replica SIGKILL mid-burst", items, due, None)
        await asking
        # Every subscriber, wherever it was, ends with every event of the account once.
        expected = await account_events(tenant, baseline)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not all(
            [i for i, _ in s.got] == expected for s in subscribers
        ):
            await asyncio.sleep(0.5)
            expected = await account_events(tenant, baseline)
        moved = sum(s.reconnects > 0 for s in subscribers)
        resumed = max((t - killed_at for s in subscribers for t in s.resumed), default=0.0)
        print(  # noqa: T201  (the suite's output is these lines)
            f"[faults]   {SUBSCRIBERS} SSE subscribers through HAProxy: {moved} were on the killed"
            f" replica and resumed by id; {len(expected)} events each expected, "
            f"missing {sum(len(set(expected) - {i for i, _ in s.got}) for s in subscribers)}, "
            f"duplicated {sum(len(s.got) - len({i for i, _ in s.got}) for s in subscribers)}; "
            f"the last resumed {resumed:.1f} s after the kill"
        )
        print(f"[faults]   creates and claims through the proxy meanwhile: {answers}")  # noqa: T201
        assert first.lost == 0
        assert first.duplicates == 0
        for s in subscribers:
            assert [i for i, _ in s.got] == expected  # every event once, in order
        assert moved >= 1  # round robin put some on the killed replica
        assert sum(n for k, n in answers.items() if k.startswith(("create 5", "claim 5"))) == 0

        # 2. A worker killed while a burst fires: the other takes its workflows over.
        due = utcnow() + timedelta(seconds=12)
        items = await create_tasks(stack.url, ada, tenant, BURST, due)
        await asyncio.sleep(max(0.0, (due - utcnow()).total_seconds()) + 0.3)
        stack.workers[0].send_signal(signal.SIGKILL)
        stack.workers[0].wait()
        killed = time.time()
        second = await outcome(sink, "worker replica SIGKILL mid-burst", items, due, killed)
        assert second.lost == 0
        assert second.max_lateness <= 20
        for task in following:
            task.cancel()
        await asyncio.gather(*following, return_exceptions=True)
