"""Activities that read and stamp the item itself. Short DB-only steps: the workflow runs
them as local activities (fewer server round trips, which matters in bursts)."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

from db import get_in_account, tenant_session
from domain import audit, item_hooks, lifecycle, recipients, webhooks
from domain.calendars import calendar_from_row
from domain.items import done_marks, item_pauses
from domain.models import RUNG_NAMES, BusinessCalendarVersion, Delivery, Item, SlaPolicy, User
from domain.policy import PolicyError, parse_rungs
from workflows.types import (
    AppliedVersion,
    ItemHook,
    ItemRef,
    ItemSnapshot,
    MarkDue,
    PauseSpan,
    RecordPlan,
    RecordRung,
    RungMark,
    RungRecorded,
    TimeOutClaim,
)


async def locked_item(
    session: AsyncSession, item_id: str, account_id: uuid.UUID
) -> tuple[Item, str | None]:
    """The item FOR UPDATE (a claim's UPDATE waits for it, or it for the claim) and its
    claimer's id; a missing item is a non-retryable error."""
    item = await get_in_account(session, Item, uuid.UUID(item_id), account_id, lock="update")
    if item is None:
        raise ApplicationError(f"item {item_id} not found", non_retryable=True)
    return item, str(item.claimed_by) if item.claimed_by else None


class ItemActivities:
    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
        self._sessionmaker = sessionmaker

    @activity.defn
    async def load_item(self, ref: ItemRef) -> ItemSnapshot:
        """Side effect: none (a read). The pinned policy version and the pinned calendar
        version, holidays expanded."""
        async with tenant_session(self._sessionmaker, uuid.UUID(ref.account_id)) as session:
            row = await session.execute(
                select(Item, SlaPolicy, BusinessCalendarVersion)
                .join(SlaPolicy, SlaPolicy.id == Item.policy_id)
                .join(
                    BusinessCalendarVersion,
                    BusinessCalendarVersion.id == Item.calendar_version_id,
                )
                .where(
                    Item.id == uuid.UUID(ref.item_id),
                    Item.account_id == uuid.UUID(ref.account_id),
                    SlaPolicy.account_id == Item.account_id,
                    BusinessCalendarVersion.account_id == Item.account_id,
                )
            )
            found = row.one_or_none()
            if found is None:
                raise ApplicationError(f"item {ref.item_id} not found", non_retryable=True)
            item, policy, calendar = found
            return ItemSnapshot(
                item_id=ref.item_id,
                account_id=ref.account_id,
                kind=item.kind,
                item_type=item.item_type,
                title=item.title,
                state=item.state,
                due_at=item.due_at,
                created_at=item.created_at,
                paused_at=item.paused_at,
                intent=item.intent,
                creator_id=str(item.creator_id) if item.creator_id else None,
                claimed_by=str(item.claimed_by) if item.claimed_by else None,
                policy_version=policy.version,
                calendar_version=calendar.version,
                rungs=policy.rungs,
                calendar=calendar_from_row(calendar).to_dict(),
                done=[
                    RungMark(name=name, status=status, at=at)
                    for name, (status, at) in done_marks(item).items()
                ],
                pauses=[PauseSpan(start=p.start, end=p.end) for p in item_pauses(item)],
                version=item.version,
                notified=await _notified(session, item, policy.rungs),
                claimer_name=await _name(session, item.account_id, item.claimed_by),
                claimed_at=item.claimed_at,
                hooks=await _hooks(session, item),
            )

    @activity.defn
    async def record_rung(self, request: RecordRung) -> RungRecorded:
        """Side effect: the rung's fired/skipped stamp on the item plus its audit row, in one
        transaction. Idempotent: the stamp is set once and the audit key is the rung's.
        Records nothing when a fired rung finds the item no longer open (a claim won the
        race), and reports the item's state so the workflow can follow the database."""
        account_id = uuid.UUID(request.account_id)
        async with tenant_session(self._sessionmaker, account_id) as session:
            item, claimed_by = await locked_item(session, request.item_id, account_id)
            if request.status == "fired" and item.state != "open":
                return RungRecorded(recorded=False, state=item.state, claimed_by=claimed_by)
            column = f"{request.rung}_{request.status}_at"
            if getattr(item, column) is None:
                setattr(item, column, request.at)
            await audit.record(
                session,
                account_id=item.account_id,
                item_id=item.id,
                action=f"rung_{request.status}",
                tier=request.tier,
                key=f"{item.id}:{request.rung}:{request.status}",
                data={"rung": request.rung, "planned_at": request.planned_at.isoformat()},
            )
            return RungRecorded(recorded=True, state=item.state, claimed_by=claimed_by)

    @activity.defn
    async def record_due(self, request: MarkDue) -> None:
        """Side effect: the item's `fell_due` audit row and an `item.overdue` push event, in
        one transaction, so an open page shows the item at once. Idempotent: keyed by the
        item and the due instant (a new due date falls due anew). Nothing for an item that
        ended or is paused (its due moves on)."""
        account_id = uuid.UUID(request.account_id)
        async with tenant_session(self._sessionmaker, account_id) as session:
            item, _ = await locked_item(session, request.item_id, account_id)
            if item.state not in ("open", "claimed"):
                return
            if await lifecycle.audit_fell_due(session, item, request.due_at):
                await lifecycle.publish_overdue(session, item, request.due_at)

    @activity.defn
    async def time_out_claim(self, request: TimeOutClaim) -> bool:
        """Side effect: the item reopened if the claim still holds (see
        `domain.lifecycle.time_out_claim`); idempotent: a second call finds it open."""
        async with tenant_session(self._sessionmaker, uuid.UUID(request.account_id)) as session:
            return await lifecycle.time_out_claim(
                session,
                uuid.UUID(request.account_id),
                uuid.UUID(request.item_id),
                uuid.UUID(request.claimed_by),
                request.claimed_at,
                request.at,
            )

    @activity.defn
    async def record_applied_version(self, request: AppliedVersion) -> None:
        """Side effect: `item.applied_version`, the version the workflow has read back and
        acted on, and (the first time) `workflow_started_at`: the workflow's first step is
        what proves it runs, so the API's create path needs no stamp of its own. Idempotent
        and monotonic (GREATEST, COALESCE), so a late retry never moves either back."""
        account_id = uuid.UUID(request.account_id)
        async with tenant_session(self._sessionmaker, account_id) as session:
            await session.execute(
                update(Item)
                .where(Item.id == uuid.UUID(request.item_id), Item.account_id == account_id)
                .values(
                    applied_version=func.greatest(Item.applied_version, request.version),
                    workflow_started_at=func.coalesce(Item.workflow_started_at, func.now()),
                )
            )

    @activity.defn
    async def record_plan(self, request: RecordPlan) -> None:
        """Side effect: the planned instant of each rung on the item row (what the queue and
        reports read). Idempotent: it overwrites with the same values. One Core UPDATE."""
        account_id = uuid.UUID(request.account_id)
        async with tenant_session(self._sessionmaker, account_id) as session:
            await session.execute(
                update(Item)
                .where(Item.id == uuid.UUID(request.item_id), Item.account_id == account_id)
                .values({f"{rung}_at": request.instants.get(rung) for rung in RUNG_NAMES})
            )


async def _hooks(session: AsyncSession, item: Item) -> list[ItemHook]:
    """The item's lifecycle webhooks not yet final, oldest transition first."""
    rows = await session.execute(
        select(Delivery.endpoint_id, Delivery.event_key, Delivery.created_at)
        .where(
            Delivery.item_id == item.id,
            Delivery.account_id == item.account_id,
            Delivery.channel == "webhook",
            Delivery.event_key.like(f"%{item_hooks.MARK}%"),
            Delivery.status.not_in(webhooks.FINAL),
        )
        .order_by(Delivery.created_at, Delivery.event_key, Delivery.endpoint_id)
    )
    return [
        ItemHook(endpoint_id=str(r.endpoint_id), event_key=r.event_key, at=r.created_at)
        for r in rows
    ]


async def _notified(
    session: AsyncSession, item: Item, rungs: dict[str, Any]
) -> dict[str, list[str]]:
    """Who each rung would notify if it fired now, by name: what the Temporal UI shows."""
    try:
        parsed = parse_rungs(rungs)
    except PolicyError:
        return {}
    found: dict[str, list[str]] = {}
    for name, rung in parsed.items():
        if rung is not None:
            resolution = await recipients.resolve(
                session, item, rung.recipients, actor_id=item.creator_id
            )
            found[name] = [r.name for r in resolution.recipients]
    return found


async def _name(session: AsyncSession, account_id: uuid.UUID, user_id: uuid.UUID | None) -> str:
    if user_id is None:
        return ""
    user = await get_in_account(session, User, user_id, account_id)
    return "" if user is None else user.name
