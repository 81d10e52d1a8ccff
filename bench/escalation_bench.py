"""Escalation lateness and worker memory, on the real dev server with the real worker process.

1. 200 items whose remind rung is due at the same instant: lateness p50/p99 from the planned
   instant to the SMTP sink accepting the mail.
2. 2,000 open items (timers days away): the worker's RSS.

    .venv/bin/python bench/escalation_bench.py [--burst 200] [--open 2000] [--workers 1]

Postgres is DATABASE_URL's server when set (a scratch database is made and dropped),
otherwise an embedded pgserver.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import uuid
from datetime import timedelta
from pathlib import Path

from temporalio.client import Client

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.support import (  # noqa: E402
    database,
    dev_server,
    percentile,
    rss_mib,
    start_worker,
)
from config import Settings  # noqa: E402
from db import create_engine, create_sessionmaker  # noqa: E402
from domain.clock import utcnow  # noqa: E402
from domain.demo import rung  # noqa: E402
from mailsink import MailSink  # noqa: E402
from tests.support.tenants import Tenant  # noqa: E402
from workflows.escalation import EscalationWorkflow  # noqa: E402
from workflows.types import EscalationInput, workflow_id  # noqa: E402


async def start_items(client: Client, tenant: Tenant, queue: str, count: int, due: object) -> None:
    ids = [await tenant.add_item(due_at=due) for _ in range(count)]  # type: ignore[arg-type]

    async def start(item_id: uuid.UUID) -> None:
        await client.start_workflow(
            EscalationWorkflow.run,
            EscalationInput(item_id=str(item_id), account_id=str(tenant.account_id)),
            id=workflow_id(str(item_id)),
            task_queue=queue,
        )

    for chunk in range(0, len(ids), 100):
        await asyncio.gather(*(start(i) for i in ids[chunk : chunk + 100]))


async def run(burst: int, open_items: int, worker_count: int, url: str) -> None:
    settings = Settings().model_copy(update={"database_url": url})
    engine = create_engine(settings, owner=True)
    tenant = await Tenant.create(create_sessionmaker(engine))
    await tenant.around_the_clock(
        {
            "remind": rung({"business_seconds": 0}, ["assignee"], "task.reminder"),
            "escalate_1": None,
            "escalate_2": None,
        }
    )
    sink = MailSink().start()
    env = await dev_server()
    queue = f"bench-{uuid.uuid4()}"
    address = env.client.service_client.config.target_host
    workers = [
        start_worker(url, address, queue, ESCALATOR_SMTP_PORT=str(sink.port))
        for _ in range(worker_count)
    ]
    worker = workers[0]
    print(f"{worker_count} worker process(es)")
    try:
        await asyncio.sleep(3)
        idle = rss_mib(worker.pid)
        # 1. a burst of rungs due at one instant
        due = utcnow() + timedelta(seconds=max(15, burst // 10))
        await start_items(env.client, tenant, queue, burst, due)
        mails = await sink.wait_for(burst, within=300)
        planned = due.timestamp()
        lateness = sorted(m.received_wall - planned for m in mails)
        p50, p99 = percentile(lateness, 0.5), percentile(lateness, 0.99)
        print(f"burst: {burst} remind rungs due at one instant")
        print(
            f"  lateness planned -> SMTP accepted: min {lateness[0] * 1000:.0f} ms, "
            f"p50 {p50 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms, "
            f"max {lateness[-1] * 1000:.0f} ms"
        )
        # 2. many open items, timers far away
        began = time.monotonic()
        await start_items(env.client, tenant, queue, open_items, utcnow() + timedelta(days=30))
        started = time.monotonic() - began
        await asyncio.sleep(10)  # let the workers' first tasks settle
        print(
            f"open: {open_items} items created and started in {started:.1f} s "
            f"({open_items / started:.0f}/s)"
        )
        print(
            f"  first worker's RSS: idle {idle:.0f} MiB, with {open_items + burst} workflows "
            f"{rss_mib(worker.pid):.0f} MiB"
        )
    finally:
        for process in workers:
            process.terminate()
            process.wait(timeout=30)
        await env.shutdown()
        sink.stop()
        await engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--burst", type=int, default=200)
    parser.add_argument("--open", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=1, help="worker processes")
    args = parser.parse_args()
    with database() as url:
        asyncio.run(run(args.burst, args.open, args.workers, url))


if __name__ == "__main__":
    main()
