"""1,000 SSE subscribers on one API process: from a claim's commit to the `item.claimed`
event arriving at each subscriber, and the API process's RSS.

    .venv/bin/python bench/sse_bench.py [--subscribers 1000] [--claims 5]

The claim's commit is taken as the moment its HTTP response arrives (the unit of work
commits before the response is sent), so the numbers slightly favour nobody.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from datetime import timedelta
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from api.tokens import Principal, mint  # noqa: E402
from bench.support import (  # noqa: E402
    database,
    percentile,
    rss_mib,
    start_api,
    wait_healthy,
)
from config import Settings  # noqa: E402
from db import create_engine, create_sessionmaker  # noqa: E402
from domain.clock import utcnow  # noqa: E402
from mailsink import free_port  # noqa: E402
from tests.support.live import sse_events  # noqa: E402
from tests.support.tenants import Tenant  # noqa: E402


async def run(subscribers: int, claims: int, url: str) -> None:
    await measure(url, subscribers, claims)


async def measure(url: str, subscribers: int, claims: int) -> tuple[list[float], float]:
    """(claim commit -> event latencies at every subscriber, the API's RSS in MiB)."""
    settings = Settings().model_copy(update={"database_url": url})
    engine = create_engine(settings, owner=True)
    tenant = await Tenant.create(create_sessionmaker(engine))
    port = free_port()
    api = start_api(
        port,
        # Temporal is not needed here: a dead address keeps it out of the picture.
        {"DATABASE_URL": url, "ESCALATOR_TEMPORAL_ADDRESS": f"127.0.0.1:{free_port()}"},
        *("--log-level", "warning", "--backlog", "4096"),
    )
    bearer = mint(
        Principal(user_id=tenant.user("emil"), account_id=tenant.account_id, role="engineer"),
        settings.jwt_secret,
        ttl=timedelta(hours=1),
        now=utcnow(),
    )
    headers = {"Authorization": f"Bearer {bearer}"}
    arrivals: dict[str, list[float]] = {}
    ready = 0
    limits = httpx.Limits(max_connections=subscribers + 10, max_keepalive_connections=0)
    try:
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=120, limits=limits
        ) as client:
            await wait_healthy(client, temporal=False)

            async def subscribe() -> None:
                nonlocal ready
                async with client.stream("GET", "/v1/events/stream") as response:
                    async for event in sse_events(response):
                        if event.event == "ready":
                            ready += 1
                        elif event.event == "item.claimed":
                            arrivals.setdefault(event.id or "", []).append(time.perf_counter())

            tasks = [asyncio.create_task(subscribe()) for _ in range(subscribers)]
            began = time.perf_counter()
            while ready < subscribers:
                await asyncio.sleep(0.1)
                if time.perf_counter() - began > 120:
                    raise TimeoutError(f"only {ready} of {subscribers} subscribers connected")
            print(f"{subscribers} subscribers connected in {time.perf_counter() - began:.1f} s")
            rss_connected = rss_mib(api.pid)
            latencies: list[float] = []
            for _ in range(claims):
                item = (
                    await client.post(
                        "/v1/tasks",
                        json={
                            "type": "CAPA",
                            "title": "bench",
                            "assignee_id": str(tenant.user("erin")),
                            "due_at": (utcnow() + timedelta(days=3)).isoformat(),
                        },
                    )
                ).json()
                await asyncio.sleep(1.0)  # let the item.created fan-out settle
                before = len(arrivals)
                claimed = await client.post(f"/v1/items/{item['id']}/claim")
                committed = time.perf_counter()
                assert claimed.status_code == 200, claimed.text
                deadline = committed + 60
                while (
                    len(arrivals) == before or len(next(reversed(arrivals.values()))) < subscribers
                ):
                    if time.perf_counter() > deadline:
                        break
                    await asyncio.sleep(0.01)
                got = next(reversed(arrivals.values()))
                latencies += [max(t - committed, 0.0) for t in got]
                print(f"  claim: {len(got)}/{subscribers} subscribers got item.claimed")
            p50, p99 = percentile(latencies, 0.5) * 1000, percentile(latencies, 0.99) * 1000
            print(
                f"claim commit -> event at subscriber over {claims} claims: "
                f"p50 {p50:.0f} ms, p99 {p99:.0f} ms, max {max(latencies) * 1000:.0f} ms"
            )
            print(
                f"API RSS: {rss_connected:.0f} MiB with {subscribers} streams "
                f"({rss_mib(api.pid):.0f} MiB at the end)"
            )
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            return latencies, rss_connected
    finally:
        api.terminate()
        api.wait(timeout=20)
        await engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--claims", type=int, default=5)
    args = parser.parse_args()
    with database() as url:
        asyncio.run(run(args.subscribers, args.claims, url))


if __name__ == "__main__":
    main()
