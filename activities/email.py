"""`send_email`: one notification email, sent at most once, never after a claim.

The order inside one transaction is what makes the guarantees hold:
1. claim the delivery row (recipient, item, event_key, channel) with ON CONFLICT DO NOTHING
   and lock it: a concurrent or retried attempt waits here, then sees `sent` and stops;
2. lock the item row FOR SHARE and keep it across the SMTP call: a claim's UPDATE waits for
   this transaction, so a mail is either sent before the claim commits or not at all;
3. quiet hours defer a `normal` notification (the workflow sleeps on a durable timer);
4. SMTP; a 5xx is permanent (recorded, audited, non-retryable), anything else is retried.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
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

from config import Settings
from db import get_in_account, tenant_session
from domain import audit
from domain.models import Delivery, Item
from domain.quiet_hours import quiet_until
from workflows.types import SendEmail, SendEmailResult

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


@dataclass(frozen=True, kw_only=True)
class Smtp:
    host: str
    port: int
    mail_from: str
    username: str | None = None
    password: str | None = None
    starttls: bool = False
    timeout: float = 10.0

    @classmethod
    def from_settings(cls, settings: Settings) -> Smtp:
        return cls(
            host=settings.smtp_host,
            port=settings.smtp_port,
            mail_from=settings.mail_from,
            username=settings.smtp_username,
            password=settings.smtp_password,
            starttls=settings.smtp_starttls,
            timeout=settings.smtp_timeout_seconds,
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
    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession], smtp: Smtp) -> None:
        self._sessionmaker = sessionmaker
        self._smtp = smtp

    async def _send(self, message: EmailMessage, to: str) -> None:
        message["From"] = self._smtp.mail_from
        await aiosmtplib.send(
            message,
            sender=self._smtp.mail_from,
            recipients=[to],
            hostname=self._smtp.host,
            port=self._smtp.port,
            username=self._smtp.username,
            password=self._smtp.password,
            start_tls=self._smtp.starttls,
            timeout=self._smtp.timeout,
        )

    @activity.defn
    async def send_email(self, request: SendEmail) -> SendEmailResult:
        """Side effect: one email over SMTP. Idempotency key: the delivery row's unique
        (recipient, item, event_key, 'email'); a `sent` row is never sent again."""
        account_id = uuid.UUID(request.account_id)
        failure: str | None = None
        transient: str | None = None
        async with tenant_session(self._sessionmaker, account_id) as session:
            delivery = await _claim_delivery(session, request, account_id)
            if delivery.status in ("sent", "failed"):
                return SendEmailResult(status=delivery.status, message_id=delivery.message_id)
            item = await get_in_account(session, Item, delivery.item_id, account_id, lock="share")
            if item is None or item.state != "open":
                delivery.status = "suppressed"
                return SendEmailResult(status="suppressed")
            until = None if request.critical else _quiet_until(request)
            if until is not None:
                delivery.status, delivery.deferred_until = "deferred", until
                return SendEmailResult(status="deferred", deferred_until=until)
            delivery.attempts += 1
            message = render(request, item)
            try:
                await self._send(message, request.recipient.email)
            except aiosmtplib.SMTPException as error:
                if _is_permanent(error):
                    failure = str(error)
                    delivery.status, delivery.last_error = "failed", failure
                    await audit.record(
                        session,
                        account_id=account_id,
                        item_id=item.id,
                        action="delivery_failed",
                        tier=request.tier,
                        key=f"{delivery.id}:failed",
                        data={"recipient": request.recipient.email, "error": failure},
                    )
                else:
                    transient = str(error)
                    delivery.status, delivery.last_error = "pending", transient
            else:
                delivery.status, delivery.sent_at = "sent", request.at
                delivery.message_id, delivery.last_error = message_id(request), None
        # Outside the transaction, so the failure record above is committed first.
        if failure is not None:
            raise ApplicationError(failure, type="PermanentDeliveryError", non_retryable=True)
        if transient is not None:
            raise RuntimeError(f"SMTP to {request.recipient.email} failed, will retry: {transient}")
        activity.logger.info("email.sent", extra={"to": request.recipient.email})
        return SendEmailResult(status="sent", message_id=message_id(request))


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
