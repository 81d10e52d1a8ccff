"""The floor: what the stack itself costs for one rung, with nothing of escalator in it.

`FloorWorkflow` sleeps on one durable timer until its instant, then runs one local activity
that sends one mail to the sink over the same kind of SMTP connection pool the worker uses:
the cheapest way the stack can do a rung's job (escalator's rung, too, fires and sends its
first mails in one local activity, `fire_and_send`). A worker process of its own runs it,
with the same worker settings as escalator's, so a benchmark compares escalator's figure
with this one measured in the same run.

    .venv/bin/python -m bench.floor --address 127.0.0.1:7233 --task-queue q --smtp-port 8025
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from datetime import timedelta
from email.message import EmailMessage

from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.common import RetryPolicy
from temporalio.worker import Worker

with workflow.unsafe.imports_passed_through():
    from activities.smtp import SmtpPool
    from bench.floor_types import FloorInput
    from config import Settings
    from worker import worker_options


@workflow.defn
class FloorWorkflow:
    @workflow.run
    async def run(self, input: FloorInput) -> None:
        await workflow.sleep(max(input.fire_at - workflow.now(), timedelta(0)))
        await workflow.execute_local_activity_method(
            FloorActivities.send_one,
            input,
            start_to_close_timeout=timedelta(seconds=60),
            retry_policy=RetryPolicy(maximum_attempts=5),
        )


class FloorActivities:
    def __init__(self, pool: SmtpPool) -> None:
        self._pool = pool

    @activity.defn
    async def send_one(self, input: FloorInput) -> None:
        message = EmailMessage()
        message["Subject"] = "floor"
        message["From"] = "floor@bench"
        message["To"] = input.to
        message["X-Escalator-Item"] = input.tag
        message.set_content("the floor")
        await self._pool.send(message, sender="floor@bench", recipients=[input.to])


async def main(address: str, task_queue: str, smtp_port: int) -> None:
    settings = Settings(temporal_address=address, task_queue=task_queue, smtp_port=smtp_port)
    client = await Client.connect(address)
    pool = SmtpPool.from_settings(settings)
    worker = Worker(
        client,
        task_queue=task_queue,
        workflows=[FloorWorkflow],
        activities=[FloorActivities(pool).send_one],
        **worker_options(settings),
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    async with worker:
        await stop.wait()
    await pool.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--address", required=True)
    parser.add_argument("--task-queue", required=True)
    parser.add_argument("--smtp-port", type=int, required=True)
    args = parser.parse_args()
    asyncio.run(main(args.address, args.task_queue, args.smtp_port))
