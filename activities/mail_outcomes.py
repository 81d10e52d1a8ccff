"""The delivery engine's bookkeeping around the mails (`activities.email` sends them): the
rows' keys, which outcomes need no send, what a suppressed or final row reports, the
`delivery.failed` announcement, the metrics, and the activity's time budget and heartbeat."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from datetime import timedelta
from typing import Any

from sqlalchemy import Table, bindparam, select
from sqlalchemy.dialects.postgresql import UUID as PG_UUID
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio import activity

import metrics
from activities.mail import MailItem, mail_item
from db import get_in_account
from domain import deliveries, push
from domain.models import BusinessCalendarVersion, Item, SlaPolicy, User
from workflows.types import FireRung, MailOutcome, SendEmails

# Time kept back from an activity's timeout for the outcomes' record.
RECORD_MARGIN = timedelta(seconds=5)
ITEM: Table = Item.__table__  # type: ignore[assignment]
POLICY: Table = SlaPolicy.__table__  # type: ignore[assignment]
CALENDAR: Table = BusinessCalendarVersion.__table__  # type: ignore[assignment]
ASSIGNEE = User.__table__.alias("assignee")
CREATOR = User.__table__.alias("creator")
MAIL_COLUMNS = ("id", "state", "title", "item_type", "kind", "due_at", "engineer_notes", "priority")


# The item as its mails need it (`open_item`, `activities.mail.mail_item`): its columns, and
# what its mails say of the policy and calendar it pins (each rung's offset, the calendar's
# zone), whose it is and who made it. A rung's call (`escalator_fire_rung`) returns the same.
ITEM_ROW = (
    select(
        *(ITEM.c[name] for name in MAIL_COLUMNS),
        POLICY.c.rungs,
        CALENDAR.c.tz,
        ASSIGNEE.c.name.label("assignee_name"),
        CREATOR.c.name.label("creator_name"),
    )
    .join(POLICY, POLICY.c.id == ITEM.c.policy_id)
    .join(CALENDAR, CALENDAR.c.id == ITEM.c.calendar_version_id)
    .outerjoin(ASSIGNEE, ASSIGNEE.c.id == ITEM.c.assignee_id)
    .outerjoin(CREATOR, CREATOR.c.id == ITEM.c.creator_id)
    .where(
        ITEM.c.id == bindparam("p_item", type_=PG_UUID),
        ITEM.c.account_id == bindparam("p_account", type_=PG_UUID),
    )
)
ITEM_STATE = select(ITEM.c.state).where(
    ITEM.c.id == bindparam("p_item", type_=PG_UUID),
    ITEM.c.account_id == bindparam("p_account", type_=PG_UUID),
)


async def announce(
    session: AsyncSession,
    key: deliveries.Key,
    failed: Sequence[tuple[Any, str]],
    emails: dict[str, str],
) -> None:
    """A `delivery.failed` push per newly failed row, while the item is open (nothing is
    announced about an item someone has claimed). Last in its transaction: the push's
    ordering lock is held until commit."""
    if not failed:
        return
    # The caller holds the send guard (taken before the rows): a claim that is committing
    # went first, and is seen here.
    item = await get_in_account(session, Item, key.item_id, key.account_id)
    if item is None or item.state != "open":
        return
    for row, error in failed:
        recipient_id = str(row.recipient_id)
        await push.publish(
            session,
            account_id=key.account_id,
            item=item,
            kind="delivery.failed",
            dedup_key=f"{key.item_id}:{key.event_key}:{recipient_id}:failed",
            data={"recipient": emails.get(recipient_id, recipient_id), "error": error},
        )


def send_deadline() -> float:
    """The loop time by which this activity's sends must be done, its record still to go."""
    allowed = activity.info().start_to_close_timeout or timedelta(minutes=1)
    return asyncio.get_running_loop().time() + (allowed - RECORD_MARGIN).total_seconds()


def batch_of(request: FireRung) -> SendEmails:
    return SendEmails(
        item_id=request.item_id,
        account_id=request.account_id,
        recipients=[],
        event_key=request.event_key,
        rung=request.rung,
        tier=request.tier,
        critical=request.critical,
        at=request.at,
        planned_at=request.planned_at,
    )


def delivery_key(request: SendEmails) -> deliveries.Key:
    return deliveries.Key(
        account_id=uuid.UUID(request.account_id),
        item_id=uuid.UUID(request.item_id),
        event_key=request.event_key,
    )


async def open_item(
    session: AsyncSession, request: SendEmails, account_id: uuid.UUID
) -> MailItem | None:
    params = {"p_item": uuid.UUID(request.item_id), "p_account": account_id}
    row = (await session.execute(ITEM_ROW, params)).one_or_none()
    if row is None or row.state != "open":
        return None
    return mail_item(row)


async def suppress_all(
    session: AsyncSession, request: SendEmails, account_id: uuid.UUID
) -> dict[str, MailOutcome]:
    """The item is not open: its live rows are `suppressed` (rows created if missing, so the
    record shows whom it would have gone to); each recipient's outcome, final rows as they
    are."""
    key = delivery_key(request)
    ids = [uuid.UUID(r.user_id) for r in request.recipients]
    await deliveries.ensure(session, key, ids)
    state = await session.scalar(ITEM_STATE, {"p_item": key.item_id, "p_account": account_id})
    suppressed = await deliveries.suppress_item(
        session, account_id, key.item_id, f"not sent: the item is {state}"
    )
    metrics.delivered("email", "suppressed", suppressed)
    return {
        str(row.recipient_id): final_outcome(row)
        for row in await deliveries.rows(session, key, ids)
    }


def not_now(rows: Sequence[Any]) -> dict[str, MailOutcome]:
    """The outcomes of the attempted rows that are not to be sent now: final or deferred."""
    outcomes = {}
    for row in rows:
        if row.status in deliveries.FINAL:
            outcomes[str(row.recipient_id)] = final_outcome(row)
        elif row.status == "deferred":
            outcomes[str(row.recipient_id)] = MailOutcome(
                user_id=str(row.recipient_id), status="deferred", deferred_until=row.deferred_until
            )
    return outcomes


def final_outcome(row: Any) -> MailOutcome:
    return MailOutcome(
        user_id=str(row.recipient_id),
        status=row.status,
        message_id=row.message_id,
        sent_at=row.sent_at,
        error=row.last_error if row.status == "failed" else None,
    )


def measure(request: SendEmails, item: MailItem, outcomes: Sequence[MailOutcome]) -> None:
    """Metrics of the mails this attempt sent or failed, and the rung's lateness to the
    last accept (a transient error or a mail not tried counts as pending: it goes again)."""
    statuses = Counter("pending" if o.status in ("retry", "later") else o.status for o in outcomes)
    for status in ("sent", "failed", "pending", "suppressed"):
        metrics.delivered("email", status, statuses[status])
    accepted = [o.sent_at for o in outcomes if o.status == "sent" and o.sent_at is not None]
    if request.planned_at is not None and accepted:
        metrics.rung_sent(request.tier, item.item_type, request.planned_at, max(accepted))


@contextlib.asynccontextmanager
async def heartbeating(every: float = 1.0) -> AsyncIterator[None]:
    async def beat() -> None:
        while True:
            activity.heartbeat()
            await asyncio.sleep(every)

    beating = asyncio.create_task(beat())
    try:
        yield
    finally:
        beating.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await beating
