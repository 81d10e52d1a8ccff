"""No push notification after a claim commits: `publish_event` re-checks the item under a
row lock in the same transaction as the outbox row, as `send_email` does."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.testing import ActivityEnvironment

from activities.push import NOTIFYING, PushActivities
from db import tenant_session
from domain import lifecycle
from tests.support.tenants import Tenant
from workflows.types import PublishEvent

AT = datetime(2026, 11, 23, 9, tzinfo=UTC)


def fired(tenant: Tenant, item_id: uuid.UUID, kind: str = "rung.fired") -> PublishEvent:
    return PublishEvent(
        account_id=str(tenant.account_id),
        item_id=str(item_id),
        kind=kind,
        dedup_key=f"{item_id}:{kind}:test",
        data={"tier": 1},
    )


async def notifications(tenant: Tenant, item_id: uuid.UUID) -> list[str]:
    """The pushes that notify people (the claim's own `item.claimed` is not one)."""
    return [e.kind for e in await tenant.push_events(item_id) if e.kind in NOTIFYING]


async def test_no_push_notification_once_a_claim_committed(
    tenant: Tenant, app_sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    push = PushActivities(app_sessionmaker)
    item_id = await tenant.add_item(due_at=AT + timedelta(days=1))
    async with tenant_session(app_sessionmaker, tenant.account_id) as session:
        await lifecycle.claim(session, tenant.account_id, item_id, tenant.user("emil"), AT)
    for kind in ("rung.fired", "handoff.escalated"):
        assert (
            await ActivityEnvironment().run(push.publish_event, fired(tenant, item_id, kind))
            is None
        )
    assert await notifications(tenant, item_id) == []
    # What reports the past is still published: the record of a failed delivery.
    failed = fired(tenant, item_id, "delivery.failed")
    assert await ActivityEnvironment().run(push.publish_event, failed) is not None


async def test_a_push_racing_an_uncommitted_claim_waits_and_then_writes_nothing(
    tenant: Tenant, app_sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    push = PushActivities(app_sessionmaker)
    item_id = await tenant.add_item(due_at=AT + timedelta(days=1))
    async with tenant_session(app_sessionmaker, tenant.account_id) as session:
        await lifecycle.claim(session, tenant.account_id, item_id, tenant.user("emil"), AT)
        publishing = asyncio.create_task(
            ActivityEnvironment().run(push.publish_event, fired(tenant, item_id))
        )
        await asyncio.sleep(0.4)
        assert not publishing.done(), "the push must wait for the claim's transaction"
    assert await publishing is None
    assert await notifications(tenant, item_id) == []


async def test_an_open_items_rung_is_pushed(
    tenant: Tenant, app_sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    item_id = await tenant.add_item(due_at=AT + timedelta(days=1))
    published = await ActivityEnvironment().run(
        PushActivities(app_sessionmaker).publish_event, fired(tenant, item_id)
    )
    assert published is not None
    assert [e.kind for e in await tenant.push_events(item_id)] == ["rung.fired"]
