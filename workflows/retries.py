"""How long each kind of activity may take and how it is retried (workflow code: imported
passed-through by the workflow modules)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy

# A database step: retried until Postgres answers (a step is idempotent by its key).
DB_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=30)
)
DB_STEP_TIMEOUT = timedelta(seconds=15)
# A bulk re-plan's batch (`replan_batch`): up to 100 items locked (each lock may wait up to
# the database's lock timeout behind a claim) and planned twice each.
REPLAN_BATCH_TIMEOUT = timedelta(minutes=1)
# `fire_and_send`: the rung's transaction and up to `LOCAL_SENDS` mails. The mails it has no
# time left for come back `later` and go out in `send_emails`, so this bounds, never cuts.
LOCAL_SEND_TIMEOUT = timedelta(minutes=1)

# A rung's mails: transient SMTP errors are outcomes of `send_emails`, retried by the
# workflow after a durable backoff on this schedule; the activity itself is retried (a dead
# worker, a lost heartbeat) with the same policy.
SMTP_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=2),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=5),
    maximum_attempts=20,
)
BATCH = 500  # recipients per `send_emails` (its payload stays far below Temporal's limit)
BATCH_TIMEOUT = timedelta(minutes=15)  # mails not started in time come back `later`
SEND_HEARTBEAT = timedelta(seconds=10)

# A webhook POST: Temporal retries a 5xx, 408, 429 or timeout with backoff for about a day
# (a receiver's Retry-After sets the next delay); each attempt is on its delivery row.
WEBHOOK_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=5),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(hours=1),
    maximum_attempts=30,
)
WEBHOOK_TIMEOUT = timedelta(seconds=60)  # one attempt: the POST's own timeout is seconds

ActivitySelf = TypeVar("ActivitySelf")
Arg = TypeVar("Arg")
Result = TypeVar("Result")


async def db_step(
    method: Callable[[ActivitySelf, Arg], Awaitable[Result]],
    arg: Arg,
    allowed: timedelta = DB_STEP_TIMEOUT,
) -> Result:
    """A short activity, run locally (no server round trip per step): a DB step, or a
    rung's fire and its few mails (`fire_and_send`)."""
    return await workflow.execute_local_activity_method(
        method, arg, start_to_close_timeout=allowed, retry_policy=DB_RETRY
    )


def smtp_backoff(attempt: int) -> timedelta:
    """SMTP_RETRY's delay before attempt `attempt + 1` of the recipients sent again."""
    seconds = SMTP_RETRY.initial_interval.total_seconds() * SMTP_RETRY.backoff_coefficient ** (
        attempt - 1
    )
    return min(timedelta(seconds=seconds), SMTP_RETRY.maximum_interval or timedelta(minutes=5))
