"""Whether `POST /v1/auth/sign-in-link` tells, by its time, who has an account.

One API process (uvicorn, as production runs it) on a dev server and a scratch database;
the requests alternate between addresses that belong to active users and addresses nobody
has, one at a time. Prints each side's median and p90 and how many requests the best single
threshold on the answer time sorts into the right side (50 % is a coin; issue 21 measured
43 of 45 when the mail was sent before the answer).

    .venv/bin/python bench/sign_in_timing.py [--pairs 200]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.support import database, dev_server, percentile, start_api, wait_healthy  # noqa: E402
from config import Settings  # noqa: E402
from db import create_engine, create_sessionmaker  # noqa: E402
from mailsink import free_port  # noqa: E402
from tests.support.tenants import Tenant  # noqa: E402


def best_threshold_accuracy(known: list[float], unknown: list[float]) -> float:
    """The share of requests the best "slower than t means known" (or faster) rule gets right."""
    labelled = sorted([(t, 1) for t in known] + [(t, 0) for t in unknown])
    total, best = len(labelled), 0
    ones_below = 0
    for index, (_, label) in enumerate(labelled, start=1):
        ones_below += label
        zeros_below = index - ones_below
        right = zeros_below + (len(known) - ones_below)  # below: unknown, above: known
        best = max(best, right, total - right)
    return best / total


async def run(url: str, pairs: int) -> None:
    env = await dev_server()
    try:
        settings = Settings().model_copy(update={"database_url": url})
        engine = create_engine(settings, owner=True)
        tenant = await Tenant.create(create_sessionmaker(engine))
        await engine.dispose()
        port = free_port()
        api = start_api(
            port,
            {
                "DATABASE_URL": url,
                "ESCALATOR_TEMPORAL_ADDRESS": env.client.service_client.config.target_host,
                "ESCALATOR_SIGN_IN_REQUESTS_PER_WINDOW": str(pairs + 10),
            },
            *("--log-level", "warning", "--no-access-log"),
        )
        try:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
                await wait_healthy(http, temporal=True)
                known: list[float] = []
                unknown: list[float] = []
                members = ["otto", "ada", "erin", "emil", "vera"]
                for n in range(pairs + 10):
                    for side, address in (
                        (known, tenant.email(members[n % len(members)])),
                        (unknown, f"nobody{n}@{tenant.slug}.escalator.test"),
                    ):
                        began = time.perf_counter()
                        answered = await http.post("/v1/auth/sign-in-link", json={"email": address})
                        took = time.perf_counter() - began
                        assert answered.status_code == 202, answered.text
                        if n >= 10:  # the first ten pairs warm up
                            side.append(took * 1000)
        finally:
            api.terminate()
            api.wait(timeout=10)
    finally:
        await env.shutdown()
    for name, times in (("known", known), ("unknown", unknown)):
        print(
            f"{name:>8}: median {statistics.median(times):6.2f} ms, "
            f"p90 {percentile(times, 0.9):6.2f} ms over {len(times)} requests"
        )
    accuracy = best_threshold_accuracy(known, unknown)
    print(f"best threshold tells {accuracy:.1%} of requests apart (50% is a coin)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=200)
    with database() as url:
        asyncio.run(run(url, parser.parse_args().pairs))


if __name__ == "__main__":
    main()
