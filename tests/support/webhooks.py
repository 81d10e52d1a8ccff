"""Arranging webhook tests: endpoints written as the owner, and the activities' inputs."""

from __future__ import annotations

import uuid
from typing import Any

from temporalio.testing import ActivityEnvironment

from domain import webhooks as endpoints
from domain.clock import utcnow
from domain.models import WebhookEndpoint
from tests.support.tenants import Tenant
from workflows.webhook_types import PlanWebhooks, SendWebhook

EVENT = "task.reminder"


async def add_endpoint(tenant: Tenant, url: str, **values: Any) -> tuple[str, str]:
    """An endpoint of the tenant's: its id and secret."""
    secret = endpoints.new_secret()
    endpoint = WebhookEndpoint(
        id=uuid.uuid4(), account_id=tenant.account_id, name="Ops", url=url, secret=secret, **values
    )
    async with tenant.owner() as session, session.begin():
        session.add(endpoint)
    return str(endpoint.id), secret


async def endpoint_row(tenant: Tenant, endpoint_id: str) -> WebhookEndpoint:
    async with tenant.owner() as session:
        row = await session.get(WebhookEndpoint, uuid.UUID(endpoint_id))
        assert row is not None
        return row


def plan(tenant: Tenant, item_id: uuid.UUID, event_key: str = EVENT) -> PlanWebhooks:
    return PlanWebhooks(
        item_id=str(item_id),
        account_id=str(tenant.account_id),
        event_key=event_key,
        rung="remind",
        tier=0,
    )


def send(tenant: Tenant, item_id: uuid.UUID, endpoint_id: str, **values: Any) -> SendWebhook:
    fields: dict[str, Any] = {
        "item_id": str(item_id),
        "account_id": str(tenant.account_id),
        "endpoint_id": endpoint_id,
        "event_key": EVENT,
        "rung": "remind",
        "tier": 0,
        "at": utcnow(),
        **values,
    }
    return SendWebhook(**fields)


async def run(activity: Any, request: Any) -> Any:
    return await ActivityEnvironment().run(activity, request)
