"""The delivery rows, items and endpoints that `activities.webhook` reads and writes: the
row's key and lock, the item read under the send guard, why a send may not go out, and the
row's settled states."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import Row, Table, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.exceptions import ApplicationError

from activities import webhook_http as http
from domain import audit, item_hooks, send_guard
from domain.models import BusinessCalendarVersion, Delivery, Item, User, WebhookEndpoint
from workflows.webhook_types import PlanWebhooks, SendWebhook, WebhookFailure, WebhookOutcome

DELIVERY: Table = Delivery.__table__  # type: ignore[assignment]
ENDPOINT: Table = WebhookEndpoint.__table__  # type: ignore[assignment]
ITEM: Table = Item.__table__  # type: ignore[assignment]
CALENDAR: Table = BusinessCalendarVersion.__table__  # type: ignore[assignment]
ASSIGNEE = User.__table__.alias("assignee")
CHANNEL = "webhook"


def key(request: PlanWebhooks | SendWebhook, account_id: uuid.UUID) -> dict[str, Any]:
    values: dict[str, Any] = {
        "account_id": account_id,
        "item_id": uuid.UUID(request.item_id),
        "event_key": request.event_key,
        "channel": CHANNEL,
    }
    if isinstance(request, SendWebhook):
        values["endpoint_id"] = uuid.UUID(request.endpoint_id)
    return values


def row_of(request: PlanWebhooks | SendWebhook | WebhookFailure, account_id: uuid.UUID) -> Any:
    """The WHERE clause of the request's webhook rows (its endpoint's, when it names one)."""
    clauses = [
        DELIVERY.c.account_id == account_id,
        DELIVERY.c.item_id == uuid.UUID(request.item_id),
        DELIVERY.c.event_key == request.event_key,
        DELIVERY.c.channel == CHANNEL,
        DELIVERY.c.endpoint_id.is_not(None),
    ]
    if not isinstance(request, PlanWebhooks):
        clauses.append(DELIVERY.c.endpoint_id == uuid.UUID(request.endpoint_id))
    return clauses


async def locked_row(
    session: AsyncSession, request: SendWebhook | WebhookFailure, account_id: uuid.UUID
) -> Row[Any] | None:
    query = select(DELIVERY).where(*row_of(request, account_id)).with_for_update()
    row: Row[Any] | None = (await session.execute(query)).one_or_none()
    return row


async def item_row(
    session: AsyncSession, request: SendWebhook, account_id: uuid.UUID, *, guarded: bool = False
) -> Any:
    """The item with its pinned calendar's zone, FOR SHARE (a claim's UPDATE waits for
    this short transaction); or, `guarded`, read after taking the send guard (held across
    the POST: a claim waits for it, a rung's stamp does not; see `domain.send_guard`). A
    missing item is a non-retryable error."""
    item_id = uuid.UUID(request.item_id)
    columns = ("id", "state", "kind", "item_type", "title", "due_at", "assignee_id")
    query = (
        select(
            *(ITEM.c[name] for name in columns),
            CALENDAR.c.tz,
            ASSIGNEE.c.name.label("assignee_name"),
        )
        .join(CALENDAR, CALENDAR.c.id == ITEM.c.calendar_version_id)
        .outerjoin(ASSIGNEE, ASSIGNEE.c.id == ITEM.c.assignee_id)
        .where(ITEM.c.id == item_id, ITEM.c.account_id == account_id)
    )
    if guarded:
        await send_guard.sending(session, item_id)
    else:
        query = query.with_for_update(read=True, of=ITEM)
    row: Any = (await session.execute(query)).one_or_none()
    if row is None:
        raise ApplicationError(f"item {request.item_id} not found", non_retryable=True)
    return row


async def endpoint_of(session: AsyncSession, request: SendWebhook, account_id: uuid.UUID) -> Any:
    """The endpoint (deleted or not); one this account does not have is non-retryable."""
    row = (
        await session.execute(
            select(ENDPOINT).where(
                ENDPOINT.c.id == uuid.UUID(request.endpoint_id),
                ENDPOINT.c.account_id == account_id,
            )
        )
    ).one_or_none()
    if row is None:
        raise ApplicationError(f"endpoint {request.endpoint_id} not found", non_retryable=True)
    return row


def not_now(item: Any, endpoint: Any, event_key: str) -> tuple[str, str] | None:
    """Why nothing may be sent, as (status, reason), or None. The item stopped being open:
    `suppressed` (nobody needs it any more), unless the event tells of that very change
    (`item.resolved@9`). The endpoint is deleted or disabled: `failed` (it was needed and
    did not go out; it can be sent again once the endpoint is back)."""
    if item.state != "open" and not item_hooks.is_lifecycle(event_key):
        return "suppressed", f"not sent: the item is {item.state}"
    if endpoint.deleted_at is not None:
        return "failed", "not sent: the endpoint is deleted"
    if not endpoint.enabled:
        reason = endpoint.disabled_reason or "no reason"
        return "failed", f"not sent: the endpoint is disabled ({reason})"
    return None


async def stop(
    session: AsyncSession, row: Row[Any], why: tuple[str, str], **values: Any
) -> WebhookOutcome:
    """The row ends unsent: `why` is `not_now`'s (status, reason). Counted by the caller."""
    status, reason = why
    await set_row(session, row, status=status, last_error=reason, **values)
    return WebhookOutcome(
        status=status, error=reason, attempts=values.get("attempts", row.attempts)
    )


def final(row: Row[Any]) -> WebhookOutcome:
    return WebhookOutcome(
        status=row.status,
        response_code=row.response_code,
        sent_at=row.sent_at,
        error=None if row.status == "sent" else row.last_error,
        attempts=row.attempts,
    )


async def set_row(session: AsyncSession, row: Row[Any], **values: Any) -> None:
    await session.execute(
        update(DELIVERY).where(DELIVERY.c.id == row.id).values(updated_at=func.now(), **values)
    )


async def audit_failure(
    session: AsyncSession, row: Row[Any], tier: int | None, name: str, error: str
) -> None:
    await audit.delivery_failed(
        session, row, tier, endpoint_id=str(row.endpoint_id), endpoint_name=name, error=error
    )


async def people(session: AsyncSession, row: Row[Any]) -> http.People:
    """Who the event is about, for its body: the actor of a lifecycle event (`by`), or the
    people the rung's mails went to (`notified`, with each one's status)."""
    if item_hooks.is_lifecycle(row.event_key):
        if row.actor_id is None:
            return http.People(by=None)
        name = await session.scalar(select(User.name).where(User.id == row.actor_id))
        return http.People(by=http.Person(id=str(row.actor_id), name=name or ""))
    told = await session.execute(
        select(DELIVERY.c.recipient_id, User.name, DELIVERY.c.status)
        .join(User, User.id == DELIVERY.c.recipient_id)
        .where(
            DELIVERY.c.item_id == row.item_id,
            DELIVERY.c.event_key == row.event_key,
            DELIVERY.c.channel == "email",
        )
        .order_by(DELIVERY.c.resolver_rank.nulls_last(), User.name)
    )
    return http.People(
        notified=[http.Person(id=str(t.recipient_id), name=t.name, status=t.status) for t in told]
    )
