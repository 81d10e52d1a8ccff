"""The worker process: builds dependencies, connects to Temporal and runs the Worker on the
one task queue until interrupted."""

from __future__ import annotations

import asyncio
import signal

import structlog
from temporalio.client import Client
from temporalio.worker import Worker

from activities.health import HealthActivities
from config import Settings
from db import create_engine

log = structlog.get_logger()


async def connect(settings: Settings, *, attempts: int = 60) -> Client:
    """Connect, retrying while the server comes up (the dev stack starts both together)."""
    for attempt in range(1, attempts + 1):
        try:
            return await Client.connect(
                settings.temporal_address, namespace=settings.temporal_namespace
            )
        except Exception as error:  # the server is not up yet, or briefly away
            if attempt == attempts:
                raise
            log.warning("temporal.unreachable", attempt=attempt, error=str(error))
            await asyncio.sleep(1.0)
    raise AssertionError("unreachable")


def build_worker(client: Client, settings: Settings) -> Worker:
    engine = create_engine(settings)
    health = HealthActivities(engine)
    return Worker(
        client,
        task_queue=settings.task_queue,
        activities=[health.ping_database],
    )


async def main(settings: Settings) -> None:
    client = await connect(settings)
    worker = build_worker(client, settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    async with worker:
        log.info("worker.ready", task_queue=settings.task_queue, temporal=settings.temporal_address)
        await stop.wait()
    log.info("worker.stopped")


if __name__ == "__main__":
    asyncio.run(main(Settings()))
