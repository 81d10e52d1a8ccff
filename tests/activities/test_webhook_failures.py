"""Webhooks that fail, against a real HTTP receiver: every attempt is on the record before
a retryable error is raised, permanent answers fail at once, and an endpoint that answers
410 or keeps failing is disabled, audited."""

from __future__ import annotations

import time
import uuid
from datetime import datetime, timedelta

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.exceptions import ApplicationError

from activities.webhook import WebhookActivities
from domain.clock import utcnow
from mailsink import free_port
from tests.support.tenants import Tenant
from tests.support.webhook_receiver import WebhookReceiver
from tests.support.webhooks import EVENT, add_endpoint, endpoint_row, plan, run, send
from workflows.webhook_types import WebhookFailure


async def test_a_5xx_records_the_attempt_and_raises_for_a_retry(
    tenant: Tenant, webhooks: WebhookActivities, webhook_receiver: WebhookReceiver
) -> None:
    item_id = await tenant.add_item(due_at=utcnow() + timedelta(days=1))
    endpoint_id, _ = await add_endpoint(tenant, webhook_receiver.url)
    webhook_receiver.status = 503
    request = send(tenant, item_id, endpoint_id)

    with pytest.raises(ApplicationError, match="will retry") as raised:
        await run(webhooks.send_webhook, request)

    assert not raised.value.non_retryable
    [delivery] = await tenant.deliveries(item_id)
    assert (delivery.status, delivery.attempts, delivery.response_code) == ("pending", 1, 503)
    assert delivery.last_error == "HTTP 503 Service Unavailable"
    assert (await endpoint_row(tenant, endpoint_id)).consecutive_failures == 1

    webhook_receiver.status = 200  # the retry gets through
    outcome = await run(webhooks.send_webhook, request)
    assert (outcome.status, outcome.attempts) == ("sent", 2)
    assert len(webhook_receiver.requests) == 2
    first, second = webhook_receiver.requests
    assert first.headers["webhook-id"] == second.headers["webhook-id"]
    assert (await endpoint_row(tenant, endpoint_id)).consecutive_failures == 0


async def test_a_429_asks_temporal_to_wait_its_retry_after(
    tenant: Tenant, webhooks: WebhookActivities, webhook_receiver: WebhookReceiver
) -> None:
    item_id = await tenant.add_item(due_at=utcnow() + timedelta(days=1))
    endpoint_id, _ = await add_endpoint(tenant, webhook_receiver.url)
    webhook_receiver.status, webhook_receiver.headers = 429, {"Retry-After": "7"}

    with pytest.raises(ApplicationError) as raised:
        await run(webhooks.send_webhook, send(tenant, item_id, endpoint_id))

    assert raised.value.next_retry_delay == timedelta(seconds=7)
    [delivery] = await tenant.deliveries(item_id)
    assert (delivery.status, delivery.response_code) == ("pending", 429)


async def test_timeouts_and_refused_connections_are_retried_without_a_code(
    tenant: Tenant, webhooks: WebhookActivities, webhook_receiver: WebhookReceiver
) -> None:
    slow_item = await tenant.add_item(due_at=utcnow() + timedelta(days=1))
    dead_item = await tenant.add_item(due_at=utcnow() + timedelta(days=1))
    slow, _ = await add_endpoint(tenant, webhook_receiver.url)
    dead, _ = await add_endpoint(tenant, f"http://127.0.0.1:{free_port()}/hook")
    webhook_receiver.delay = 3.0

    started = time.monotonic()
    with pytest.raises(ApplicationError, match="no answer within 1 s"):
        await run(webhooks.send_webhook, send(tenant, slow_item, slow))
    assert time.monotonic() - started < 2.5
    with pytest.raises(ApplicationError, match="connection failed"):  # coarse: no detail
        await run(webhooks.send_webhook, send(tenant, dead_item, dead))

    for item_id in (slow_item, dead_item):
        [delivery] = await tenant.deliveries(item_id)
        assert (delivery.status, delivery.attempts, delivery.response_code) == ("pending", 1, None)


async def test_a_410_disables_the_endpoint_audited_without_raising(
    tenant: Tenant, webhooks: WebhookActivities, webhook_receiver: WebhookReceiver
) -> None:
    item_id = await tenant.add_item(due_at=utcnow() + timedelta(days=1))
    endpoint_id, _ = await add_endpoint(tenant, webhook_receiver.url)
    webhook_receiver.status = 410

    outcome = await run(webhooks.send_webhook, send(tenant, item_id, endpoint_id))

    assert (outcome.status, outcome.response_code, outcome.endpoint_disabled) == (
        "failed",
        410,
        True,
    )
    endpoint = await endpoint_row(tenant, endpoint_id)
    assert (endpoint.enabled, endpoint.disabled_reason) == (False, "410 Gone")
    assert endpoint.disabled_at is not None
    assert {("webhook_endpoint_disabled", 0), ("delivery_failed", 0)} <= set(
        await tenant.audit(item_id)
    )
    # Disabled: never planned again, and a send already planned is failed (it was needed
    # and did not go out); `suppressed` keeps its one meaning, the item stopped being open.
    assert await run(webhooks.plan_webhooks, plan(tenant, item_id, "task.escalated")) == []
    late = await run(
        webhooks.send_webhook, send(tenant, item_id, endpoint_id, event_key="task.other")
    )
    assert (late.status, late.error) == (
        "failed",
        "not sent: the endpoint is disabled (410 Gone)",
    )
    assert len(webhook_receiver.requests) == 1


