"""Webhook events of an item's lifecycle: `item.claimed`, `item.released`, `item.resolved`,
`item.cancelled`, `item.claim_timed_out`, beside the rungs' own events.

Each is planned in the transition's own transaction: a `pending` delivery row per enabled
endpoint whose filter takes the event, keyed `item.claimed@<item version>` (a version is
one transition, so two claims of one item are two events). The item's workflow posts them
when it next reads the item back, which every transition's signal makes it do (and the
reconciler's `sync`, when a signal was lost). Unlike a rung's, a lifecycle event is about
the item leaving `open`, so a closed item never suppresses it.
"""

from __future__ import annotations

import fnmatch
import uuid
from collections.abc import Sequence

from sqlalchemy import Table, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from domain.models import Delivery, Item, WebhookEndpoint
from domain.policy import base_event

DELIVERY: Table = Delivery.__table__  # type: ignore[assignment]
ENDPOINT: Table = WebhookEndpoint.__table__  # type: ignore[assignment]
MARK = "@"  # `item.claimed@7`: the event, then the item version the transition wrote
# The audit actions that post a webhook, as `item.<action>`.
HOOKED = ("claimed", "released", "resolved", "cancelled", "claim_timed_out")


def event_key(action: str, version: int) -> str:
    return f"item.{action}{MARK}{version}"


def is_lifecycle(key: str) -> bool:
    return MARK in key


def event_name(key: str) -> str:
    """The event a delivery's key tells of, as receivers see it in `type` and endpoints
    filter on: `item.claimed@7` → `item.claimed`; `task.escalated_final~2` →
    `task.escalated_final`."""
    name, _ = base_event(key.partition(MARK)[0])
    return name


def matches(event_filter: Sequence[str], key: str) -> bool:
    """Whether an endpoint with this filter receives the event: an empty filter takes
    every event, otherwise any fnmatch pattern (`task.*`) must match, case-sensitively. A
    rung's repeat goes where its rung goes."""
    name = event_name(key)
    return not event_filter or any(fnmatch.fnmatchcase(name, p) for p in event_filter)


async def plan(session: AsyncSession, item: Item, action: str, actor_id: uuid.UUID | None) -> None:
    """The transition's webhook rows (`item.<action>@<version>`), for an action that posts
    one; none for the others."""
    if action in HOOKED:
        key = event_key(action, item.version)
        await plan_event(session, item.account_id, item.id, key, actor_id=actor_id)


async def plan_event(
    session: AsyncSession,
    account_id: uuid.UUID,
    item_id: uuid.UUID,
    key: str,
    *,
    actor_id: uuid.UUID | None = None,
) -> None:
    """A `pending` webhook row per enabled, undeleted endpoint of the account whose filter
    takes the event `key` (a rung's or a transition's), each at most once per (endpoint,
    item, event): ON CONFLICT DO NOTHING."""
    endpoints = await session.execute(
        select(ENDPOINT.c.id, ENDPOINT.c.event_filter).where(
            ENDPOINT.c.account_id == account_id,
            ENDPOINT.c.enabled,
            ENDPOINT.c.deleted_at.is_(None),
        )
    )
    rows = [
        {
            "account_id": account_id,
            "item_id": item_id,
            "endpoint_id": endpoint.id,
            "event_key": key,
            "channel": "webhook",
            "actor_id": actor_id,
        }
        for endpoint in endpoints
        if matches(endpoint.event_filter, key)
    ]
    if rows:
        await session.execute(
            insert(DELIVERY).on_conflict_do_nothing(
                index_elements=["endpoint_id", "item_id", "event_key", "channel"],
                index_where=DELIVERY.c.endpoint_id.is_not(None),
            ),
            rows,
        )
