"""Creating items and reading them back with their plan: what the API does between parsing
and responding. Services flush, never commit; the request's unit of work commits."""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import Executable, Result, Select, Text, bindparam, case, or_, select, text
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.ext.asyncio import AsyncSession

from db import get_in_account
from domain import push
from domain.calendar import BusinessCalendar, add_business_days, add_business_time
from domain.calendars import calendar_from_row, versions_query
from domain.errors import IdempotencyKeyReused, Invalid
from domain.models import (
    AuditEvent,
    BusinessCalendarRow,
    BusinessCalendarVersion,
    Item,
    SlaPolicy,
    User,
)
from domain.planning import Offset, Pause, PlannedRung, RungName, plan_rungs
from domain.policy import RungPolicy, offsets, parse_rungs
from domain.recipients import Recipient, is_valid, resolve


@dataclass(frozen=True, kw_only=True)
class Policy:
    """A policy version with the calendar version it plans on."""

    row: SlaPolicy
    rungs: dict[RungName, RungPolicy | None]
    calendar: BusinessCalendar
    calendar_version: BusinessCalendarVersion

    @classmethod
    def on(cls, row: SlaPolicy, version: BusinessCalendarVersion) -> Policy:
        """Policy version `row` on calendar version `version`, parsed."""
        return cls(
            row=row,
            rungs=parse_rungs(row.rungs),
            calendar=calendar_from_row(version),
            calendar_version=version,
        )


@dataclass(frozen=True, kw_only=True)
class Stop:
    """What ended an item's pending rungs: `reason` is the claim, resolve or cancel."""

    reason: str
    by: str | None
    at: datetime | None


@dataclass(frozen=True, kw_only=True)
class RungPlan:
    rung: PlannedRung
    policy: RungPolicy
    recipients: tuple[Recipient, ...] | None  # None: not resolved (the create response)


def unknown_type(item_type: str) -> Invalid:
    return Invalid(f"unknown item type {item_type!r}: no SLA policy defines it", field="type")


async def latest_policy(session: AsyncSession, account_id: uuid.UUID, item_type: str) -> SlaPolicy:
    policy = await session.scalar(
        select(SlaPolicy)
        .where(SlaPolicy.account_id == account_id, SlaPolicy.item_type == item_type)
        .order_by(SlaPolicy.version.desc())
        .limit(1)
    )
    if policy is None:
        raise unknown_type(item_type)
    return policy


async def newest_policy(session: AsyncSession, account_id: uuid.UUID, item_type: str) -> Policy:
    """What a new item of `item_type` plans on: the latest policy version on the latest
    version of its calendar, in one query."""
    row = (
        await session.execute(
            select(SlaPolicy, BusinessCalendarVersion)
            .join(BusinessCalendarRow, BusinessCalendarRow.id == SlaPolicy.calendar_id)
            .join(
                BusinessCalendarVersion,
                (BusinessCalendarVersion.calendar_id == BusinessCalendarRow.id)
                & (BusinessCalendarVersion.version == BusinessCalendarRow.version),
            )
            .where(
                SlaPolicy.account_id == account_id,
                SlaPolicy.item_type == item_type,
                BusinessCalendarRow.account_id == account_id,
                BusinessCalendarVersion.account_id == account_id,
            )
            .order_by(SlaPolicy.version.desc())
            .limit(1)
        )
    ).one_or_none()
    if row is None:
        raise unknown_type(item_type)
    policy, version = row
    return Policy.on(policy, version)


async def latest_calendar_version(
    session: AsyncSession, account_id: uuid.UUID, calendar_id: uuid.UUID
) -> BusinessCalendarVersion:
    version = await session.scalar(versions_query(account_id, calendar_id).limit(1))
    assert version is not None  # every calendar is created with its version 1
    return version


async def load_policy(
    session: AsyncSession, policy: SlaPolicy, calendar_version_id: uuid.UUID | None = None
) -> Policy:
    """`policy` on calendar version `calendar_version_id` (an item's pin), or on the latest
    version of its calendar (a new item's)."""
    if calendar_version_id is None:
        version = await latest_calendar_version(session, policy.account_id, policy.calendar_id)
    else:
        found = await get_in_account(
            session, BusinessCalendarVersion, calendar_version_id, policy.account_id
        )
        assert found is not None  # a RESTRICT foreign key
        version = found
    return Policy.on(policy, version)