async def test_other_4xx_fail_at_once_and_count_as_failures(
    tenant: Tenant, webhooks: WebhookActivities, webhook_receiver: WebhookReceiver
) -> None:
    item_id = await tenant.add_item(due_at=utcnow() + timedelta(days=1))
    endpoint_id, _ = await add_endpoint(tenant, webhook_receiver.url)
    webhook_receiver.status = 400

    outcome = await run(webhooks.send_webhook, send(tenant, item_id, endpoint_id))

    assert (outcome.status, outcome.response_code, outcome.endpoint_disabled) == (
        "failed",
        400,
        False,
    )
    assert ("delivery_failed", 0) in await tenant.audit(item_id)
    endpoint = await endpoint_row(tenant, endpoint_id)
    assert (endpoint.enabled, endpoint.consecutive_failures) == (True, 1)


class Moving:
    """A clock the test moves."""

    def __init__(self) -> None:
        self.at = utcnow()

    def now(self) -> datetime:
        return self.at


async def test_a_burst_of_failures_never_disables_a_day_without_success_does(
    tenant: Tenant,
    webhooks: WebhookActivities,
    webhook_receiver: WebhookReceiver,
    app_sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    """At least 3 failures here, and a day with no success in between: a burst of five
    failures stays enabled, a success starts the day again, and only failures a day after
    the first of an unbroken run disable it."""
    clock = Moving()
    hooks = WebhookActivities(
        app_sessionmaker,
        base_url="http://escalator.test",
        timeout_seconds=1.0,
        disable_after=3,
        disable_window=timedelta(days=1),
        clock=clock,
        allow_private=True,
    )
    items = [await tenant.add_item(due_at=utcnow() + timedelta(days=1)) for _ in range(8)]
    endpoint_id, _ = await add_endpoint(tenant, webhook_receiver.url)

    async def post(item_id: uuid.UUID) -> None:
        with pytest.raises(ApplicationError):
            await run(hooks.send_webhook, send(tenant, item_id, endpoint_id))

    webhook_receiver.status = 500
    for item_id in items[:5]:  # a 09:00 burst during a receiver's blip
        await post(item_id)
    endpoint = await endpoint_row(tenant, endpoint_id)
    assert (endpoint.enabled, endpoint.consecutive_failures) == (True, 5)
    assert endpoint.failing_since == clock.at

    clock.at += timedelta(hours=20)
    webhook_receiver.status = 200
    sent = await run(hooks.send_webhook, send(tenant, items[5], endpoint_id))
    assert sent.status == "sent"
    endpoint = await endpoint_row(tenant, endpoint_id)
    assert (endpoint.consecutive_failures, endpoint.failing_since) == (0, None)

    webhook_receiver.status = 500
    clock.at += timedelta(hours=10)  # 30 h after the first failure, 10 h after a success
    await post(items[6])
    assert (await endpoint_row(tenant, endpoint_id)).enabled

    clock.at += timedelta(days=1, minutes=1)  # an unbroken day of failures, and 3 of them
    await post(items[6])  # its retry: the second
    outcome = await run(hooks.send_webhook, send(tenant, items[7], endpoint_id))
    assert (outcome.status, outcome.endpoint_disabled) == ("failed", True)
    endpoint = await endpoint_row(tenant, endpoint_id)
    assert not endpoint.enabled
    assert endpoint.disabled_reason is not None
    assert endpoint.disabled_reason.startswith("3 failures in a row, none sent since")
    assert ("webhook_endpoint_disabled", 0) in await tenant.audit(items[7])


async def test_exhausted_retries_are_recorded_failed_once(
    tenant: Tenant, webhooks: WebhookActivities, webhook_receiver: WebhookReceiver
) -> None:
    item_id = await tenant.add_item(due_at=utcnow() + timedelta(days=1))
    endpoint_id, _ = await add_endpoint(tenant, webhook_receiver.url)
    webhook_receiver.status = 502
    with pytest.raises(ApplicationError):
        await run(webhooks.send_webhook, send(tenant, item_id, endpoint_id))
    failure = WebhookFailure(
        item_id=str(item_id),
        account_id=str(tenant.account_id),
        endpoint_id=endpoint_id,
        event_key=EVENT,
        error="HTTP 502 Bad Gateway (retries exhausted)",
        tier=0,
    )

    await run(webhooks.record_webhook_failure, failure)
    await run(webhooks.record_webhook_failure, failure)

    [delivery] = await tenant.deliveries(item_id)
    assert (delivery.status, delivery.last_error, delivery.response_code) == (
        "failed",
        failure.error,
        502,
    )
    assert (await tenant.audit(item_id)).count(("delivery_failed", 0)) == 1
