"""`POST /v1/tasks` against raw `client.start_workflow`, in one run on one dev server.

The API does per request: auth, validation, the policy and assignee look-ups, the insert and
its audit and outbox rows, the commit, the workflow start, the started-stamp, the item view
for the response. The raw side only starts the same workflow type with the same input size.
Then the API alone, paced at half the raw rate: its latency when it is not saturated.

    .venv/bin/python bench/api_bench.py [--requests 400] [--concurrency 16]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path

import httpx
from temporalio.client import Client

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from api.tokens import Principal, mint  # noqa: E402
from bench.harness import cpu_seconds  # noqa: E402
from bench.support import (  # noqa: E402
    database,
    dev_server,
    percentile,
    start_api,
    wait_healthy,
)
from config import Settings  # noqa: E402
from db import create_engine, create_sessionmaker  # noqa: E402
from domain.clock import utcnow  # noqa: E402
from mailsink import free_port  # noqa: E402
from tests.support.tenants import Tenant  # noqa: E402
from workflows.escalation import EscalationWorkflow  # noqa: E402
from workflows.types import EscalationInput, workflow_id  # noqa: E402

Call = Callable[[int], Awaitable[None]]


async def measure(count: int, concurrency: int, call: Call) -> tuple[float, list[float]]:
    latencies: list[float] = []
    slots = asyncio.Semaphore(concurrency)

    async def one(n: int) -> None:
        async with slots:
            began = time.perf_counter()
            await call(n)
            latencies.append(time.perf_counter() - began)

    began = time.perf_counter()
    await asyncio.gather(*(one(n) for n in range(count)))
    return count / (time.perf_counter() - began), latencies


async def paced_calls(count: int, rate: float, call: Call) -> list[float]:
    """Open loop: one call every 1/rate seconds whatever the others are doing."""
    latencies: list[float] = []

    async def one(n: int) -> None:
        began = time.perf_counter()
        await call(n)
        latencies.append(time.perf_counter() - began)

    tasks = []
    start = time.perf_counter()
    for n in range(count):
        await asyncio.sleep(max(start + n / rate - time.perf_counter(), 0))
        tasks.append(asyncio.create_task(one(n)))
    await asyncio.gather(*tasks)
    return latencies


@asynccontextmanager
async def calls(
    url: str, client: Client, concurrency: int, root: Path = ROOT
) -> AsyncIterator[tuple[Call, Call, int]]:
    """(POST /v1/tasks through one API process, raw start_workflow, the API's pid), warmed
    up. `root`: another checkout's API, to measure a change against."""
    settings = Settings().model_copy(update={"database_url": url})
    engine = create_engine(settings, owner=True)
    tenant = await Tenant.create(create_sessionmaker(engine))
    port, queue = free_port(), f"bench-{uuid.uuid4()}"
    api = start_api(
        port,
        {
            "DATABASE_URL": url,
            "ESCALATOR_TEMPORAL_ADDRESS": client.service_client.config.target_host,
            "ESCALATOR_TASK_QUEUE": queue,
            "ESCALATOR_DB_POOL_SIZE": str(concurrency + 4),
        },
        *("--log-level", "warning"),
        root=root,
    )
    principal = Principal(user_id=tenant.user("ada"), account_id=tenant.account_id, role="admin")
    token = mint(principal, settings.jwt_secret, ttl=timedelta(hours=1), now=utcnow())
    body = {
        "type": "CAPA",
        "title": "bench",
        "assignee_id": str(tenant.user("erin")),
        "due_at": (utcnow() + timedelta(days=30)).isoformat(),
    }
    try:
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}",
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
            limits=httpx.Limits(max_connections=200),
        ) as http:
            await wait_healthy(http, temporal=True)

            async def post(_: int) -> None:
                response = await http.post("/v1/tasks", json=body)
                assert response.status_code == 201, response.text
                assert response.json()["workflow"] == "started"

            async def start(_: int) -> None:
                item = str(uuid.uuid4())
                await client.start_workflow(
                    EscalationWorkflow.run,
                    EscalationInput(item_id=item, account_id=str(tenant.account_id)),
                    id=workflow_id(item),
                    task_queue=queue,
                )

            await measure(20, concurrency, post)  # warm-up: connections, caches
            await measure(20, concurrency, start)
            yield post, start, api.pid
    finally:
        api.terminate()
        api.wait(timeout=20)
        await engine.dispose()


async def rates(
    url: str, client: Client, requests: int, concurrency: int, root: Path = ROOT
) -> tuple[float, float, float]:
    """Throughput of (POST /v1/tasks, raw start_workflow) at `concurrency` in flight, and the
    API process's CPU seconds per request."""
    async with calls(url, client, concurrency, root) as (post, start, pid):
        began = cpu_seconds(pid)
        api_rate, api_latency = await measure(requests, concurrency, post)
        api_cpu = (cpu_seconds(pid) - began) / requests
        raw_rate, raw_latency = await measure(requests, concurrency, start)
    report("POST /v1/tasks", api_rate, api_latency)
    print(f"  {'API CPU per request':<26} {api_cpu * 1000:7.2f} ms")
    report("client.start_workflow", raw_rate, raw_latency)
    return api_rate, raw_rate, api_cpu


async def paced(url: str, client: Client, rate: float, requests: int, root: Path = ROOT) -> float:
    """p99 latency of POST /v1/tasks arriving at `rate` per second."""
    async with calls(url, client, 16, root) as (post, _, _):
        latencies = await paced_calls(requests, rate, post)
    report(f"POST /v1/tasks at {rate:.0f}/s", rate, latencies)
    return percentile(latencies, 0.99)


def report(name: str, rate: float, latencies: list[float]) -> None:
    p50, p99 = percentile(latencies, 0.5) * 1000, percentile(latencies, 0.99) * 1000
    print(f"  {name:<26} {rate:7.1f}/s   p50 {p50:6.1f} ms   p99 {p99:6.1f} ms")


async def run(count: int, concurrency: int, url: str) -> None:
    env = await dev_server()
    try:
        print(f"{count} requests each, concurrency {concurrency}, one API process, dev server")
        api_rate, raw_rate, _ = await rates(url, env.client, count, concurrency)
        print(f"  API / raw throughput ratio: {api_rate / raw_rate:.2f}")
        await paced(url, env.client, raw_rate / 2, count)
    finally:
        await env.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    with database() as url:
        asyncio.run(run(args.requests, args.concurrency, url))


if __name__ == "__main__":
    main()
