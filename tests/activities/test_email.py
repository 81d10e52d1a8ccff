"""`send_email` against real Postgres and a real SMTP sink: at most one mail per delivery key,
none after a claim commits, quiet hours, and failures that are recorded, not lost."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.email import EmailActivities, message_id
from activities.smtp import Smtp
from db import tenant_session
from domain import lifecycle
from domain.recipients import Recipient
from mailsink import MailSink, free_port
from tests.support.tenants import Tenant
from workflows.types import SendEmail

# A Tuesday, 10:00 in Berlin: inside working hours.
AT = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def request(tenant: Tenant, item_id: object, key: str = "erin", **overrides: object) -> SendEmail:
    values: dict[str, object] = {
        "item_id": str(item_id),
        "account_id": str(tenant.account_id),
        "recipient": Recipient(
            user_id=str(tenant.user(key)),
            email=tenant.email(key),
            name=key.title(),
            timezone="Europe/Berlin",
        ),
        "event_key": "task.reminder",
        "rung": "remind",
        "tier": 0,
        "critical": False,
        "at": AT,
    }
    values.update(overrides)
    return SendEmail(**values)  # type: ignore[arg-type]


def quiet_recipient(tenant: Tenant, key: str) -> Recipient:
    """Quiet from 08:00 to 12:00 Berlin time: `AT` (10:00) falls inside."""
    return Recipient(
        user_id=str(tenant.user(key)),
        email=tenant.email(key),
        name=key.title(),
        timezone="Europe/Berlin",
        quiet_start="08:00",
        quiet_end="12:00",
    )


async def test_a_retried_send_after_the_mail_went_out_does_not_send_twice(
    tenant: Tenant, email: EmailActivities, mail_sink: MailSink
) -> None:
    item_id = await tenant.add_item(due_at=AT + timedelta(days=1))
    req = request(tenant, item_id)
    first = await ActivityEnvironment().run(email.send_email, req)
    second = await ActivityEnvironment().run(email.send_email, req)

    assert (first.status, second.status) == ("sent", "sent")
    [mail] = mail_sink.mails
    assert mail.message_id == message_id(req.recipient.user_id, req.item_id, req.event_key)
    assert mail.message_id == first.message_id
    assert "Reminder" in mail.subject
    [delivery] = await tenant.deliveries(item_id)
    assert (delivery.status, delivery.attempts) == ("sent", 1)


async def test_no_mail_once_a_claim_has_committed(
    tenant: Tenant,
    email: EmailActivities,
    mail_sink: MailSink,
    app_sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    item_id = await tenant.add_item(due_at=AT + timedelta(days=1))
    async with tenant_session(app_sessionmaker, tenant.account_id) as session:
        await lifecycle.claim(session, tenant.account_id, item_id, tenant.user("emil"), AT)

    result = await ActivityEnvironment().run(email.send_email, request(tenant, item_id))

    assert result.status == "suppressed"
    assert mail_sink.mails == []
    [delivery] = await tenant.deliveries(item_id)
    assert delivery.status == "suppressed"


async def test_a_claim_racing_a_send_waits_for_the_mail_to_be_sent(
    tenant: Tenant,
    email: EmailActivities,
    mail_sink: MailSink,
    app_sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    """The send got the item lock first: the claim commits only after the SMTP server took
    the mail, so "sent before the claim committed" holds."""
    item_id = await tenant.add_item(due_at=AT + timedelta(days=1))
    mail_sink.delay = 1.0
    send = asyncio.create_task(
        ActivityEnvironment().run(email.send_email, request(tenant, item_id))
    )
    await asyncio.sleep(0.4)  # the send now holds the item lock inside its SMTP call
    async with tenant_session(app_sessionmaker, tenant.account_id) as session:
        await lifecycle.claim(session, tenant.account_id, item_id, tenant.user("emil"), AT)
    claim_committed = time.monotonic()

    assert (await send).status == "sent"
    [mail] = mail_sink.mails
    assert mail.received_at < claim_committed


async def test_a_send_racing_an_uncommitted_claim_waits_and_then_sends_nothing(
    tenant: Tenant,
    email: EmailActivities,
    mail_sink: MailSink,
    app_sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    item_id = await tenant.add_item(due_at=AT + timedelta(days=1))
    async with tenant_session(app_sessionmaker, tenant.account_id) as session:
        await lifecycle.claim(session, tenant.account_id, item_id, tenant.user("emil"), AT)
        send = asyncio.create_task(
            ActivityEnvironment().run(email.send_email, request(tenant, item_id))
        )
        await asyncio.sleep(0.4)
        assert not send.done(), "the send must wait for the claim's transaction"
    assert (await send).status == "suppressed"
    assert mail_sink.mails == []


async def test_quiet_hours_defer_a_normal_notification_to_their_end(
    tenant: Tenant, email: EmailActivities, mail_sink: MailSink
) -> None:
    item_id = await tenant.add_item(due_at=AT + timedelta(days=1))
    quiet = quiet_recipient(tenant, "erin")
    result = await ActivityEnvironment().run(
        email.send_email, request(tenant, item_id, recipient=quiet)
    )

    assert result.status == "deferred"
    assert result.deferred_until == datetime(2026, 12, 1, 11, 0, tzinfo=UTC)  # 12:00 Berlin
    assert mail_sink.mails == []

    later = await ActivityEnvironment().run(
        email.send_email, request(tenant, item_id, recipient=quiet, at=result.deferred_until)
    )
    assert later.status == "sent"
    assert len(mail_sink.mails) == 1


async def test_a_critical_notification_pierces_quiet_hours(
    tenant: Tenant, email: EmailActivities, mail_sink: MailSink
) -> None:
    item_id = await tenant.add_item(due_at=AT - timedelta(days=3))
    quiet = quiet_recipient(tenant, "otto")
    req = request(
        tenant,
        item_id,
        recipient=quiet,
        event_key="task.escalated_final",
        rung="escalate_2",
        tier=2,
        critical=True,
    )
    assert (await ActivityEnvironment().run(email.send_email, req)).status == "sent"
    [mail] = mail_sink.mails
    assert "FINAL" in mail.subject


async def test_a_permanent_5xx_is_recorded_and_not_retried(
    tenant: Tenant, email: EmailActivities, mail_sink: MailSink
) -> None:
    item_id = await tenant.add_item(due_at=AT + timedelta(days=1))
    mail_sink.reject(tenant.email("erin"))

    with pytest.raises(ApplicationError) as raised:
        await ActivityEnvironment().run(email.send_email, request(tenant, item_id))

    assert raised.value.non_retryable
    [delivery] = await tenant.deliveries(item_id)
    assert delivery.status == "failed"
    assert "550" in (delivery.last_error or "")
    assert ("delivery_failed", 0) in await tenant.audit(item_id)


async def test_a_transient_failure_is_left_to_the_retry_policy(
    tenant: Tenant, app_sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    item_id = await tenant.add_item(due_at=AT + timedelta(days=1))
    dead = EmailActivities(
        app_sessionmaker, Smtp(host="127.0.0.1", port=free_port(), mail_from="e@test", timeout=2)
    )
    with pytest.raises(RuntimeError, match="will retry"):
        await ActivityEnvironment().run(dead.send_email, request(tenant, item_id))
    [delivery] = await tenant.deliveries(item_id)
    assert (delivery.status, delivery.attempts) == ("pending", 1)
    assert delivery.last_error
