"""The webhook activities against real Postgres and a real HTTP receiver that verifies every
Standard Webhooks signature: signed payloads in both formats, a rotation's two secrets, at
most one POST per delivery key, only to matching endpoints, and none after a claim.
(Failures: test_webhook_failures.py.)"""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import timedelta

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from activities.webhook import WebhookActivities
from db import tenant_session
from domain import lifecycle
from domain import webhooks as endpoints
from domain.clock import utcnow
from domain.models import Delivery, WebhookEndpoint
from tests.support.tenants import Tenant
from tests.support.webhook_receiver import WebhookReceiver
from tests.support.webhooks import EVENT, add_endpoint, plan, run, send


async def test_a_signed_webhook_is_sent_once_and_recorded(
    tenant: Tenant, webhooks: WebhookActivities, webhook_receiver: WebhookReceiver
) -> None:
    item_id = await tenant.add_item(due_at=utcnow() + timedelta(days=1), title="Pump leaks")
    endpoint_id, secret = await add_endpoint(tenant, webhook_receiver.url)
    webhook_receiver.secrets = [secret]
    async with tenant.owner() as session, session.begin():  # the rung's mail, to Ada
        session.add(
            Delivery(
                account_id=tenant.account_id,
                item_id=item_id,
                recipient_id=tenant.user("ada"),
                event_key=EVENT,
                channel="email",
                status="sent",
                resolver_rank=0,
            )
        )

    assert await run(webhooks.plan_webhooks, plan(tenant, item_id)) == [endpoint_id]
    request = send(tenant, item_id, endpoint_id)
    first = await run(webhooks.send_webhook, request)
    again = await run(webhooks.send_webhook, request)  # a retry after success

    assert (first.status, first.response_code, first.attempts) == ("sent", 200, 1)
    assert (again.status, again.sent_at) == ("sent", first.sent_at)
    [got] = webhook_receiver.requests
    assert got.verified_with == [secret]
    [delivery] = [d for d in await tenant.deliveries(item_id) if d.channel == "webhook"]
    assert (delivery.status, delivery.attempts, delivery.response_code) == ("sent", 1, 200)
    assert (delivery.endpoint_id, delivery.recipient_id, delivery.channel) == (
        uuid.UUID(endpoint_id),
        None,
        "webhook",
    )
    assert got.headers["webhook-id"] == str(delivery.id)  # stable: receivers dedup on it
    assert got.headers["content-type"] == "application/json"
    body = got.json
    assert (body["type"], body["timestamp"]) == (EVENT, request.at.isoformat())
    assert body["data"] == {
        "id": str(item_id),
        "kind": "task",
        "item_type": "CAPA",
        "title": "Pump leaks",
        "state": "open",
        "rung": "remind",
        "tier": 0,
        "due_at": (await tenant.item(item_id)).due_at.isoformat(),  # type: ignore[union-attr]
        "assignee": {"id": str(tenant.user("erin")), "name": "Erin Engineer"},
        "notified": [{"id": str(tenant.user("ada")), "name": "Ada Admin", "status": "sent"}],
        "url": f"http://escalator.test/items/{item_id}",
    }
    assert await run(webhooks.plan_webhooks, plan(tenant, item_id)) == []  # final: nothing left


async def test_during_a_rotation_both_secrets_verify_and_after_it_only_the_new(
    tenant: Tenant, webhooks: WebhookActivities, webhook_receiver: WebhookReceiver
) -> None:
    item_id = await tenant.add_item(due_at=utcnow() + timedelta(days=1))
    endpoint_id, old = await add_endpoint(tenant, webhook_receiver.url)
    async with tenant.owner() as session, session.begin():
        rotated = await endpoints.rotate_secret(
            session,
            tenant.account_id,
            uuid.UUID(endpoint_id),
            actor_id=tenant.user("ada"),
            now=utcnow(),
        )
        new = rotated.secret
    webhook_receiver.secrets = [old, new]

    await run(webhooks.send_webhook, send(tenant, item_id, endpoint_id))
    async with tenant.owner() as session, session.begin():  # the grace period ends
        await session.execute(
            update(WebhookEndpoint)
            .where(WebhookEndpoint.id == uuid.UUID(endpoint_id))
            .values(previous_secret_until=utcnow() - timedelta(seconds=1))
        )
    await run(webhooks.send_webhook, send(tenant, item_id, endpoint_id, event_key="task.late"))

    during, after = webhook_receiver.requests
    assert new != old
    assert sorted(during.verified_with) == sorted([old, new])
    assert len(during.signatures) == 2
    assert after.verified_with == [new]
    assert len(after.signatures) == 1


