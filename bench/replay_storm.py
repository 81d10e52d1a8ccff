"""A reconnect storm after a deploy: `--subscribers` (1,000) SSE clients reconnect at once
to one API process, each resuming by `Last-Event-ID` with `--missed` (200) events to
replay, while another client keeps creating tasks (`POST /v1/tasks`, `--rate` a second).

Prints how long until every subscriber had its whole replay, and the task creations'
statuses (a 503 means the database pool ran dry) and latency. `--api-root` runs another
checkout's API, to compare a change with what came before it.

    .venv/bin/python -m bench.replay_storm [--subscribers 1000] [--missed 200] [--rate 20]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from api.tokens import Principal, mint  # noqa: E402
from bench.support import database, percentile, start_api, wait_healthy  # noqa: E402
from config import Settings  # noqa: E402
from db import create_engine, create_sessionmaker, tenant_session  # noqa: E402
from domain import push  # noqa: E402
from domain.clock import utcnow  # noqa: E402
from mailsink import free_port  # noqa: E402
from tests.support.live import sse_events  # noqa: E402
from tests.support.tenants import Tenant  # noqa: E402


async def run(url: str, subscribers: int, missed: int, rate: float, root: Path) -> None:
    settings = Settings().model_copy(update={"database_url": url})
    owner, app = create_engine(settings, owner=True), create_engine(settings)
    tenant = await Tenant.create(create_sessionmaker(owner))
    item_id = await tenant.add_item(due_at=utcnow() + timedelta(days=3))
    async with tenant_session(create_sessionmaker(app), tenant.account_id) as session:
        for n in range(missed):  # what happened while everyone was away
            await push.publish(
                session,
                account_id=tenant.account_id,
                item=None,
                kind="rung.fired",
                dedup_key=f"{item_id}:storm:{n}",
                data={"n": n},
            )
    port = free_port()
    api = start_api(
        port,
        {"DATABASE_URL": url, "ESCALATOR_TEMPORAL_ADDRESS": f"127.0.0.1:{free_port()}"},
        *("--log-level", "warning", "--backlog", "4096"),
        root=root,
    )
    principal = Principal(user_id=tenant.user("ada"), account_id=tenant.account_id, role="admin")
    bearer = mint(principal, settings.jwt_secret, ttl=timedelta(hours=1), now=utcnow())
    headers = {"Authorization": f"Bearer {bearer}"}
    limits = httpx.Limits(max_connections=subscribers + 20, max_keepalive_connections=0)
    replayed: list[float] = []
    try:
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=120, limits=limits
        ) as client:
            await wait_healthy(client, temporal=False)
            began = time.perf_counter()

            async def resume() -> None:
                got = 0
                async with client.stream(
                    "GET", "/v1/events/stream", headers={"Last-Event-ID": "0"}
                ) as response:
                    if response.status_code != 200:
                        return
                    async for event in sse_events(response):
                        if event.event == "rung.fired":
                            got += 1
                            if got == missed:
                                replayed.append(time.perf_counter() - began)
                                return

            storm = [asyncio.create_task(resume()) for _ in range(subscribers)]
            statuses: Counter[int] = Counter()
            latencies: list[float] = []
            while len(replayed) < subscribers and time.perf_counter() - began < 180:
                sent = time.perf_counter()
                created = await client.post(
                    "/v1/tasks",
                    json={
                        "type": "CAPA",
                        "title": "during the storm",
                        "assignee_id": str(tenant.user("erin")),
                        "due_at": (utcnow() + timedelta(days=3)).isoformat(),
                    },
                )
                statuses[created.status_code] += 1
                latencies.append(time.perf_counter() - sent)
                await asyncio.sleep(max(0.0, 1 / rate - (time.perf_counter() - sent)))
            for task in storm:
                task.cancel()
            await asyncio.gather(*storm, return_exceptions=True)
    finally:
        api.terminate()
        api.wait(timeout=20)
        await owner.dispose()
        await app.dispose()
    print(
        f"{subscribers} subscribers resuming {missed} events each: {len(replayed)} had their "
        f"whole replay, the last after {max(replayed, default=float('nan')):.1f} s "
        f"(p50 {percentile(replayed, 0.5) if replayed else float('nan'):.1f} s)"
    )
    print(
        f"POST /v1/tasks meanwhile: {dict(sorted(statuses.items()))}, "
        f"p50 {percentile(latencies, 0.5) * 1000:.0f} ms, "
        f"p99 {percentile(latencies, 0.99) * 1000:.0f} ms, max {max(latencies) * 1000:.0f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--missed", type=int, default=200)
    parser.add_argument("--rate", type=float, default=20.0, help="task creations a second")
    parser.add_argument("--api-root", default=str(ROOT), help="another checkout's API")
    args = parser.parse_args()
    with database() as url:
        asyncio.run(run(url, args.subscribers, args.missed, args.rate, Path(args.api_root)))


if __name__ == "__main__":
    main()