async def pinned_policy(session: AsyncSession, item: Item) -> Policy:
    """What `item` plans on: its pinned policy version and calendar version."""
    policy = await get_in_account(session, SlaPolicy, item.policy_id, item.account_id)
    assert policy is not None  # a RESTRICT foreign key
    return await load_policy(session, policy, item.calendar_version_id)


async def valid_user(
    session: AsyncSession, account_id: uuid.UUID, user_id: uuid.UUID, field: str
) -> User:
    user = await session.scalar(
        select(User).where(User.id == user_id, User.account_id == account_id)
    )
    if user is None or not is_valid(user):
        raise Invalid(f"unknown or inactive user {user_id}", field=field)
    return user


@dataclass(frozen=True, kw_only=True)
class Idempotency:
    """A caller's `Idempotency-Key`, the endpoint it was sent to, and what was sent."""

    key: str
    scope: str  # "tasks" | "handoffs"
    fingerprint: str

    @classmethod
    def of(
        cls, key: str | None, scope: str, actor_id: uuid.UUID, request: Any
    ) -> Idempotency | None:
        if key is None:
            return None
        canonical = json.dumps(
            {"scope": scope, "actor": str(actor_id), "request": request},
            sort_keys=True,
            separators=(",", ":"),
        )
        return cls(key=key, scope=scope, fingerprint=hashlib.sha256(canonical.encode()).hexdigest())


@dataclass(frozen=True, kw_only=True)
class Created:
    item: Item
    created: bool  # False: an idempotent replay of an earlier request
    policy: Policy  # what the item plans on: a new one's newest, a replay's own pins
    names: dict[uuid.UUID | None, str]  # its assignee's, when it has one


@dataclass(frozen=True, kw_only=True)
class Caller:
    """Who creates, as their token says: `escalator_create_item` confirms them against
    their row (active, the token's epoch) and their role against `roles`."""

    account_id: uuid.UUID
    user_id: uuid.UUID
    epoch: int
    roles: tuple[str, ...]  # the roles that may create


class CallerRefused(Exception):
    """The caller may not create: their token is refused ('inactive', 'revoked'), or their
    role is not one that may ('forbidden'). Nothing was written."""

    def __init__(self, refusal: str) -> None:
        super().__init__(refusal)
        self.refusal = refusal


class Executes(Protocol):
    """An `AsyncConnection` (a create in one call, outside any transaction) or the
    request's `AsyncSession` (a handoff's, after it has read its policy)."""

    async def execute(
        self, statement: Executable, parameters: dict[str, Any], /
    ) -> Result[Any]: ...


_CREATE = text(
    "SELECT outcome, made, policy, version, assignee_name FROM escalator_create_item("
    ":account, :actor, :epoch, :roles, :item, :policy, :version, :audit, :event)"
).bindparams(
    bindparam("roles", type_=ARRAY(Text)),
    bindparam("item", type_=JSONB),
    bindparam("audit", type_=JSONB),
    bindparam("event", type_=JSONB),
)


async def _create(
    db: Executes,
    caller: Caller,
    new: Item,
    idempotency: Idempotency | None,
    pinned: Policy | None = None,
) -> Created:
    """Create `new` once per (account, scope, key), with its audit row and its event, in
    one call (`escalator_create_item`): a retry of the same request returns the first item
    with created=False; the same key on a different request is refused. `pinned`: the policy
    the caller planned on; else the type's newest, read by the call."""
    if idempotency is not None:
        new.idempotency_key = idempotency.key
        new.idempotency_scope = idempotency.scope
        new.request_fingerprint = idempotency.fingerprint
    columns = {c.key: getattr(new, c.key) for c in Item.__table__.columns}
    row = (
        await db.execute(
            _CREATE,
            {
                "account": caller.account_id,
                "actor": caller.user_id,
                "epoch": caller.epoch,
                "roles": list(caller.roles),
                "item": jsonable(columns),
                "policy": pinned.row.id if pinned else None,
                "version": pinned.calendar_version.id if pinned else None,
                "audit": {
                    "action": "created",
                    "key": f"{new.id}:created",
                    "data": {"kind": new.kind, "type": new.item_type, "intent": new.intent},
                },
                "event": {
                    "item_id": str(new.id),
                    "kind": "item.created",
                    "payload": {**push.summary(new), "actor_id": str(caller.user_id)},
                    "dedup_key": f"{new.id}:created",
                },
            },
        )
    ).one()
    if row.outcome in ("inactive", "revoked", "forbidden"):
        raise CallerRefused(row.outcome)
    if row.outcome == "unknown_type":
        raise unknown_type(new.item_type)
    if row.outcome == "handoff_type":
        raise Invalid(f"{new.item_type!r} is a handoff type: create it as a handoff", field="type")
    if row.outcome == "unknown_assignee":
        raise Invalid(f"unknown or inactive user {new.assignee_id}", field="assignee_id")
    item = Item(**dict(row.made))
    if row.outcome == "key_reused":
        assert idempotency is not None  # only a keyed insert can conflict
        raise IdempotencyKeyReused(
            f"Idempotency-Key {idempotency.key!r} was already used for a different "
            f"request to this endpoint (item {item.id}); use a new key for a new request",
            key=idempotency.key,
        )
    assert row.outcome in ("created", "replayed"), row.outcome
    return Created(
        item=item,
        created=row.outcome == "created",
        policy=Policy.on(
            SlaPolicy(**dict(row.policy)), BusinessCalendarVersion(**dict(row.version))
        ),
        names={item.assignee_id: row.assignee_name} if row.assignee_name else {},
    )


