"""Audit rows: append-only, written once per idempotency key however often a writer retries."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from domain.models import AuditEvent


async def record(
    session: AsyncSession,
    *,
    account_id: uuid.UUID,
    item_id: uuid.UUID | None,
    action: str,
    key: str,
    actor_id: uuid.UUID | None = None,
    tier: int | None = None,
    data: dict[str, Any] | None = None,
) -> bool:
    """Insert the event unless `key` was recorded before; True if this call wrote it."""
    result = await session.execute(
        insert(AuditEvent)
        .values(
            account_id=account_id,
            item_id=item_id,
            actor_id=actor_id,
            action=action,
            tier=tier,
            data=data or {},
            idempotency_key=key,
        )
        .on_conflict_do_nothing(index_elements=["idempotency_key"])
        .returning(AuditEvent.id)
    )
    return result.scalar_one_or_none() is not None


async def delivery_failed(
    session: AsyncSession, delivery: Any, tier: int | None, **data: str
) -> None:
    """A delivery's `delivery_failed` event, once per delivery (key `<delivery>:failed`);
    `data` says who it was for and why."""
    await record(
        session,
        account_id=delivery.account_id,
        item_id=delivery.item_id,
        action="delivery_failed",
        tier=tier,
        key=f"{delivery.id}:failed",
        data=data,
    )
