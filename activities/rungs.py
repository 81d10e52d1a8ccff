"""`fire_rung`: a rung fires in one transaction, under the item's row lock.

The item is locked FOR UPDATE and re-checked open; then, in the same transaction: the
rung's fired stamp (and its planned instant, now the stamp) and its audit row, the
recipients resolved, `escalation_undeliverable` audited if the chain came up empty, a
`pending` delivery row per email recipient, and the push outbox row with its NOTIFY. A
claim's UPDATE waits for this lock (or this waits for the claim): the rung and its push
commit before the claim or not at all, so no channel notifies after a claim commits. The
emails then go out through `send_email`, which re-checks under its own lock.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import Row, Table, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

from db import tenant_session
from domain import audit, push, recipients
from domain.models import Delivery, Item
from workflows.types import FireRung, RungFired

ITEM: Table = Item.__table__  # type: ignore[assignment]
DELIVERY: Table = Delivery.__table__  # type: ignore[assignment]
# What the rung reads of its item: the state, the resolvers' columns, the push summary's.
COLUMNS = (
    *("id", "account_id", "kind", "item_type", "title", "state", "intent", "priority"),
    *("due_at", "claimed_by", "assignee_id"),
)


class RungActivities:
    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
        self._sessionmaker = sessionmaker

    @activity.defn
    async def fire_rung(self, request: FireRung) -> RungFired:
        """Side effect: one transaction (stamp, audit, deliveries, outbox row), in Core SQL:
        no ORM unit of work on the hot path. Idempotency keys: the stamp is set once, the
        audit keys are the rung's, the delivery rows are unique per (recipient, item,
        event_key, channel), and the push's dedup key is `<item>:<event_key>`, so a retry
        writes nothing twice. Writes nothing when the item is no longer open, and reports its
        state so the workflow follows the database."""
        account_id = uuid.UUID(request.account_id)
        async with tenant_session(self._sessionmaker, account_id) as session:
            item = await _locked(session, request, account_id)
            claimed_by = str(item.claimed_by) if item.claimed_by else None
            if item.state != "open":
                return RungFired(recorded=False, state=item.state, claimed_by=claimed_by)
            fired = ITEM.c[f"{request.rung}_fired_at"]
            # The plan's instant of a fired rung is its stamp (what record_plan would write
            # next), so the workflow needs no record_plan after a fire.
            await session.execute(
                update(ITEM)
                .where(ITEM.c.id == item.id, fired.is_(None))
                .values({fired: request.at, ITEM.c[f"{request.rung}_at"]: request.at})
            )
            await audit.record(
                session,
                account_id=account_id,
                item_id=item.id,
                action="rung_fired",
                tier=request.tier,
                key=f"{item.id}:{request.rung}:fired",
                data={"rung": request.rung, "planned_at": request.planned_at.isoformat()},
            )
            found = await recipients.resolve(session, item, request.chain, actor_id=None)
            if not found.recipients:  # never silent: an empty chain end is on the record
                await audit.record(
                    session,
                    account_id=account_id,
                    item_id=item.id,
                    action="escalation_undeliverable",
                    tier=request.tier,
                    key=f"{item.id}:{request.event_key}:undeliverable",
                    data={"rung": request.rung, "tried": ",".join(found.tried)},
                )
            if "email" in request.channels and found.recipients:
                await session.execute(
                    insert(DELIVERY)
                    .values(
                        [
                            {
                                "account_id": account_id,
                                "item_id": item.id,
                                "recipient_id": uuid.UUID(r.user_id),
                                "event_key": request.event_key,
                                "channel": "email",
                            }
                            for r in found.recipients
                        ]
                    )
                    .on_conflict_do_nothing()
                )
            if "push" in request.channels:
                await push.publish(  # last: its ordering lock is held until commit
                    session,
                    account_id=account_id,
                    item=item,
                    kind=request.push_kind,
                    dedup_key=f"{item.id}:{request.event_key}",
                    data={
                        "tier": request.tier,
                        "rung": request.rung,
                        "event_key": request.event_key,
                        "recipients": [r.name for r in found.recipients],
                    },
                )
            return RungFired(
                recorded=True,
                state=item.state,
                claimed_by=claimed_by,
                recipients=list(found.recipients),
                tried=list(found.tried),
            )


async def _locked(session: AsyncSession, request: FireRung, account_id: uuid.UUID) -> Row[Any]:
    """The item FOR UPDATE (a claim's UPDATE waits for it, or it for the claim); a missing
    item is a non-retryable error."""
    row = (
        await session.execute(
            select(*(ITEM.c[name] for name in COLUMNS))
            .where(ITEM.c.id == uuid.UUID(request.item_id), ITEM.c.account_id == account_id)
            .with_for_update()
        )
    ).one_or_none()
    if row is None:
        raise ApplicationError(f"item {request.item_id} not found", non_retryable=True)
    return row