def jsonable(columns: dict[str, Any]) -> dict[str, Any]:
    """A row's values as JSON for `jsonb_populate_record`: instants and ids as text."""
    return {
        k: v.isoformat() if isinstance(v, datetime) else str(v) if isinstance(v, uuid.UUID) else v
        for k, v in columns.items()
    }


async def create_task(
    db: Executes,
    caller: Caller,
    *,
    item_type: str,
    title: str,
    assignee_id: uuid.UUID,
    due_at: datetime,
    idempotency: Idempotency | None,
) -> Created:
    """A task, in one call: the type's newest policy is read by the call itself."""
    new = Item(
        id=uuid.uuid4(),
        account_id=caller.account_id,
        kind="task",
        item_type=item_type,
        title=title,
        assignee_id=assignee_id,
        creator_id=caller.user_id,
        due_at=due_at,
        state="open",
        pauses=[],
    )
    return await _create(db, caller, new, idempotency)


async def create_handoff(
    session: AsyncSession,
    caller: Caller,
    *,
    session_ref: str,
    intent: str,
    title: str,
    notes: str | None,
    priority: str,
    snapshot: dict[str, Any],
    idempotency: Idempotency | None,
    now: datetime,
) -> Created:
    """Escalate: the response target plays the role of due. Park: private, clock stopped.
    The due is planned on the policy read first, and the create pins that policy."""
    loaded = await newest_policy(session, caller.account_id, "handoff")
    target = Offset.from_dict(loaded.row.response_target or {"business_minutes": 30})
    if target.business_days is not None:
        due_at = add_business_days(now, target.business_days, loaded.calendar)
    else:
        assert target.business_time is not None  # Offset guarantees exactly one of the two
        due_at = add_business_time(now, target.business_time, loaded.calendar)
    parked = intent == "park"
    new = Item(
        id=uuid.uuid4(),
        account_id=caller.account_id,
        kind="handoff",
        item_type="handoff",
        title=title,
        creator_id=caller.user_id,
        due_at=due_at,
        intent=intent,
        engineer_notes=notes,
        priority=priority,
        session_ref=session_ref,
        snapshot=snapshot,
        state="paused" if parked else "open",
        paused_at=now if parked else None,
        pauses=[{"start": now.isoformat(), "end": None}] if parked else [],
    )
    return await _create(session, caller, new, idempotency, loaded)


def item_pauses(item: Item) -> list[Pause]:
    return [
        Pause(
            start=datetime.fromisoformat(p["start"]),
            end=datetime.fromisoformat(p["end"]) if p.get("end") else None,
        )
        for p in item.pauses
    ]


def done_marks(item: Item) -> dict[RungName, tuple[Any, datetime]]:
    marks: dict[RungName, tuple[Any, datetime]] = {}
    for name in ("remind", "escalate_1", "escalate_2"):
        for status in ("fired", "skipped"):
            at = getattr(item, f"{name}_{status}_at")
            if at is not None:
                marks[name] = (status, at)
    return marks


