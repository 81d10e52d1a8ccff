"""Re-plan: move items to the latest policy version of their type and the latest version of
that policy's calendar, and say how many rungs moved.

An item pins both versions when it is created, so editing a policy or a calendar never
changes a running item's plan behind its back; a re-plan is the explicit step that does. One
item (`POST /v1/items/{id}/replan`) or every active item of a calendar or a type in one call
(`POST /v1/replan`). Each moved item gets `version + 1` and a `replanned` audit row in the
same transaction; its workflow is nudged after the commit (and the reconciler nudges any
whose signal was lost). Flush, never commit.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from domain import audit, items
from domain.lifecycle import ACTIVE
from domain.models import BusinessCalendarVersion, Item
from domain.planning import PlannedRung


@dataclass(frozen=True, kw_only=True)
class Moved:
    item_id: uuid.UUID
    policy_version: tuple[int, int]  # (from, to)
    calendar_version: tuple[int, int]
    rungs_moved: int


@dataclass(kw_only=True)
class Report:
    matched: int = 0  # items the filter selected
    moved: list[Moved] = field(default_factory=list)  # those not already on the latest

    @property
    def rungs_moved(self) -> int:
        return sum(m.rungs_moved for m in self.moved)


def rungs_moved(before: list[PlannedRung], after: list[PlannedRung]) -> int:
    """Rungs whose upcoming instant changed, appeared or disappeared. Fired and skipped
    rungs are history: a re-plan never moves them."""
    old = {r.name: r for r in before}
    new = {r.name: r for r in after}
    moved = 0
    for name in old.keys() | new.keys():
        was, now = old.get(name), new.get(name)
        if all(r is None or r.status != "pending" for r in (was, now)):
            continue
        if was is None or now is None or (was.status, was.fire_at) != (now.status, now.fire_at):
            moved += 1
    return moved


async def replan(
    session: AsyncSession,
    account_id: uuid.UUID,
    actor_id: uuid.UUID,
    now: datetime,
    *,
    item_id: uuid.UUID | None = None,
    calendar_id: uuid.UUID | None = None,
    item_type: str | None = None,
    dry_run: bool = False,
) -> Report:
    """Re-plan the item `item_id` (in any state), or every active item (open, paused,
    claimed) on calendar `calendar_id` and/or of type `item_type`. With `dry_run`, report
    what would move and write nothing."""
    query = select(Item).where(Item.account_id == account_id)
    if item_id is not None:
        query = query.where(Item.id == item_id)
    else:
        query = query.where(Item.state.in_(ACTIVE))
    if item_type is not None:
        query = query.where(Item.item_type == item_type)
    if calendar_id is not None:
        query = query.join(
            BusinessCalendarVersion, BusinessCalendarVersion.id == Item.calendar_version_id
        ).where(
            BusinessCalendarVersion.account_id == account_id,
            BusinessCalendarVersion.calendar_id == calendar_id,
        )
    # Locked in id order: concurrent lifecycle changes wait, and two re-plans cannot deadlock.
    query = query.order_by(Item.id)
    if not dry_run:  # read the locked rows as they are now, not as the session had them
        query = query.with_for_update(of=Item).execution_options(populate_existing=True)
    found = list(await session.scalars(query))
    report = Report(matched=len(found))
    plans = _Plans(session, account_id)
    for item in found:
        before = await plans.pinned(item)
        after = await plans.latest(item.item_type)
        if (before.row.id, before.calendar_version.id) == (after.row.id, after.calendar_version.id):
            continue
        moved = Moved(
            item_id=item.id,
            policy_version=(before.row.version, after.row.version),
            calendar_version=(before.calendar_version.version, after.calendar_version.version),
            rungs_moved=rungs_moved(
                items.plan_of(item, before, now), items.plan_of(item, after, now)
            ),
        )
        report.moved.append(moved)
        if dry_run:
            continue
        item.policy_id, item.calendar_version_id = after.row.id, after.calendar_version.id
        item.version += 1
        await audit.record(
            session,
            account_id=account_id,
            item_id=item.id,
            action="replanned",
            actor_id=actor_id,
            key=f"{item.id}:replanned:{after.row.id}:{after.calendar_version.id}",
            data={
                "policy_version": after.row.version,
                "calendar_version": after.calendar_version.version,
                "from": {
                    "policy_version": before.row.version,
                    "calendar_version": before.calendar_version.version,
                },
                "rungs_moved": moved.rungs_moved,
            },
        )
    await session.flush()
    return report


class _Plans:
    """Policies and calendars loaded once per call, however many items share them."""

    def __init__(self, session: AsyncSession, account_id: uuid.UUID) -> None:
        self._session = session
        self._account_id = account_id
        self._pinned: dict[tuple[uuid.UUID, uuid.UUID], items.Policy] = {}
        self._latest: dict[str, items.Policy] = {}

    async def pinned(self, item: Item) -> items.Policy:
        key = (item.policy_id, item.calendar_version_id)
        if key not in self._pinned:
            self._pinned[key] = await items.pinned_policy(self._session, item)
        return self._pinned[key]

    async def latest(self, item_type: str) -> items.Policy:
        if item_type not in self._latest:
            policy = await items.latest_policy(self._session, self._account_id, item_type)
            self._latest[item_type] = await items.load_policy(self._session, policy)
        return self._latest[item_type]
