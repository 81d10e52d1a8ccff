"""The reconciler at scale: a walk over 100,000 items of which 1 % lag (their signals were
lost), behind stuck rows that used to fill the nudge query for ever.

- 100,000 items with a workflow on record, 99 % of them in step (no workflow is needed for
  those: the walk never reads them, the partial index holds only the lagging rows);
- `--stuck` (600) resolved items that lag with no workflow in Temporal, older than the
  rest: before issue 23, the first 500 of these filled every pass;
- `--lagging` (1,000) open items whose workflows run on the real worker process, then a
  version bump each with no signal, as a lost signal leaves them.

Then reconcile passes run, as the reconciler's workflow runs them (one after another, each
from the last one's cursor), until every lagging item has applied its version. Prints each
pass (rows walked, nudged, gone, failed, seconds) and the time until the last one healed.

    .venv/bin/python -m bench.reconciler_bench [--items 100000] [--lagging 1000] [--stuck 600]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import uuid
from datetime import timedelta
from pathlib import Path

from sqlalchemy import func, select, text, update
from temporalio.testing import ActivityEnvironment

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from activities.reconcile import ReconcileActivities  # noqa: E402
from bench.support import database, dev_server, start_worker  # noqa: E402
from config import Settings  # noqa: E402
from db import create_engine, create_sessionmaker  # noqa: E402
from domain.clock import SystemClock, utcnow  # noqa: E402
from domain.models import Item  # noqa: E402
from tests.support.tenants import Tenant  # noqa: E402
from workflows.starts import start_item  # noqa: E402
from workflows.types import NudgePass  # noqa: E402

CHUNK = 5_000


async def add(tenant: Tenant, count: int, **values: object) -> list[uuid.UUID]:
    """`count` CAPA items due in 30 days, in chunks, then `values` set on all of them."""
    ids: list[uuid.UUID] = []
    due = utcnow() + timedelta(days=30)
    for start in range(0, count, CHUNK):
        ids += await tenant.add_items([due] * min(CHUNK, count - start))
    if values:
        async with tenant.owner() as session, session.begin():
            for start in range(0, len(ids), CHUNK):
                chunk = ids[start : start + CHUNK]
                await session.execute(update(Item).where(Item.id.in_(chunk)).values(**values))
    return ids


async def run(url: str, items: int, lagging: int, stuck: int) -> None:
    settings = Settings().model_copy(update={"database_url": url})
    owner_engine, app_engine = create_engine(settings, owner=True), create_engine(settings)
    tenant = await Tenant.create(create_sessionmaker(owner_engine))
    env = await dev_server()
    queue = f"bench-{uuid.uuid4()}"
    worker = start_worker(  # the bench runs the reconciler's passes itself
        url,
        env.client.service_client.config.target_host,
        queue,
        ESCALATOR_RECONCILE_EVERY_SECONDS="86400",
    )
    try:
        long_ago = utcnow() - timedelta(days=30)
        began = time.monotonic()
        await add(
            tenant,
            items - lagging - stuck,
            workflow_started_at=long_ago,
            applied_version=Item.version,  # in step
        )
        await add(
            tenant,
            stuck,
            state="resolved",
            version=Item.applied_version + 1,
            workflow_started_at=long_ago,
            updated_at=long_ago,
        )
        live = await add(tenant, lagging)
        print(f"{items:,} items written in {time.monotonic() - began:.1f} s")
        began = time.monotonic()
        for start in range(0, len(live), 100):
            await asyncio.gather(
                *(
                    start_item(env.client, queue, i, tenant.account_id, "bench")
                    for i in live[start : start + 100]
                )
            )
        await until_applied(tenant, live, within=600)
        print(f"{lagging:,} workflows started and in step in {time.monotonic() - began:.1f} s")
        async with tenant.owner() as session, session.begin():
            for start in range(0, len(live), CHUNK):
                chunk = live[start : start + CHUNK]
                await session.execute(  # the signals lost: only the reconciler can heal them
                    update(Item)
                    .where(Item.id.in_(chunk))
                    .values(version=Item.version + 1, updated_at=utcnow() - timedelta(minutes=5))
                )
            await session.execute(text("ANALYZE item"))
        reconcile = ReconcileActivities(
            env.client, create_sessionmaker(app_engine), queue, SystemClock()
        )
        activities, after, began, passes = ActivityEnvironment(), None, time.monotonic(), 0
        while await count_lagging(tenant, live):
            passes += 1
            started = time.monotonic()
            done = await activities.run(reconcile.nudge_lagging_workflows, NudgePass(after=after))
            after = done.after
            print(
                f"  pass {passes}: nudged {done.nudged}, gone {done.gone}, failed {done.failed}"
                f" in {time.monotonic() - started:.2f} s; walk "
                + ("goes on" if after else "complete")
            )
            if after is None:  # the reconciler sleeps a round before it walks again
                nudged_by_now = time.monotonic()
                left = await until_settled(tenant, live, within=settings.reconcile_every_seconds)
                print(
                    f"    the nudged ones healed within {time.monotonic() - nudged_by_now:.1f} s;"
                    f" {left} still lagging (not yet walked: changed within the grace)"
                )
        healed = time.monotonic() - began
        print(
            f"{items:,} items, {lagging:,} lagging behind {stuck:,} stuck: every lagging item "
            f"healed {healed:.1f} s after the first pass began, in {passes} pass(es)"
        )
    finally:
        worker.terminate()
        worker.wait(timeout=30)
        await env.shutdown()
        await owner_engine.dispose()
        await app_engine.dispose()


async def count_lagging(tenant: Tenant, ids: list[uuid.UUID]) -> int:
    async with tenant.owner() as session:
        found = await session.scalar(
            select(func.count())
            .select_from(Item)
            .where(Item.id.in_(ids), Item.applied_version < Item.version)
        )
        return int(found or 0)


async def until_settled(tenant: Tenant, ids: list[uuid.UUID], within: float) -> int:
    """Until the count of lagging items stops falling for 3 s (the nudged ones healed),
    or `within`; how many still lag (the ones the pass could not nudge yet)."""
    deadline, last, steady = time.monotonic() + within, -1, 0
    while time.monotonic() < deadline:
        left = await count_lagging(tenant, ids)
        steady = steady + 1 if left == last else 0
        if left == 0 or steady >= 6:
            break
        last = left
        await asyncio.sleep(0.5)
    return await count_lagging(tenant, ids)


async def until_applied(tenant: Tenant, ids: list[uuid.UUID], within: float) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if not await count_lagging(tenant, ids):
            return
        await asyncio.sleep(0.5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--lagging", type=int, default=1_000)
    parser.add_argument("--stuck", type=int, default=600)
    args = parser.parse_args()
    with database() as url:
        asyncio.run(run(url, args.items, args.lagging, args.stuck))


if __name__ == "__main__":
    main()
