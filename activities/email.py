"""`send_email`: one notification email, sent at most once, never after a claim.

1. The attempt, in its own committed transaction: claim the delivery row (recipient, item,
   event_key, channel) with ON CONFLICT DO NOTHING and lock it; stop if it is sent or failed
   or the item is no longer open; defer a `normal` notification in quiet hours (the workflow
   sleeps on a durable timer); else mark it `sending` with attempts + 1.
2. The send: lock the delivery row again (a concurrent attempt waits here, then sees `sent`)
   and the item FOR SHARE, held across the SMTP call, so a claim's UPDATE waits: a mail goes
   out before the claim commits or not at all. Then `sent` at the accept time, or a 5xx is
   `failed` (audited, not retried), or anything else is `pending` with its error, retried.
3. If Postgres fails after SMTP accepted, the result still says `sent` and the workflow
   records it: the accept is never forgotten, so the mail is never sent again for that.

The one honest limit (RFC 1047): a worker that dies between SMTP's accept and the record
leaves the row `sending`; the retry sends again, with the same Message-ID, and the row says
`attempts: 2` with the unknown outcome in `last_error`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import uuid
from collections.abc import AsyncIterator
from datetime import datetime, time
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import aiosmtplib
from jinja2 import Environment, FileSystemLoader, StrictUndefined, TemplateNotFound
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.smtp import Smtp, SmtpPool
from db import get_in_account, tenant_session
from domain import audit
from domain.clock import utcnow
from domain.models import Delivery, Item
from domain.quiet_hours import quiet_until
from workflows.types import DeliveryOutcome, SendEmail, SendEmailResult

TEMPLATES = Environment(
    loader=FileSystemLoader(Path(__file__).with_name("templates")),
    undefined=StrictUndefined,
    autoescape=False,  # plain text; the html block escapes explicitly below
    keep_trailing_newline=True,
)
HTML = Environment(
    loader=FileSystemLoader(Path(__file__).with_name("templates")),
    undefined=StrictUndefined,
    autoescape=True,
)


def message_id(request: SendEmail) -> str:
    """Deterministic: the same delivery key always gives the same Message-ID, so even a
    resend after a lost commit is recognisable downstream."""
    key = f"{request.recipient.user_id}:{request.item_id}:{request.event_key}:email"
    return f"<{hashlib.sha256(key.encode()).hexdigest()[:32]}@escalator>"


def render(request: SendEmail, item: Item) -> EmailMessage:
    zone = ZoneInfo(request.recipient.timezone)
    variables = {  # the whitelist: templates see nothing else
        "recipient_name": request.recipient.name,
        "item_title": item.title,
        "item_type": item.item_type,
        "item_kind": item.kind,
        "due_local": item.due_at.astimezone(zone).strftime("%a %d %b %Y %H:%M %Z")
        if item.due_at
        else "no due date",
        "tier": request.tier,
        "rung": request.rung,
        "event_key": request.event_key,
        "notes": item.engineer_notes or "",
        "priority": item.priority or "",
    }
    parts = {}
    for env, part in ((TEMPLATES, "subject"), (TEMPLATES, "text"), (HTML, "html")):
        try:
            template = env.get_template(f"{request.event_key}.j2")
        except TemplateNotFound:  # an admin-defined event key without its own wording
            template = env.get_template("_base.j2")
        parts[part] = template.render(variables, part=part)
    message = EmailMessage()
    message["Subject"] = parts["subject"].strip()
    message["To"] = f"{request.recipient.name} <{request.recipient.email}>"
    message["Message-ID"] = message_id(request)
    message["Date"] = format_datetime(request.at)
    message["X-Escalator-Event"] = request.event_key
    message["X-Escalator-Item"] = request.item_id
    message.set_content(parts["text"])
    message.add_alternative(parts["html"], subtype="html")
    return message


def _is_permanent(error: aiosmtplib.SMTPException) -> bool:
    if isinstance(error, aiosmtplib.SMTPRecipientsRefused):
        return all(refused.code >= 500 for refused in error.recipients)
    if isinstance(error, aiosmtplib.SMTPResponseException):
        return error.code >= 500
    return False


class EmailActivities:
    def __init__(
        self, sessionmaker: async_sessionmaker[AsyncSession], smtp: Smtp, pool_size: int = 8
    ) -> None:
        self._sessionmaker = sessionmaker
        self._smtp = smtp
        self._pool = SmtpPool(smtp, pool_size)

    async def _send(self, message: EmailMessage, to: str) -> None:
        message["From"] = self._smtp.mail_from
        await self._pool.send(message, sender=self._smtp.mail_from, recipients=[to])

    @activity.defn
    async def send_email(self, request: SendEmail) -> SendEmailResult:
        """Side effect: one email over SMTP. Idempotency key: the delivery row's unique
        (recipient, item, event_key, 'email'); a `sent` row is never sent again.

        Two transactions. The first commits the attempt (`sending`, attempts + 1) before
        SMTP is spoken to, so no attempt is ever rolled back out of the record. The second
        holds the item FOR SHARE across the SMTP call (no mail once a claim committed) and
        records the outcome; if the database fails after SMTP accepted, the result still
        says `sent` (`recorded=False`) and the workflow records it. Heartbeats every second,
        so a dead worker's send is retried within the heartbeat timeout."""
        account_id = uuid.UUID(request.account_id)
        async with _heartbeating():
            prepared = await self._prepare(request, account_id)
            if isinstance(prepared, SendEmailResult):
                return prepared
            return await self._deliver(request, account_id, prepared)

    async def _prepare(
        self, request: SendEmail, account_id: uuid.UUID
    ) -> SendEmailResult | EmailMessage:
        async with tenant_session(self._sessionmaker, account_id) as session:
            delivery = await _claim_delivery(session, request, account_id)
            item = await _open_item(session, delivery, account_id)
            if isinstance(item, SendEmailResult):
                return item
            until = None if request.critical else _quiet_until(request)
            if until is not None:
                delivery.status, delivery.deferred_until = "deferred", until
                return SendEmailResult(status="deferred", deferred_until=until)
            if delivery.status == "sending":  # RFC 1047: the last attempt's fate is unknown
                delivery.last_error = UNKNOWN_OUTCOME
            delivery.status, delivery.attempts = "sending", delivery.attempts + 1
            return render(request, item)

    async def _deliver(
        self, request: SendEmail, account_id: uuid.UUID, message: EmailMessage
    ) -> SendEmailResult:
        accepted_at: datetime | None = None
        failure: str | None = None
        transient: str | None = None
        try:
            async with tenant_session(self._sessionmaker, account_id) as session:
                delivery = await _claim_delivery(session, request, account_id)
                held = await _open_item(session, delivery, account_id)
                if isinstance(held, SendEmailResult):
                    return held
                try:
                    await self._send(message, request.recipient.email)
                except aiosmtplib.SMTPException as error:
                    if _is_permanent(error):
                        failure = str(error)
                        await _record_failure(session, delivery, request.tier, failure)
                    else:
                        transient = str(error)
                        delivery.status, delivery.last_error = "pending", transient
                else:
                    accepted_at = utcnow()
                    delivery.status, delivery.sent_at = "sent", accepted_at
                    delivery.message_id = message_id(request)
                    if delivery.last_error != UNKNOWN_OUTCOME:  # keep the RFC 1047 note
                        delivery.last_error = None
        except Exception as error:
            if accepted_at is None:
                raise
            # SMTP has the mail; only the record is missing. Never send it again for that.
            activity.logger.warning(
                "email.sent_unrecorded", extra={"to": request.recipient.email, "error": str(error)}
            )
            return SendEmailResult(
                status="sent", message_id=message_id(request), sent_at=accepted_at, recorded=False
            )
        # Outside the transaction, so the failure record above is committed first.
        if failure is not None:
            raise ApplicationError(failure, type="PermanentDeliveryError", non_retryable=True)
        if transient is not None:
            raise RuntimeError(f"SMTP to {request.recipient.email} failed, will retry: {transient}")
        activity.logger.info("email.sent", extra={"to": request.recipient.email})
        return SendEmailResult(status="sent", message_id=message_id(request), sent_at=accepted_at)

    @activity.defn
    async def record_sent(self, outcome: DeliveryOutcome) -> None:
        """Side effect: marks the delivery `sent` at the SMTP accept time the send reported
        but could not record. Idempotent: a row already `sent` is left as it is."""
        await self._update(outcome, sent=True)

    @activity.defn
    async def record_delivery_failure(self, outcome: DeliveryOutcome) -> None:
        """Side effect: the delivery `failed` with its last error, plus a `delivery_failed`
        audit row, once the send's retries are exhausted. Idempotent by the audit key
        `<delivery>:failed`; a row already `sent` is never marked failed."""
        await self._update(outcome, sent=False)

    async def _update(self, outcome: DeliveryOutcome, *, sent: bool) -> None:
        account_id = uuid.UUID(outcome.account_id)
        async with tenant_session(self._sessionmaker, account_id) as session:
            delivery = await session.scalar(
                select(Delivery)
                .filter_by(
                    account_id=account_id,
                    recipient_id=uuid.UUID(outcome.recipient_id),
                    item_id=uuid.UUID(outcome.item_id),
                    event_key=outcome.event_key,
                    channel="email",
                )
                .with_for_update()
            )
            if delivery is None or delivery.status == "sent":
                return
            if sent:
                delivery.status, delivery.sent_at = "sent", outcome.sent_at
                delivery.message_id, delivery.last_error = outcome.message_id, None
            else:
                await _record_failure(session, delivery, outcome.tier, outcome.error or "")


