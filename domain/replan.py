"""Re-plan: move items to the latest policy version of their type and the latest version of
that policy's calendar, and say how many rungs moved.

An item pins both versions when it is created, so editing a policy or a calendar never
changes a running item's plan behind its back; a re-plan is the explicit step that does:

- one item (`POST /v1/items/{id}/replan`): `replan_item`;
- every active item of a calendar and/or a type (`POST /v1/replan`): a dry run reports at
  once (`preview`, which writes and locks nothing); otherwise a `replan_job` row
  (`create_job`) that `ReplanWorkflow` works through `BATCH` items at a time in id order
  (`run_batch`). Each batch is one transaction that locks just its items, so a claim waits
  at most for its item's batch, never for the whole job.

Both move an item with `move_item`: `version + 1` and a `replanned` audit row in the same
transaction; its workflow is nudged after the commit (and the reconciler nudges any whose
signal was lost). Flush, never commit.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession

from db import get_in_account
from domain import audit, items, push
from domain.errors import NotFound
from domain.lifecycle import ACTIVE
from domain.models import BusinessCalendarVersion, Item, ReplanJob
from domain.planning import PlannedRung

BATCH = 100  # items per batch: per transaction, so at most what a claim waits behind
LISTED_JOBS = 20  # `GET /v1/replan`: the account's latest


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


@dataclass(frozen=True, kw_only=True)
class Batch:
    """What one batch did: the job as it now stands, and the items it moved (to nudge)."""

    job: ReplanJob
    moved: list[uuid.UUID]

    @property
    def last(self) -> bool:
        return self.job.state != "running"


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


async def move_item(
    session: AsyncSession,
    plans: Plans,
    item: Item,
    actor_id: uuid.UUID | None,
    now: datetime,
    *,
    write: bool = True,
) -> Moved | None:
    """Move `item` (locked by the caller when `write`) to the latest versions: `version + 1`
    and a `replanned` audit row (once per target versions, however often it is retried).
    None if it is on the latest already. With `write=False`, say what would move."""
    before = await plans.pinned(item)
    after = await plans.latest(item.item_type)
    if (before.row.id, before.calendar_version.id) == (after.row.id, after.calendar_version.id):
        return None
    moved = Moved(
        item_id=item.id,
        policy_version=(before.row.version, after.row.version),
        calendar_version=(before.calendar_version.version, after.calendar_version.version),
        rungs_moved=rungs_moved(items.plan_of(item, before, now), items.plan_of(item, after, now)),
    )
    if not write:
        return moved
    item.policy_id, item.calendar_version_id = after.row.id, after.calendar_version.id
    item.version += 1
    await audit.record(
        session,
        account_id=item.account_id,
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
    return moved


async def replan_item(
    session: AsyncSession,
    account_id: uuid.UUID,
    actor_id: uuid.UUID,
    now: datetime,
    item_id: uuid.UUID,
) -> Moved | None:
    """Re-plan item `item_id`, in any state, under its row lock (read as it is now, not as
    the session had it)."""
    item = await get_in_account(session, Item, item_id, account_id, lock="update")
    if item is None:
        raise NotFound(f"item {item_id} not found")
    moved = await move_item(session, Plans(session, account_id), item, actor_id, now)
    await session.flush()
    return moved


def _selection(
    entity: Any, account_id: uuid.UUID, calendar_id: uuid.UUID | None, item_type: str | None
) -> Select[Any]:
    """`entity` (the `Item`, or its id) of every active item of the account on calendar
    `calendar_id` and/or of type `item_type`."""
    query = select(entity).where(Item.account_id == account_id, Item.state.in_(ACTIVE))
    if item_type is not None:
        query = query.where(Item.item_type == item_type)
    if calendar_id is not None:
        query = query.join(
            BusinessCalendarVersion, BusinessCalendarVersion.id == Item.calendar_version_id
        ).where(
            BusinessCalendarVersion.account_id == account_id,
            BusinessCalendarVersion.calendar_id == calendar_id,
        )
    return query


async def preview(
    session: AsyncSession,
    account_id: uuid.UUID,
    now: datetime,
    *,
    calendar_id: uuid.UUID | None = None,
    item_type: str | None = None,
) -> Report:
    """What a re-plan of every active item on `calendar_id` and/or of `item_type` would
    move, now. Writes nothing and locks nothing."""
    query = _selection(Item, account_id, calendar_id, item_type).order_by(Item.id)
    found = list(await session.scalars(query))
    report = Report(matched=len(found))
    plans = Plans(session, account_id)
    for item in found:
        moved = await move_item(session, plans, item, None, now, write=False)
        if moved is not None:
            report.moved.append(moved)
    return report


async def create_job(
    session: AsyncSession,
    account_id: uuid.UUID,
    actor_id: uuid.UUID,
    now: datetime,
    *,
    calendar_id: uuid.UUID | None = None,
    item_type: str | None = None,
) -> ReplanJob:
    """A `running` job with nothing done yet; its workflow is started after the commit."""
    job = ReplanJob(
        id=uuid.uuid4(),
        account_id=account_id,
        actor_id=actor_id,
        calendar_id=calendar_id,
        item_type=item_type,
        state="running",
        matched=0,
        replanned=0,
        rungs_moved=0,
        created_at=now,
    )
    session.add(job)
    await session.flush()
    return job


async def get_job(
    session: AsyncSession, account_id: uuid.UUID, job_id: uuid.UUID, *, lock: bool = False
) -> ReplanJob:
    job = await get_in_account(
        session, ReplanJob, job_id, account_id, lock="update" if lock else None
    )
    if job is None:
        raise NotFound(f"re-plan job {job_id} not found")
    return job


async def latest_jobs(session: AsyncSession, account_id: uuid.UUID) -> list[ReplanJob]:
    query = (
        select(ReplanJob)
        .where(ReplanJob.account_id == account_id)
        .order_by(ReplanJob.created_at.desc(), ReplanJob.id.desc())
        .limit(LISTED_JOBS)
    )
    return list(await session.scalars(query))


async def run_batch(
    session: AsyncSession,
    account_id: uuid.UUID,
    job_id: uuid.UUID,
    now: datetime,
    *,
    after: uuid.UUID | None,
    size: int = BATCH,
) -> Batch:
    """The job's next batch: up to `size` of its items after item id `after`, in id order,
    locked and moved; the job's counts and cursor in the same transaction, and its push
    event last (`replan.progress`, or `replan.done` once no item is left).

    Idempotent by the cursor: the job row is locked first, and a job that is no longer at
    `after` (this batch committed already and is being retried) or no longer running is
    returned as it is, with nothing moved. Its items are on the latest versions by then
    anyway, so none would move twice."""
    job = await get_job(session, account_id, job_id, lock=True)
    if job.state != "running" or job.cursor != after:
        return Batch(job=job, moved=[])
    ids = _selection(Item.id, account_id, job.calendar_id, job.item_type)
    if after is not None:
        ids = ids.where(Item.id > after)
    batch = list(await session.scalars(ids.order_by(Item.id).limit(size)))
    found: list[Item] = []
    if batch:
        # Locked in id order (two jobs cannot deadlock); an item resolved since the read
        # above no longer matches here and is left alone.
        query = (
            _selection(Item, account_id, job.calendar_id, job.item_type)
            .where(Item.id.in_(batch))
            .order_by(Item.id)
            .with_for_update(of=Item)
            .execution_options(populate_existing=True)
        )
        found = list(await session.scalars(query))
    plans = Plans(session, account_id)
    moved: list[Moved] = []
    for item in found:
        one = await move_item(session, plans, item, job.actor_id, now)
        if one is not None:
            moved.append(one)
    job.matched += len(found)
    job.replanned += len(moved)
    job.rungs_moved += sum(m.rungs_moved for m in moved)
    if batch:
        job.cursor = batch[-1]
    if len(batch) < size:
        job.state, job.finished_at = "done", now
    await session.flush()
    kind = "replan.progress" if job.state == "running" else "replan.done"
    await _publish(session, job, kind)
    return Batch(job=job, moved=[m.item_id for m in moved])


async def fail_job(
    session: AsyncSession, account_id: uuid.UUID, job_id: uuid.UUID, now: datetime, error: str
) -> ReplanJob:
    """The job `failed` with `error`, and `replan.failed` pushed; a job no longer running
    is left as it is. What it moved before stays moved."""
    job = await get_job(session, account_id, job_id, lock=True)
    if job.state != "running":
        return job
    job.state, job.finished_at, job.error = "failed", now, error
    await session.flush()
    await _publish(session, job, "replan.failed")
    return job


def job_summary(job: ReplanJob) -> dict[str, Any]:
    """The job as its push events carry it."""
    return {
        "job_id": str(job.id),
        "state": job.state,
        "calendar_id": str(job.calendar_id) if job.calendar_id else None,
        "type": job.item_type,
        "matched": job.matched,
        "replanned": job.replanned,
        "rungs_moved": job.rungs_moved,
    }


async def _publish(session: AsyncSession, job: ReplanJob, kind: str) -> None:
    """An account-level push event (no item): last in the transaction, as `push` asks. One
    per batch: the cursor tells the batches apart."""
    await push.publish(
        session,
        account_id=job.account_id,
        item=None,
        kind=kind,
        dedup_key=f"{job.id}:{kind}:{job.cursor or 'start'}",
        data=job_summary(job),
    )


class Plans:
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
