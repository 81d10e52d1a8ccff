"""Webhook endpoints (Standard Webhooks): admins and owners only, since they hold secrets.

A rung whose policy lists the `webhook` channel posts to every enabled endpoint of the
account whose `event_filter` matches its event key, signed with the endpoint's secret
(`webhook-id`, `webhook-timestamp`, `webhook-signature`). The secret is shown once, in the
answer to the create or to a rotation. An endpoint that answers 410, or fails too many
times in a row, is disabled (with the reason, audited); `PATCH {"enabled": true}` turns it
back on. A deleted endpoint is 404 and receives nothing more.
"""

from __future__ import annotations

import uuid
from typing import Any, Literal

from fastapi import APIRouter, Query, Response, status
from pydantic import BaseModel, Field

from api.auth import Admin
from api.deps import SettingsDep, TemporalDep, UnitOfWork, UowDep
from api.errors import ErrorResponse
from api.webhook_schemas import (
    WebhookCreate,
    WebhookDeliveryOut,
    WebhookOut,
    WebhookPatch,
    WebhookSecretOut,
)
from domain import webhooks
from domain.clock import utcnow
from domain.models import WebhookEndpoint
from workflows.starts import start_resend
from workflows.webhook_types import SendWebhook

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"])
_ERROR = {"model": ErrorResponse}
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: _ERROR}
WRITE: dict[int | str, dict[str, Any]] = {400: _ERROR, 403: _ERROR, 404: _ERROR}


async def _out(uow: UnitOfWork, endpoint: WebhookEndpoint) -> WebhookOut:
    last = await webhooks.last_deliveries(uow.session, uow.principal.account_id, [endpoint.id])
    return WebhookOut.of(endpoint, last.get(endpoint.id), utcnow())


@router.get("", response_model=list[WebhookOut], summary="Webhook endpoints")
async def list_webhooks(uow: UowDep, principal: Admin) -> list[WebhookOut]:
    """Deleted endpoints are left out. No secrets."""
    found = await webhooks.list_endpoints(uow.session, principal.account_id)
    last = await webhooks.last_deliveries(uow.session, principal.account_id, [e.id for e in found])
    now = utcnow()
    return [WebhookOut.of(e, last.get(e.id), now) for e in found]


@router.post(
    "",
    response_model=WebhookSecretOut,
    status_code=status.HTTP_201_CREATED,
    responses=WRITE,
    summary="Create a webhook endpoint",
)
async def create_webhook(
    body: WebhookCreate, uow: UowDep, principal: Admin, settings: SettingsDep
) -> WebhookSecretOut:
    """The answer holds the signing secret; it is never shown again (rotate to get a new
    one). The URL must be http(s) with a host, and in `prod` a public one."""
    endpoint = await webhooks.create_endpoint(
        uow.session,
        principal.account_id,
        actor_id=principal.user_id,
        values=body.model_dump(),
        allow_private=settings.webhooks_reach_private,
    )
    return WebhookSecretOut.with_secret(endpoint, utcnow())


@router.get(
    "/{webhook_id}", response_model=WebhookOut, responses=NOT_FOUND, summary="A webhook endpoint"
)
async def get_webhook(webhook_id: uuid.UUID, uow: UowDep, principal: Admin) -> WebhookOut:
    endpoint = await webhooks.get_endpoint(uow.session, principal.account_id, webhook_id)
    return await _out(uow, endpoint)


@router.patch(
    "/{webhook_id}",
    response_model=WebhookOut,
    responses=WRITE,
    summary="Change a webhook endpoint",
)
async def patch_webhook(
    webhook_id: uuid.UUID,
    body: WebhookPatch,
    uow: UowDep,
    principal: Admin,
    settings: SettingsDep,
) -> WebhookOut:
    """Only the fields sent change. `enabled: true` re-enables a disabled endpoint and
    resets its failure count; `enabled: false` stops it receiving."""
    endpoint = await webhooks.update_endpoint(
        uow.session,
        principal.account_id,
        webhook_id,
        actor_id=principal.user_id,
        changes=body.model_dump(exclude_unset=True),
        now=utcnow(),
        allow_private=settings.webhooks_reach_private,
    )
    return await _out(uow, endpoint)


@router.post(
    "/{webhook_id}/rotate-secret",
    response_model=WebhookSecretOut,
    responses=WRITE,
    summary="Rotate a webhook endpoint's secret",
)
async def rotate_webhook_secret(
    webhook_id: uuid.UUID, uow: UowDep, principal: Admin
) -> WebhookSecretOut:
    """A new secret, shown once. For 24 hours every request is signed with both the old
    and the new secret, so the receiver can switch without missing a delivery."""
    now = utcnow()
    endpoint = await webhooks.rotate_secret(
        uow.session, principal.account_id, webhook_id, actor_id=principal.user_id, now=now
    )
    return WebhookSecretOut.with_secret(endpoint, now)


@router.delete(
    "/{webhook_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=WRITE,
    summary="Delete a webhook endpoint (soft)",
)
async def delete_webhook(webhook_id: uuid.UUID, uow: UowDep, principal: Admin) -> None:
    """It receives nothing more and is gone from this API (404); the deliveries made to it
    stay on their items."""
    await webhooks.delete_endpoint(
        uow.session, principal.account_id, webhook_id, actor_id=principal.user_id, now=utcnow()
    )


class ResendOut(BaseModel):
    delivery_id: uuid.UUID
    status: Literal["pending"] = "pending"
    workflow: Literal["started", "pending"] = Field(
        description="pending: Temporal was unreachable; ask again"
    )


@router.post(
    "/{webhook_id}/deliveries/{delivery_id}/resend",
    response_model=ResendOut,
    status_code=status.HTTP_202_ACCEPTED,
    responses=WRITE,
    summary="Send a failed or suppressed delivery again",
)
async def resend_delivery(
    webhook_id: uuid.UUID,
    delivery_id: uuid.UUID,
    uow: UowDep,
    principal: Admin,
    settings: SettingsDep,
    temporal: TemporalDep,
) -> ResendOut:
    """The same delivery (the same `webhook-id`), POSTed again with the same retries as the
    first time. 409 unless it is `failed` or `suppressed`, its endpoint is enabled and its
    item still open."""
    again = await webhooks.resend(
        uow.session, principal.account_id, webhook_id, delivery_id, actor_id=principal.user_id
    )
    request = SendWebhook(
        item_id=str(again.item_id),
        account_id=str(principal.account_id),
        endpoint_id=str(again.endpoint_id),
        event_key=again.event_key,
        rung=again.rung,
        tier=again.tier,
        at=utcnow(),
    )
    await uow.commit()  # the row is pending before its POST can start
    started = await start_resend(
        temporal, settings.task_queue, request, f"resend-{delivery_id}-{uuid.uuid4().hex[:8]}"
    )
    return ResendOut(delivery_id=delivery_id, workflow="started" if started else "pending")


@router.get(
    "/{webhook_id}/deliveries",
    response_model=list[WebhookDeliveryOut],
    responses=NOT_FOUND,
    summary="An endpoint's latest deliveries, newest first",
)
async def webhook_deliveries(
    webhook_id: uuid.UUID,
    uow: UowDep,
    principal: Admin,
    limit: int = Query(default=50, ge=1, le=200),
) -> list[WebhookDeliveryOut]:
    rows = await webhooks.endpoint_deliveries(uow.session, principal.account_id, webhook_id, limit)
    return [WebhookDeliveryOut.of(row) for row in rows]
