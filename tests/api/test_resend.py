"""An admin sends a failed or suppressed webhook delivery again (issue 22 item 6): the same
delivery (the same webhook-id), POSTed by the worker with the first time's retries; refused
with the reason when it cannot help."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

from sqlalchemy import update

from domain.clock import utcnow
from domain.models import Delivery, WebhookEndpoint
from tests.api.conftest import Api
from tests.support.errors import error
from tests.support.tenants import Tenant
from tests.support.webhook_receiver import WebhookReceiver
from tests.support.webhooks import add_endpoint, endpoint_row
from tests.workflows.conftest import save_history


async def failed_delivery(tenant: Tenant, item_id: uuid.UUID, endpoint_id: str) -> uuid.UUID:
    row = Delivery(
        id=uuid.uuid4(),
        account_id=tenant.account_id,
        item_id=item_id,
        endpoint_id=uuid.UUID(endpoint_id),
        event_key="task.escalated",
        channel="webhook",
        status="failed",
        attempts=30,
        last_error="HTTP 503",
    )
    async with tenant.owner() as session, session.begin():
        session.add(row)
    return row.id


async def test_a_failed_delivery_is_sent_again_with_its_webhook_id(
    api: Api, tenant: Tenant
) -> None:
    with WebhookReceiver() as receiver:
        endpoint_id, _ = await add_endpoint(tenant, receiver.url)
        item_id = await tenant.add_item(due_at=utcnow() + timedelta(days=5))
        delivery_id = await failed_delivery(tenant, item_id, endpoint_id)
        ada = api.headers(tenant, "ada")
        url = f"/v1/webhooks/{endpoint_id}/deliveries/{delivery_id}/resend"

        refused = await api.client.post(url, headers=api.headers(tenant, "emil"))
        assert error(refused, 403)["code"] == "forbidden"
        again = await api.client.post(url, headers=ada)
        assert again.status_code == 202, again.text
        assert again.json()["workflow"] == "started"
        for _ in range(200):
            if receiver.requests:
                break
            await asyncio.sleep(0.05)
        [got] = receiver.requests
        assert got.headers["webhook-id"] == str(delivery_id)  # the same delivery
        assert got.json["type"] == "task.escalated"
        for _ in range(100):
            [row] = await tenant.deliveries(item_id)
            if row.status == "sent":
                break
            await asyncio.sleep(0.05)
        assert row.status == "sent"
        assert ("delivery_resent", None) in await tenant.audit(item_id)
        client = api.app.state.temporal.client
        [started] = [
            w async for w in client.list_workflows(f'WorkflowId STARTS_WITH "resend-{delivery_id}"')
        ]
        await save_history(client.get_workflow_handle(started.id), "webhook_resent")

        sent = await api.client.post(url, headers=ada)  # nothing to do for a sent one
        assert "this one is sent" in error(sent, 409)["message"]


async def test_a_resend_that_cannot_help_says_why(api: Api, tenant: Tenant) -> None:
    endpoint_id, _ = await add_endpoint(tenant, "http://127.0.0.1:9/")
    item_id = await tenant.add_item(due_at=utcnow() + timedelta(days=5))
    delivery_id = await failed_delivery(tenant, item_id, endpoint_id)
    ada = api.headers(tenant, "ada")
    url = f"/v1/webhooks/{endpoint_id}/deliveries/{delivery_id}/resend"
    async with tenant.owner() as session, session.begin():
        await session.execute(
            update(WebhookEndpoint)
            .where(WebhookEndpoint.id == uuid.UUID(endpoint_id))
            .values(enabled=False, disabled_reason="410 Gone")
        )
    assert "enable it first" in error(await api.client.post(url, headers=ada), 409)["message"]
    assert not (await endpoint_row(tenant, endpoint_id)).enabled
    missing = await api.client.post(
        f"/v1/webhooks/{endpoint_id}/deliveries/{uuid.uuid4()}/resend", headers=ada
    )
    assert error(missing, 404)["code"] == "not_found"
    [row] = await tenant.deliveries(item_id)
    assert row.status == "failed"  # nothing changed
