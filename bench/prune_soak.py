"""A month of traffic in a minute: do `push_event` and `used_link` stay bounded?

Each simulated day writes `--events` (20,000) push events and `--links` (2,000) used claim
links stamped that day, then runs the reconciler's pruning (`prune_tables`) with the clock
at the day's end, as its rounds would through the day. Prints both tables' row counts per
day, and what each day's pruning cost: they grow for the retention window (7 days of
events, a claim link's 7-day life) and then stay flat.

    .venv/bin/python -m bench.prune_soak [--days 30] [--events 20000] [--links 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import text
from temporalio.client import Client
from temporalio.testing import ActivityEnvironment

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from activities.reconcile import ReconcileActivities  # noqa: E402
from bench.support import database  # noqa: E402
from config import Settings  # noqa: E402
from db import create_engine, create_sessionmaker  # noqa: E402
from domain.clock import utcnow  # noqa: E402
from mailsink import free_port  # noqa: E402
from tests.support.tenants import Tenant  # noqa: E402


class DayEnd:
    def __init__(self) -> None:
        self.at = utcnow()

    def now(self) -> datetime:
        return self.at


async def run(url: str, days: int, events: int, links: int) -> None:
    settings = Settings().model_copy(update={"database_url": url})
    owner, app = create_engine(settings, owner=True), create_engine(settings)
    tenant = await Tenant.create(create_sessionmaker(owner))
    clock = DayEnd()
    nobody = await Client.connect(f"127.0.0.1:{free_port()}", lazy=True)  # pruning needs none
    reconcile = ReconcileActivities(nobody, create_sessionmaker(app), "nobody", clock)
    start, account = utcnow() - timedelta(days=days), str(tenant.account_id)
    print("day  push_event  used_link  pruned (events, links)  prune s")
    for day in range(days):
        at = start + timedelta(days=day)
        async with tenant.owner() as session, session.begin():
            await session.execute(
                text(
                    "INSERT INTO push_event (account_id, kind, payload, dedup_key, created_at) "
                    "SELECT CAST(:account AS uuid), 'rung.fired', jsonb_build_object('n', g), "
                    ":prefix || g, :at FROM generate_series(1, :n) g"
                ),
                {
                    "account": account,
                    "prefix": f"soak:{day}:",
                    "at": at,
                    "n": events,
                },
            )
            await session.execute(
                text(
                    "INSERT INTO used_link (jti, account_id, purpose, user_id, used_at) "
                    "SELECT gen_random_uuid(), CAST(:account AS uuid), 'claim', "
                    "CAST(:user AS uuid), :at FROM generate_series(1, :n)"
                ),
                {
                    "account": account,
                    "user": str(tenant.user("erin")),
                    "at": at,
                    "n": links,
                },
            )
        clock.at = at + timedelta(days=1)
        began = time.monotonic()
        pruned = await ActivityEnvironment().run(reconcile.prune_tables)
        seconds = time.monotonic() - began
        async with tenant.owner() as session:
            counts = (
                await session.execute(
                    text(
                        "SELECT (SELECT count(*) FROM push_event), (SELECT count(*) FROM used_link)"
                    )
                )
            ).one()
        print(
            f"{day + 1:>3}  {counts[0]:>10,}  {counts[1]:>9,}  "
            f"{pruned.push_events:>10,} {pruned.used_links:>8,}  {seconds:>10.2f}"
        )
    await owner.dispose()
    await app.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--links", type=int, default=2_000)
    args = parser.parse_args()
    with database() as url:
        asyncio.run(run(url, args.days, args.events, args.links))


if __name__ == "__main__":
    main()