UNKNOWN_OUTCOME = (
    "the previous attempt's outcome is unknown (its worker stopped mid-send); sent again "
    "with the same Message-ID"
)


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


async def _open_item(
    session: AsyncSession, delivery: Delivery, account_id: uuid.UUID
) -> SendEmailResult | Item:
    """The item, locked FOR SHARE (a claim's UPDATE waits for it), when there is something
    to send; else the result: already sent or failed, or the item is no longer open."""
    if delivery.status in ("sent", "failed"):
        return SendEmailResult(
            status=delivery.status, message_id=delivery.message_id, sent_at=delivery.sent_at
        )
    item = await get_in_account(session, Item, delivery.item_id, account_id, lock="share")
    if item is None or item.state != "open":
        delivery.status = "suppressed"
        return SendEmailResult(status="suppressed")
    return item


async def _record_failure(session: AsyncSession, delivery: Delivery, tier: int, error: str) -> None:
    delivery.status, delivery.last_error = "failed", error
    await audit.record(
        session,
        account_id=delivery.account_id,
        item_id=delivery.item_id,
        action="delivery_failed",
        tier=tier,
        key=f"{delivery.id}:failed",
        data={"recipient_id": str(delivery.recipient_id), "error": error},
    )


async def _claim_delivery(
    session: AsyncSession, request: SendEmail, account_id: uuid.UUID
) -> Delivery:
    key = {
        "recipient_id": uuid.UUID(request.recipient.user_id),
        "item_id": uuid.UUID(request.item_id),
        "event_key": request.event_key,
        "channel": "email",
    }
    await session.execute(
        insert(Delivery).values(account_id=account_id, **key).on_conflict_do_nothing()
    )
    delivery = await session.scalar(
        select(Delivery)
        .filter_by(account_id=account_id, **key)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    assert delivery is not None
    return delivery


def _quiet_until(request: SendEmail) -> datetime | None:
    recipient = request.recipient
    start = time.fromisoformat(recipient.quiet_start) if recipient.quiet_start else None
    end = time.fromisoformat(recipient.quiet_end) if recipient.quiet_end else None
    return quiet_until(request.at, recipient.timezone, start, end)
