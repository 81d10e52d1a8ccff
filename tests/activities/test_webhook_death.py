"""A worker that dies in the middle of a webhook POST: the attempt is on the record, the
retry sends again with the same `webhook-id` (so the receiver can tell), and the row says
the first outcome is unknown. The webhook twin of RFC 1047's honest limit for mail."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import timedelta

from activities.webhook import UNKNOWN_OUTCOME, WebhookActivities
from domain.clock import utcnow
from tests.support.tenants import Tenant
from tests.support.webhook_receiver import WebhookReceiver
from tests.support.webhooks import add_endpoint, run, send


async def test_a_post_cut_off_mid_flight_is_sent_again_once_and_says_so(
    tenant: Tenant, webhooks: WebhookActivities, webhook_receiver: WebhookReceiver
) -> None:
    item_id = await tenant.add_item(due_at=utcnow() + timedelta(days=1))
    endpoint_id, _ = await add_endpoint(tenant, webhook_receiver.url)
    webhook_receiver.delay = 0.5
    dying = asyncio.create_task(run(webhooks.send_webhook, send(tenant, item_id, endpoint_id)))
    for _ in range(200):  # until the POST is out (its answer is not yet back)
        if webhook_receiver.requests:
            break
        await asyncio.sleep(0.01)
    assert webhook_receiver.requests, "the POST never went out"
    dying.cancel()  # the worker is gone: its open transaction rolls back, nothing more
    with contextlib.suppress(asyncio.CancelledError):
        await dying
    [row] = await tenant.deliveries(item_id)
    assert (row.status, row.attempts) == ("sending", 1)  # the attempt survived the death

    webhook_receiver.delay = 0.0
    outcome = await run(webhooks.send_webhook, send(tenant, item_id, endpoint_id))
    again = await run(webhooks.send_webhook, send(tenant, item_id, endpoint_id))

    assert (outcome.status, again.status) == ("sent", "sent")
    [row] = await tenant.deliveries(item_id)
    assert (row.status, row.attempts, row.response_code) == ("sent", 2, 200)
    assert row.last_error == UNKNOWN_OUTCOME
    assert len(webhook_receiver.requests) == 2  # the retry after success sent nothing
    assert {r.headers["webhook-id"] for r in webhook_receiver.requests} == {str(row.id)}
