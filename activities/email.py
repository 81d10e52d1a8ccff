"""The mail half of the delivery engine: `send_emails`, `fire_and_send`, `record_outcomes`
and `record_failures`. Each mail is sent at most once per delivery row, none after a claim,
and one recipient's trouble is never the batch's.

1. The attempt, one committed transaction: every recipient's row into its attempt state
   (`domain.deliveries.attempt`): a final row is skipped, a recipient in quiet hours is
   `deferred`, the rest are `sending` with attempts + 1. If the item is no longer open, every
   live row of it is `suppressed` instead.
2. The sends, concurrently over the worker's SMTP pool. Each mail, once a pooled connection
   is free for it, is rendered (an address that cannot be encoded fails that recipient
   alone), then sent in a short transaction of its own that holds the item's send guard
   (`domain.send_guard`) and re-reads the item's state: a claim waits for the mails in
   flight, never for the batch, and a mail that starts after a claim committed is not sent.
   No mail is started with less time left than `smtp_timeout_seconds` before the
   activity's own timeout: a slow but working server is never cut off mid-mail; the mails
   not started come back `later` and the workflow sends them at once in a new activity.
3. The outcomes, recorded together (`domain.deliveries.record`), with the audit row and the
   `delivery.failed` push of each new failure (none once the item is not open). If
   Postgres fails there, the result still says what SMTP did (`recorded=False`) and the
   workflow records it with `record_outcomes`, retried until Postgres is back: an accepted
   mail is never sent again for a failure to record it.

The one honest limit (RFC 1047): a worker that dies between SMTP's accept and the record
leaves the row `sending`; the retry sends again, with the same Message-ID, and the row says
`attempts: 2` with the unknown outcome in `last_error`.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from dataclasses import replace
from datetime import timedelta
from email.message import Message
from typing import Any

import aiosmtplib
from sqlalchemy import Row, Table, bindparam, select
from sqlalchemy.dialects.postgresql import UUID as PG_UUID
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity

import metrics
from activities.mail import MailItem, MailLinks, mail_item, message_id, render
from activities.rungs import fire
from activities.smtp import Smtp, SmtpPool
from config import Settings
from db import get_in_account, tenant_session
from domain import deliveries, push, send_guard
from domain.addresses import for_smtp
from domain.clock import utcnow
from domain.models import BusinessCalendarVersion, Item, SlaPolicy
from domain.quiet_hours import quiet_until_of
from domain.recipients import Recipient, Resolution
from workflows.types import (
    FireRung,
    MailOutcome,
    RecordFailures,
    RecordOutcomes,
    RungFired,
    SendEmails,
    SendEmailsResult,
)

# `fire_and_send` mails up to this many recipients itself (a local activity); a bigger
# fan-out goes to `send_emails`, a heartbeating activity of its own.
LOCAL_SENDS = 25
# Time kept back from an activity's timeout for the outcomes' record.
RECORD_MARGIN = timedelta(seconds=5)
ITEM: Table = Item.__table__  # type: ignore[assignment]
POLICY: Table = SlaPolicy.__table__  # type: ignore[assignment]
CALENDAR: Table = BusinessCalendarVersion.__table__  # type: ignore[assignment]
# The item, with what its mails say of the policy and calendar it pins: each rung's offset
# and the calendar's zone.
_ITEM = (
    select(
        *(ITEM.c[name] for name in ("id", "state", "title", "item_type", "kind", "due_at")),
        ITEM.c.engineer_notes,
        ITEM.c.priority,
        POLICY.c.rungs,
        CALENDAR.c.tz,
    )
    .join(POLICY, POLICY.c.id == ITEM.c.policy_id)
    .join(CALENDAR, CALENDAR.c.id == ITEM.c.calendar_version_id)
    .where(
        ITEM.c.id == bindparam("p_item", type_=PG_UUID),
        ITEM.c.account_id == bindparam("p_account", type_=PG_UUID),
    )
)
_STATE = select(ITEM.c.state).where(
    ITEM.c.id == bindparam("p_item", type_=PG_UUID),
    ITEM.c.account_id == bindparam("p_account", type_=PG_UUID),
)


class EmailActivities:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        smtp: Smtp,
        pool_size: int = 8,
        links: MailLinks | None = None,
    ) -> None:
        self._sessionmaker = sessionmaker
        self._smtp = smtp
        self._pool = SmtpPool(smtp, pool_size)
        self._links = links or MailLinks.from_settings(Settings())

    @activity.defn
    async def send_emails(self, request: SendEmails) -> SendEmailsResult:
        """Side effect: one email per recipient over SMTP. Idempotency key: each delivery
        row's unique (recipient, item, event_key, 'email'); a `sent` row is never sent again,
        so a retry of the whole activity (a dead worker) sends only what is not yet sent.
        Every per-recipient error is an outcome, never a failure of the activity: a
        transient one `retry`, a permanent one `failed`. Heartbeats every second."""
        deadline = _deadline()
        async with _heartbeating():
            return SendEmailsResult(outcomes=await self._send_all(request, deadline))

    @activity.defn
    async def fire_and_send(self, request: FireRung) -> RungFired:
        """Side effect: `fire_rung`'s transaction, which (if the rung emails at most
        `LOCAL_SENDS` recipients) also commits the mails' attempt, then the sends. Run as a
        local activity, a rung costs one workflow task and no activity round trip through
        the server. Idempotency: both parts' keys; a retry re-fires nothing and sends only
        what is not yet sent. More recipients than that are left to `send_emails`
        (`outcomes` None), which heartbeats."""
        deadline = _deadline()
        account_id = uuid.UUID(request.account_id)
        batch = _batch(request)

        async def attempt(
            session: AsyncSession, item: Row[Any], found: Resolution
        ) -> dict[str, MailOutcome] | None:
            if "email" not in request.channels or not found.recipients:
                return None
            if len(found.recipients) > LOCAL_SENDS:
                return None
            rows = await deliveries.attempt(session, _key(batch), _wanted(batch, found.recipients))
            return _not_now(rows)

        fired, item, prepared = await fire(self._sessionmaker, request, attempt)
        if item is None or prepared is None:
            return fired
        batch = replace(batch, recipients=list(fired.recipients))
        due = [r for r in batch.recipients if r.user_id not in prepared]
        if due:
            mail = await self._mail_item(account_id, batch)
            if mail is None:  # gone since: nothing sent
                prepared.update(await self._suppress(batch, account_id, due))
            else:
                prepared.update(await self._deliver(batch, account_id, due, mail, deadline))
        return replace(fired, outcomes=[prepared[r.user_id] for r in batch.recipients])

    @activity.defn
    async def record_outcomes(self, request: RecordOutcomes) -> None:
        """Side effect: the outcomes a send reported but could not record (Postgres failed
        after SMTP answered), recorded as `send_emails` would have. Idempotent: `sent` is
        set once, the rest only on rows still `sending`, audits once per delivery."""
        account_id = uuid.UUID(request.batch.account_id)
        await self._record(request.batch, account_id, request.outcomes)

    @activity.defn
    async def record_failures(self, request: RecordFailures) -> list[str]:
        """Side effect: out of attempts, every named delivery still `pending` or `sending`
        becomes `failed` with the error, its `delivery_failed` audit row (key
        `<delivery>:failed`, so once) and, while the item is open, its `delivery.failed`
        push. Returns the recipients it marked."""
        account_id = uuid.UUID(request.account_id)
        key = deliveries.Key(
            account_id=account_id,
            item_id=uuid.UUID(request.item_id),
            event_key=request.event_key,
        )
        ids = [uuid.UUID(r) for r in request.recipient_ids]
        async with tenant_session(self._sessionmaker, account_id) as session:
            rows = await deliveries.give_up(session, key, ids, request.error, request.tier)
            await _announce(session, key, [(row, request.error) for row in rows], request.emails)
        metrics.delivered("email", "failed", len(rows))
        return [str(row.recipient_id) for row in rows]

    # ---- the engine ----------------------------------------------------------------------
    async def _send_all(self, request: SendEmails, deadline: float) -> list[MailOutcome]:
        unique = list({r.user_id: r for r in request.recipients}.values())
        request = replace(request, recipients=unique)  # one row, one mail, per recipient
        account_id = uuid.UUID(request.account_id)
        outcomes, item = await self._prepare(request, account_id)
        due = [r for r in request.recipients if r.user_id not in outcomes]
        if due and item is not None:
            outcomes.update(await self._deliver(request, account_id, due, item, deadline))
        return [outcomes[r.user_id] for r in request.recipients]

    async def _mail_item(self, account_id: uuid.UUID, request: SendEmails) -> MailItem | None:
        async with tenant_session(self._sessionmaker, account_id) as session:
            return await _open_item(session, request, account_id)

    async def _prepare(
        self, request: SendEmails, account_id: uuid.UUID
    ) -> tuple[dict[str, MailOutcome], MailItem | None]:
        """The attempt, committed: the outcome of every recipient not to be sent now."""
        async with tenant_session(self._sessionmaker, account_id) as session:
            item = await _open_item(session, request, account_id)
            if item is None:
                return await _suppressed(session, request, account_id), None
            rows = await deliveries.attempt(
                session, _key(request), _wanted(request, request.recipients)
            )
            return _not_now(rows), item

    async def _suppress(
        self, request: SendEmails, account_id: uuid.UUID, due: Sequence[Recipient]
    ) -> dict[str, MailOutcome]:
        async with tenant_session(self._sessionmaker, account_id) as session:
            return await _suppressed(session, replace(request, recipients=list(due)), account_id)

    async def _deliver(
        self,
        request: SendEmails,
        account_id: uuid.UUID,
        due: Sequence[Recipient],
        item: MailItem,
        deadline: float,
    ) -> dict[str, MailOutcome]:
        """The sends, each under the send guard, then their record, together."""
        sent = await asyncio.gather(
            *(self._send_one(request, account_id, r, item, deadline) for r in due)
        )
        outcomes = {o.user_id: o for o in sent}
        try:
            await self._record(request, account_id, sent)
        except Exception as error:
            # SMTP has what it has; only the record is missing. Never send again for that:
            # the workflow records what this could not.
            activity.logger.warning("email.unrecorded", extra={"error": str(error)})
            outcomes = {k: replace(o, recorded=False) for k, o in outcomes.items()}
        _measure(request, item, sent)
        activity.logger.info(
            "email.sent",
            extra={"sent": sum(o.status == "sent" for o in sent), "rung": request.rung},
        )
        return outcomes

    async def _send_one(
        self,
        request: SendEmails,
        account_id: uuid.UUID,
        recipient: Recipient,
        item: MailItem,
        deadline: float,
    ) -> MailOutcome:
        """One recipient's mail and what became of it; never raises. It is rendered once a
        pooled connection is free for it, and sent only if there is time for it and the
        item is open under the send guard."""
        user_id = recipient.user_id
        async with self._pool.slot():
            try:
                message = render(
                    request, recipient, item, self._links, smtputf8=self._smtp.smtputf8
                )
                message["From"] = self._smtp.mail_from
                wire = for_smtp(recipient.email, smtputf8=self._smtp.smtputf8)
            except Exception as error:  # this address or name, never the batch
                reason = f"cannot be sent to {recipient.email!r}: {error}"
                return MailOutcome(user_id=user_id, status="failed", error=reason)
            if deadline - asyncio.get_running_loop().time() < self._smtp.timeout:
                return MailOutcome(user_id=user_id, status="later")
            outcome: MailOutcome | None = None
            try:
                async with tenant_session(self._sessionmaker, account_id) as session:
                    await send_guard.sending(session, item.id)
                    params = {"p_item": item.id, "p_account": account_id}
                    state = await session.scalar(_STATE, params)
                    if state != "open":
                        reason = f"not sent: the item is {state}"
                        outcome = MailOutcome(user_id=user_id, status="suppressed", error=reason)
                    else:
                        outcome = await self._smtp_send(request, user_id, message, wire)
            except Exception as error:  # Postgres, at the guard, the read or the commit
                if outcome is None:
                    reason = f"not sent: the database failed: {type(error).__name__}: {error}"
                    return MailOutcome(user_id=user_id, status="retry", error=reason)
            return outcome

    async def _smtp_send(
        self, request: SendEmails, user_id: str, message: Message, wire: str
    ) -> MailOutcome:
        """One mail over a pooled connection, within the mail's time: its outcome."""
        try:
            async with asyncio.timeout(self._smtp.timeout):
                await self._pool.send_now(message, sender=self._smtp.mail_from, recipients=[wire])
        except aiosmtplib.SMTPException as error:
            status = "failed" if _is_permanent(error) else "retry"
            return MailOutcome(user_id=user_id, status=status, error=str(error))
        except (OSError, TimeoutError) as error:  # refused, reset, or slower than its time
            reason = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
            return MailOutcome(user_id=user_id, status="retry", error=reason)
        except Exception as error:  # this message cannot be sent (an encoding, say)
            reason = f"cannot be sent: {type(error).__name__}: {error}"
            return MailOutcome(user_id=user_id, status="failed", error=reason)
        return MailOutcome(
            user_id=user_id,
            status="sent",
            sent_at=utcnow(),
            message_id=message_id(user_id, request.item_id, request.event_key),
        )

    async def _record(
        self, request: SendEmails, account_id: uuid.UUID, outcomes: Sequence[MailOutcome]
    ) -> None:
        results = [
            deliveries.Result(
                recipient_id=uuid.UUID(o.user_id),
                status=o.status,
                sent_at=o.sent_at,
                message_id=o.message_id,
                error=o.error,
            )
            for o in outcomes
            if o.status in ("sent", "failed", "retry", "later", "suppressed")
        ]
        if not results:
            return
        key = _key(request)
        emails = {r.user_id: r.email for r in request.recipients}
        errors = {o.user_id: o.error or "" for o in outcomes}
        async with tenant_session(self._sessionmaker, account_id) as session:
            failed = await deliveries.record(session, key, results, request.tier)
            announced = [(row, errors[str(row.recipient_id)]) for row in failed]
            await _announce(session, key, announced, emails)