def plan_of(item: Item, policy: Policy, now: datetime) -> list[PlannedRung]:
    """The plan the workflow follows for `item` on `policy`, from the database alone."""
    if item.due_at is None:
        return []
    return plan_rungs(
        due=item.due_at,
        offsets=offsets(policy.rungs),
        cal=policy.calendar,
        pauses=item_pauses(item),
        now=now,
        done=done_marks(item),
    )


def bare_plan(item: Item, policy: Policy, now: datetime) -> list[RungPlan]:
    """The plan without its recipients (a create's answer: no query)."""
    result = []
    for rung in plan_of(item, policy, now):
        rung_policy = policy.rungs[rung.name]
        assert rung_policy is not None
        result.append(RungPlan(rung=rung, policy=rung_policy, recipients=None))
    return result


async def plan_item(
    session: AsyncSession, item: Item, policy: Policy, now: datetime
) -> list[RungPlan]:
    """The plan, with who would be notified if each rung fired now (one query per rung)."""
    result = []
    for bare in bare_plan(item, policy, now):
        found = await resolve(session, item, bare.policy.recipients, actor_id=None)
        result.append(replace(bare, recipients=found.recipients))
    return result


async def people_names(
    session: AsyncSession, account_id: uuid.UUID, found: list[Item]
) -> dict[uuid.UUID | None, str]:
    """The names of `found`'s claimers and assignees, in one query."""
    ids = {item.claimed_by for item in found} | {item.assignee_id for item in found}
    ids.discard(None)
    if not ids:
        return {}
    rows = await session.execute(
        select(User.id, User.name).where(User.account_id == account_id, User.id.in_(ids))
    )
    return dict(rows.all())


async def next_recipients(
    session: AsyncSession, wanted: list[tuple[Item, str]]
) -> dict[uuid.UUID, list[str]]:
    """Who each item's named rung would notify if it fired now, by name. The resolvers read
    only the item's assignee and claimer (and the account's roles), so items alike in
    those, their policy and their next rung share one query; each policy is read once."""
    chains: dict[uuid.UUID, dict[RungName, RungPolicy | None]] = {}
    resolved: dict[tuple[Any, ...], list[str]] = {}
    names: dict[uuid.UUID, list[str]] = {}
    for item, rung in wanted:
        if item.policy_id is None:
            continue
        if item.policy_id not in chains:
            policy = await get_in_account(session, SlaPolicy, item.policy_id, item.account_id)
            assert policy is not None  # a RESTRICT foreign key
            chains[item.policy_id] = parse_rungs(policy.rungs)
        rung_policy = chains[item.policy_id].get(rung)  # type: ignore[call-overload]
        if rung_policy is None:
            continue
        alike = (item.policy_id, rung, item.assignee_id, item.claimed_by)
        if alike not in resolved:
            found = await resolve(session, item, rung_policy.recipients, actor_id=None)
            resolved[alike] = [r.name for r in found.recipients]
        names[item.id] = resolved[alike]
    return names


async def stopped_by(session: AsyncSession, item: Item) -> Stop | None:
    """Why the item's pending rungs will not fire: the claim, resolve or cancel that ended
    them, by whom and when (from the audit)."""
    if item.state not in ("claimed", "resolved", "cancelled"):
        return None
    row = (
        await session.execute(
            select(AuditEvent.created_at, User.name)
            .outerjoin(User, User.id == AuditEvent.actor_id)
            .where(
                AuditEvent.account_id == item.account_id,
                AuditEvent.item_id == item.id,
                AuditEvent.action == item.state,
            )
            .order_by(AuditEvent.id.desc())
            .limit(1)
        )
    ).first()
    return Stop(reason=item.state, by=row.name if row else None, at=row.created_at if row else None)


TIER = case(
    (Item.escalate_2_fired_at.is_not(None), 2),
    (Item.escalate_1_fired_at.is_not(None), 1),
    (Item.remind_fired_at.is_not(None), 0),
    else_=-1,
)


def queue_query(account_id: uuid.UUID, now: datetime) -> Select[Item, int]:
    """Open escalated handoffs, parked handoffs, and overdue or escalated tasks, most urgent
    first: highest tier, then longest overdue."""
    return (
        select(Item, TIER.label("tier"))
        .where(
            Item.account_id == account_id,
            Item.state.in_(("open", "paused", "claimed")),
            or_(
                Item.kind == "handoff",
                Item.due_at < now,
                Item.escalate_1_fired_at.is_not(None),
            ),
        )
        .order_by(TIER.desc(), Item.due_at.asc().nulls_last(), Item.id)
    )