async def test_no_webhook_once_a_claim_has_committed(
    tenant: Tenant,
    webhooks: WebhookActivities,
    webhook_receiver: WebhookReceiver,
    app_sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    item_id = await tenant.add_item(due_at=utcnow() + timedelta(days=1))
    endpoint_id, _ = await add_endpoint(tenant, webhook_receiver.url)
    assert await run(webhooks.plan_webhooks, plan(tenant, item_id)) == [endpoint_id]
    async with tenant_session(app_sessionmaker, tenant.account_id) as session:
        await lifecycle.claim(session, tenant.account_id, item_id, tenant.user("emil"), utcnow())

    outcome = await run(webhooks.send_webhook, send(tenant, item_id, endpoint_id))

    assert (outcome.status, outcome.error) == ("suppressed", "not sent: the item is claimed")
    assert webhook_receiver.requests == []
    delivery, claimed = await tenant.deliveries(item_id)  # the rung's, then the claim's own
    assert (delivery.status, delivery.attempts) == ("suppressed", 0)
    assert (claimed.event_key, claimed.status) == ("item.claimed@2", "pending")


async def test_a_claim_racing_a_send_waits_for_the_post_to_be_answered(
    tenant: Tenant,
    webhooks: WebhookActivities,
    webhook_receiver: WebhookReceiver,
    app_sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    item_id = await tenant.add_item(due_at=utcnow() + timedelta(days=1))
    endpoint_id, _ = await add_endpoint(tenant, webhook_receiver.url)
    webhook_receiver.delay = 0.6
    sending = asyncio.create_task(run(webhooks.send_webhook, send(tenant, item_id, endpoint_id)))
    await asyncio.sleep(0.3)  # the send holds the item's share lock inside its POST
    async with tenant_session(app_sessionmaker, tenant.account_id) as session:
        await lifecycle.claim(session, tenant.account_id, item_id, tenant.user("emil"), utcnow())
    claim_committed = time.monotonic()

    assert (await sending).status == "sent"
    [got] = webhook_receiver.requests
    assert got.answered_at is not None
    assert got.answered_at < claim_committed


async def test_a_send_racing_an_uncommitted_claim_waits_and_then_sends_nothing(
    tenant: Tenant,
    webhooks: WebhookActivities,
    webhook_receiver: WebhookReceiver,
    app_sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    item_id = await tenant.add_item(due_at=utcnow() + timedelta(days=1))
    endpoint_id, _ = await add_endpoint(tenant, webhook_receiver.url)
    async with tenant_session(app_sessionmaker, tenant.account_id) as session:
        await lifecycle.claim(session, tenant.account_id, item_id, tenant.user("emil"), utcnow())
        sending = asyncio.create_task(
            run(webhooks.send_webhook, send(tenant, item_id, endpoint_id))
        )
        await asyncio.sleep(0.4)
        assert not sending.done(), "the send must wait for the claim's transaction"
    assert (await sending).status == "suppressed"
    assert webhook_receiver.requests == []


async def test_only_matching_enabled_endpoints_get_a_row(
    tenant: Tenant, webhooks: WebhookActivities, webhook_receiver: WebhookReceiver
) -> None:
    item_id = await tenant.add_item(due_at=utcnow() + timedelta(days=1))
    url = webhook_receiver.url
    tasks, _ = await add_endpoint(tenant, url, event_filter=["task.*"])
    everything, _ = await add_endpoint(tenant, url, event_filter=[])
    await add_endpoint(tenant, url, event_filter=["handoff.*", "task.escalated"])
    await add_endpoint(tenant, url, enabled=False)
    await add_endpoint(tenant, url, deleted_at=utcnow())
    other = await Tenant.create(tenant.owner)
    await add_endpoint(other, url)

    planned = await run(webhooks.plan_webhooks, plan(tenant, item_id))
    again = await run(webhooks.plan_webhooks, plan(tenant, item_id))  # idempotent

    assert planned == again == sorted([tasks, everything])
    rows = await tenant.deliveries(item_id)
    assert sorted(str(r.endpoint_id) for r in rows) == planned
    assert {r.status for r in rows} == {"pending"}


async def test_a_slack_endpoint_gets_a_slack_message(
    tenant: Tenant, webhooks: WebhookActivities, webhook_receiver: WebhookReceiver
) -> None:
    item_id = await tenant.add_item(due_at=utcnow() + timedelta(days=1), title="Valve <V-7> & co")
    endpoint_id, secret = await add_endpoint(tenant, webhook_receiver.url, format="slack")
    webhook_receiver.secrets = [secret]

    await run(webhooks.send_webhook, send(tenant, item_id, endpoint_id))

    [got] = webhook_receiver.requests
    assert got.verified_with == [secret]
    body = got.json
    assert set(body) == {"text", "blocks"}
    assert body["text"] == "Reminder: Valve &lt;V-7&gt; &amp; co"
    section = body["blocks"][0]
    assert (section["type"], section["text"]["type"]) == ("section", "mrkdwn")
    link = f"<http://escalator.test/items/{item_id}|Valve &lt;V-7&gt; &amp; co>"
    assert link in section["text"]["text"]
    assert "remind (tier 0)" in body["blocks"][1]["elements"][0]["text"]