async def _announce(
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


def _deadline() -> float:
    """The loop time by which this activity's sends must be done, its record still to go."""
    allowed = activity.info().start_to_close_timeout or timedelta(minutes=1)
    return asyncio.get_running_loop().time() + (allowed - RECORD_MARGIN).total_seconds()


def _batch(request: FireRung) -> SendEmails:
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


def _key(request: SendEmails) -> deliveries.Key:
    return deliveries.Key(
        account_id=uuid.UUID(request.account_id),
        item_id=uuid.UUID(request.item_id),
        event_key=request.event_key,
    )


def _wanted(request: SendEmails, recipients: Sequence[Recipient]) -> list[tuple[uuid.UUID, Any]]:
    """Each recipient with the end of their quiet hours (a `normal` notification waits)."""
    return [
        (uuid.UUID(r.user_id), None if request.critical else quiet_until_of(r, request.at))
        for r in recipients
    ]


async def _open_item(
    session: AsyncSession, request: SendEmails, account_id: uuid.UUID
) -> MailItem | None:
    params = {"p_item": uuid.UUID(request.item_id), "p_account": account_id}
    row = (await session.execute(_ITEM, params)).one_or_none()
    if row is None or row.state != "open":
        return None
    return mail_item(row)


async def _suppressed(
    session: AsyncSession, request: SendEmails, account_id: uuid.UUID
) -> dict[str, MailOutcome]:
    """The item is not open: its live rows are `suppressed` (rows created if missing, so the
    record shows whom it would have gone to); each recipient's outcome, final rows as they
    are."""
    key = _key(request)
    ids = [uuid.UUID(r.user_id) for r in request.recipients]
    await deliveries.ensure(session, key, ids)
    state = await session.scalar(_STATE, {"p_item": key.item_id, "p_account": account_id})
    suppressed = await deliveries.suppress_item(
        session, account_id, key.item_id, f"not sent: the item is {state}"
    )
    metrics.delivered("email", "suppressed", suppressed)
    return {str(row.recipient_id): _final(row) for row in await deliveries.rows(session, key, ids)}


def _not_now(rows: Sequence[Any]) -> dict[str, MailOutcome]:
    """The outcomes of the attempted rows that are not to be sent now: final or deferred."""
    outcomes = {}
    for row in rows:
        if row.status in deliveries.FINAL:
            outcomes[str(row.recipient_id)] = _final(row)
        elif row.status == "deferred":
            outcomes[str(row.recipient_id)] = MailOutcome(
                user_id=str(row.recipient_id), status="deferred", deferred_until=row.deferred_until
            )
    return outcomes


def _final(row: Any) -> MailOutcome:
    return MailOutcome(
        user_id=str(row.recipient_id),
        status=row.status,
        message_id=row.message_id,
        sent_at=row.sent_at,
        error=row.last_error if row.status == "failed" else None,
    )


def _is_permanent(error: aiosmtplib.SMTPException) -> bool:
    if isinstance(error, aiosmtplib.SMTPRecipientsRefused):
        return all(refused.code >= 500 for refused in error.recipients)
    if isinstance(error, aiosmtplib.SMTPResponseException):
        return error.code >= 500
    return False


def _measure(request: SendEmails, item: MailItem, outcomes: Sequence[MailOutcome]) -> None:
    """Metrics of the mails this attempt sent or failed, and the rung's lateness to the
    last accept (a transient error or a mail not tried counts as pending: it goes again)."""
    statuses = Counter("pending" if o.status in ("retry", "later") else o.status for o in outcomes)
    for status in ("sent", "failed", "pending", "suppressed"):
        metrics.delivered("email", status, statuses[status])
    accepted = [o.sent_at for o in outcomes if o.status == "sent" and o.sent_at is not None]
    if request.planned_at is not None and accepted:
        metrics.rung_sent(request.tier, item.item_type, request.planned_at, max(accepted))


@contextlib.asynccontextmanager
async def _heartbeating(every: float = 1.0) -> AsyncIterator[None]:
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
