"""Rows for tests, written through the ORM as the owner (RLS does not apply)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession

from domain.demo import demo_calendar_version, seed_demo, stable_id
from domain.models import (
    AuditEvent,
    Delivery,
    Item,
    PushEvent,
    ReplanJob,
    UsedLink,
    WebhookEndpoint,
)


async def seed_account(session: AsyncSession, slug: str) -> uuid.UUID:
    return await seed_demo(session, slug=slug, name=slug.title())


def user_id(slug: str, key: str) -> uuid.UUID:
    """The id of demo user `key` (otto, ada, erin, emil, vera) in account `slug`."""
    return stable_id(slug, f"user:{key}")


async def add_task(
    session: AsyncSession,
    slug: str,
    *,
    item_type: str = "CAPA",
    due_at: datetime | None = None,
    assignee: str = "erin",
) -> Item:
    item = Item(
        account_id=stable_id(slug, "account"),
        kind="task",
        item_type=item_type,
        title=f"{item_type} for {slug}",
        assignee_id=user_id(slug, assignee),
        creator_id=user_id(slug, "ada"),
        due_at=due_at or datetime(2026, 11, 27, 9, tzinfo=UTC),
        policy_id=stable_id(slug, f"policy:{item_type}:1"),
        calendar_version_id=demo_calendar_version(slug),
    )
    session.add(item)
    await session.flush()
    return item


async def add_item_records(session: AsyncSession, item: Item) -> None:
    """One delivery, audit event, push event, used link, webhook endpoint (with a delivery
    of its own) and re-plan job for `item`, so every tenant table has rows."""
    recipient = item.assignee_id
    assert recipient is not None
    key = uuid.uuid4().hex
    endpoint = WebhookEndpoint(
        id=uuid.uuid4(),
        account_id=item.account_id,
        name="Ops hook",
        url="https://hooks.example.com/escalator",
        secret="whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    )
    session.add(endpoint)
    await session.flush()
    session.add_all(
        [
            Delivery(
                account_id=item.account_id,
                item_id=item.id,
                endpoint_id=endpoint.id,
                event_key="task.reminder",
                channel="webhook",
            ),
            Delivery(
                account_id=item.account_id,
                item_id=item.id,
                recipient_id=recipient,
                event_key="task.reminder",
                channel="email",
            ),
            AuditEvent(
                account_id=item.account_id, item_id=item.id, action="created", idempotency_key=key
            ),
            PushEvent(
                account_id=item.account_id,
                item_id=item.id,
                kind="item.created",
                payload={"id": str(item.id)},
                dedup_key=key,
            ),
            UsedLink(
                jti=uuid.uuid4(), account_id=item.account_id, purpose="claim", user_id=recipient
            ),
            ReplanJob(account_id=item.account_id, actor_id=item.creator_id, item_type="CAPA"),
        ]
    )
    await session.flush()
