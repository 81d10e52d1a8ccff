"""`fire`: every rung, and a handoff's fan-out, fires in one transaction under the item's
row lock (`fire_rung`, and the first half of `activities.email.fire_and_send`).

The item is locked FOR UPDATE and re-checked open; then, in the same transaction: the
rung's fired stamp (and its planned instant, now the stamp) and its audit row (a handoff's
fan-out has neither: it only locks the item), the item's `fell_due` row and `item.overdue`
event when the rung fires at the instant the item falls due, the recipients resolved (the
handoff's escalator left out), `escalation_undeliverable` audited if the chain came up
empty, a `pending` delivery row per email recipient, and the push outbox rows with their
NOTIFY. A claim's UPDATE waits for this lock (or this waits for the claim): the rung and
its push commit before the claim or not at all, so no channel notifies after a claim
commits. The mails then go out under the send guard (`activities.email`), which re-checks
the state."""

from __future__ import annotations

import functools
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, cast

from sqlalchemy import (
    DateTime,
    Integer,
    Row,
    Select,
    String,
    Table,
    bindparam,
    case,
    literal,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import JSONB, insert
from sqlalchemy.dialects.postgresql import UUID as PG_UUID
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

import metrics
from activities.mail_outcomes import with_mail_columns
from db import tenant_session
from domain import audit, lifecycle, push, recipients
from domain.models import AuditEvent, Delivery, Item
from workflows.types import FireRung, RungFired

ITEM: Table = Item.__table__  # type: ignore[assignment]
DELIVERY: Table = Delivery.__table__  # type: ignore[assignment]
AUDIT: Table = AuditEvent.__table__  # type: ignore[assignment]
# What the rung reads of its item: the state, the resolvers' columns, the push summary's.
COLUMNS = (
    *("id", "account_id", "kind", "item_type", "title", "state", "intent", "priority"),
    *("due_at", "claimed_by", "assignee_id", "engineer_notes"),
)
JOINED = ("policy_id", "calendar_version_id", "creator_id")  # the mail's columns' keys


class RungActivities:
    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
        self._sessionmaker = sessionmaker

    @activity.defn
    async def fire_rung(self, request: FireRung) -> RungFired:
        """Side effect: one transaction (stamp, audit, deliveries, outbox rows), in Core SQL
        and three statements: the stamp UPDATE that locks the item, one statement for the
        audit rows (`fell_due` too, when the rung fires at the item's due instant), the
        recipients and their delivery rows, and one for the pushes' ordering lock, rows and
        NOTIFY. Idempotency keys: the stamp is set once, the audit keys are the rung's (and
        the due instant's), the delivery rows are unique per (recipient, item, event_key,
        channel), and the push's dedup key is `<item>:<event_key>`, so a retry writes
        nothing twice. Writes nothing when the item is no longer open, and reports its state
        so the workflow follows the database."""
        fired, _, _ = await fire(self._sessionmaker, request)
        return fired


T = TypeVar("T")
# What `fire_and_send` adds to the rung's transaction, before the push: the mails' attempt.
Extra = Callable[[AsyncSession, Row[Any], recipients.Resolution], Awaitable[T]]


async def fire(
    sessionmaker: async_sessionmaker[AsyncSession],
    request: FireRung,
    extra: Extra[T] | None = None,
) -> tuple[RungFired, Row[Any] | None, T | None]:
    """`fire_rung`'s transaction, with `extra` run inside it after the delivery rows (the
    first step of `fire_and_send`): the rung, the item row it locked, `extra`'s result."""
    account_id = uuid.UUID(request.account_id)
    async with tenant_session(sessionmaker, account_id) as session:
        item = await _stamped(session, request, account_id)
        if item is None:  # not open: read its state (the UPDATE took no row)
            state, claimer = await _state(session, request, account_id)
            unfired = RungFired(recorded=False, state=state, claimed_by=claimer, rung=request.rung)
            return unfired, None, None
        push.defer_until_commit(session)  # the pushes go out together, last
        found = await _audited_recipients(session, request, item)
        if request.fell_due is not None:  # audited with the rung, pushed before it
            await lifecycle.publish_overdue(session, item, request.fell_due)
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
        added = None if extra is None else await extra(session, item, found)
        if "push" in request.channels:
            await push.publish(
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
        await push.flush(session)  # last: the ordering lock is held until commit
        fired = RungFired(
            rung=request.rung,
            recorded=True,
            state=item.state,
            claimed_by=None,
            recipients=list(found.recipients),
            tried=list(found.tried),
        )
    if request.rung != HANDOFF:
        metrics.rung_fired(request.tier, item.item_type)  # committed
    return fired, item, added


@functools.cache
def _stamp(rung: str) -> Select[Any]:
    """The stamp UPDATE of `rung`, built once (statement construction is a large part of a
    rung's CPU), with what its mails say of the item (`with_mail_columns`): parameters
    `p_item`, `p_account`, `p_at`."""
    fired, planned = ITEM.c[f"{rung}_fired_at"], ITEM.c[f"{rung}_at"]
    first, at = fired.is_(None), bindparam("p_at", type_=DateTime(timezone=True))
    stamped = (
        update(ITEM)
        .where(
            ITEM.c.id == bindparam("p_item", type_=PG_UUID),
            ITEM.c.account_id == bindparam("p_account", type_=PG_UUID),
            ITEM.c.state == "open",
        )
        .values({fired: case((first, at), else_=fired), planned: case((first, at), else_=planned)})
        .returning(*(ITEM.c[name] for name in (*COLUMNS, *JOINED)))
        .cte("stamped")
    )
    return with_mail_columns(stamped, COLUMNS)


async def _stamped(
    session: AsyncSession, request: FireRung, account_id: uuid.UUID
) -> Row[Any] | None:
    """The rung's stamp on the open item, which locks it as FOR UPDATE would (a claim's
    UPDATE waits for it, or it for the claim); None if the item is not open. A retry keeps
    the first stamp. The plan's instant of a fired rung is its stamp (what record_plan
    would write next), so the workflow needs no record_plan after a fire."""
    params = {"p_item": uuid.UUID(request.item_id), "p_account": account_id, "p_at": request.at}
    locks_only = request.rung == HANDOFF or request.repeat  # nothing to stamp
    statement = _LOCK if locks_only else _stamp(request.rung)
    row: Row[Any] | None = (await session.execute(statement, params)).one_or_none()
    return row


# A handoff's fan-out, and a rung's repeat, have no stamp to set: they lock the open item
# as the stamp would.
HANDOFF = "handoff"
_LOCK = (
    with_mail_columns(ITEM, COLUMNS)
    .where(
        ITEM.c.id == bindparam("p_item", type_=PG_UUID),
        ITEM.c.account_id == bindparam("p_account", type_=PG_UUID),
        ITEM.c.state == "open",
    )
    .with_for_update(of=ITEM)
)


async def _state(
    session: AsyncSession, request: FireRung, account_id: uuid.UUID
) -> tuple[str, str | None]:
    """The state and claimer of an item that is not open; a missing item is a
    non-retryable error."""
    row = (
        await session.execute(
            select(ITEM.c.state, ITEM.c.claimed_by).where(
                ITEM.c.id == uuid.UUID(request.item_id), ITEM.c.account_id == account_id
            )
        )
    ).one_or_none()
    if row is None:
        raise ApplicationError(f"item {request.item_id} not found", non_retryable=True)
    return row.state, str(row.claimed_by) if row.claimed_by else None


class _Bound:
    """The item's columns the resolvers read, as parameters of a statement built once."""

    account_id = bindparam("p_account", type_=PG_UUID)
    assignee_id = bindparam("p_assignee", type_=PG_UUID)
    claimed_by = bindparam("p_claimer", type_=PG_UUID)


@functools.cache
def _recipients_statement(
    chain: tuple[str, ...],
    email: bool,
    audited: bool = True,
    actor: bool = False,
    due: bool = False,
) -> Select[Any]:
    """One statement, built once per chain: the `rung_fired` audit row (after the
    `fell_due` one, when the item falls due at this instant), the chain's recipients, and
    (if the rung emails) a `pending` delivery row per recipient, in data-modifying CTEs that
    Postgres runs to completion whether or not the result reads them. Parameters: the
    item's (`_Bound`), `p_item`, `p_tier`, `p_data`, `p_key`, `p_event`, `p_due_data`,
    `p_due_key`."""
    item_id = bindparam("p_item", type_=PG_UUID)
    audits = []
    if due:  # first: the item fell due at the rung's instant
        audits.append(
            {
                "action": literal("fell_due"),
                "tier": literal(None, type_=Integer),
                "data": bindparam("p_due_data", type_=JSONB),
                "idempotency_key": bindparam("p_due_key", type_=String),
            }
        )
    if audited:
        audits.append(
            {
                "action": bindparam("p_action", type_=String),
                "tier": bindparam("p_tier", type_=Integer),
                "data": bindparam("p_data", type_=JSONB),
                "idempotency_key": bindparam("p_key", type_=String),
            }
        )
    audit_rows = [{"account_id": _Bound.account_id, "item_id": item_id, **a} for a in audits]
    ctes = []
    if audit_rows:
        written = insert(AUDIT).values(audit_rows)
        ctes.append(
            written.on_conflict_do_nothing(index_elements=["idempotency_key"]).cte("audited")
        )
    if not chain:
        return select(literal(1).label("rank")).where(literal(False)).add_cte(*ctes)
    excluded = bindparam("p_actor", type_=PG_UUID) if actor else None
    subject = cast(recipients.Subject, _Bound())
    found = recipients.ranked(subject, chain, excluded).cte("found")  # type: ignore[arg-type]
    best = found.c.rank == recipients.best_rank(found)
    query = select(found).where(best).add_cte(*ctes)
    if email:
        event_key = bindparam("p_event", type_=String)
        rows = select(
            _Bound.account_id, item_id, found.c.id, event_key, literal("email"), found.c.rank
        ).where(best)
        columns = ["account_id", "item_id", "recipient_id", "event_key", "channel"]
        columns.append("resolver_rank")
        deliveries = insert(DELIVERY).from_select(columns, rows).on_conflict_do_nothing()
        query = query.add_cte(deliveries.cte("deliveries"))
    return query


async def _audited_recipients(
    session: AsyncSession, request: FireRung, item: Row[Any]
) -> recipients.Resolution:
    """`_recipients_statement` for this rung and item: the audit row, the recipients, the
    delivery rows, in one round trip."""
    query = _recipients_statement(
        tuple(request.chain),
        "email" in request.channels,
        audited=request.rung != HANDOFF,
        actor=request.actor_id is not None,
        due=request.fell_due is not None,
    )
    more = {}
    if request.fell_due is not None:
        due = lifecycle.fell_due(item, request.fell_due)
        more = {"p_due_data": due.data, "p_due_key": due.key}
    params = {
        **more,
        "p_actor": uuid.UUID(request.actor_id) if request.actor_id else None,
        "p_account": item.account_id,
        "p_assignee": item.assignee_id,
        "p_claimer": item.claimed_by,
        "p_item": item.id,
        "p_tier": request.tier,
        "p_data": {
            "rung": request.rung,
            "planned_at": request.planned_at.isoformat(),
            **({"repeat": request.repeat} if request.repeat else {}),
        },
        "p_action": "rung_repeated" if request.repeat else "rung_fired",
        "p_key": f"{item.id}:{request.rung}:repeat:{request.repeat}"
        if request.repeat
        else f"{item.id}:{request.rung}:fired",
        "p_event": request.event_key,
    }
    rows = (await session.execute(query, params)).all()
    return (
        recipients.winners(rows, request.chain)
        if request.chain
        else recipients.Resolution(recipients=(), resolver=None, tried=())
    )
