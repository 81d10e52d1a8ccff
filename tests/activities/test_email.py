"""One recipient's mail through `send_emails` against real Postgres and a real SMTP sink: at
most one mail per delivery key, none after a claim commits, a claim that waits only for the
mail in flight, quiet hours, and failures that are that recipient's outcome, recorded."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from activities.email import EmailActivities
from activities.mail import message_id
from activities.smtp import Smtp
from db import tenant_session
from domain import lifecycle
from domain.people import Recipient
from mailsink import MailSink, free_port
from tests.support.activity import run
from tests.support.tenants import Tenant
from workflows.types import MailOutcome, SendEmails

# A Tuesday, 10:00 in Berlin: inside working hours.
AT = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def person(tenant: Tenant, key: str, **overrides: str) -> Recipient:
    values = {
        "user_id": str(tenant.user(key)),
        "email": tenant.email(key),
        "name": key.title(),
        "timezone": "Europe/Berlin",
        **overrides,
    }
    return Recipient(**values)


def request(tenant: Tenant, item_id: object, key: str = "erin", **overrides: object) -> SendEmails:
    values: dict[str, object] = {
        "item_id": str(item_id),
        "account_id": str(tenant.account_id),
        "recipients": [person(tenant, key)],
        "event_key": "task.reminder",
        "rung": "remind",
        "tier": 0,
        "critical": False,
        "at": AT,
    }
    values.update(overrides)
    return SendEmails(**values)  # type: ignore[arg-type]


async def send(email: EmailActivities, batch: SendEmails) -> MailOutcome:
    """The one recipient's outcome of one `send_emails`."""
    [outcome] = (await run(email.send_emails, batch)).outcomes
    return outcome


def quiet_recipient(tenant: Tenant, key: str) -> Recipient:
    """Quiet from 08:00 to 12:00 Berlin time: `AT` (10:00) falls inside."""
    return person(tenant, key, quiet_start="08:00", quiet_end="12:00")


async def test_a_retried_send_after_the_mail_went_out_does_not_send_twice(
    tenant: Tenant, email: EmailActivities, mail_sink: MailSink
) -> None:
    item_id = await tenant.add_item(due_at=AT + timedelta(days=1))
    req = request(tenant, item_id)
    first = await send(email, req)
    second = await send(email, req)

    assert (first.status, second.status) == ("sent", "sent")
    [mail] = mail_sink.mails
    assert mail.message_id == message_id(first.user_id, req.item_id, req.event_key)
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

    assert (await send(email, request(tenant, item_id))).status == "suppressed"
    assert mail_sink.mails == []
    [delivery] = await tenant.deliveries(item_id)
    assert (delivery.status, delivery.last_error) == ("suppressed", "not sent: the item is claimed")


async def test_a_claim_racing_a_send_waits_for_the_mail_in_flight(
    tenant: Tenant,
    email: EmailActivities,
    mail_sink: MailSink,
    app_sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    """The mail was in flight first: the claim commits only after the SMTP server took it,
    so "sent before the claim committed" holds."""
    item_id = await tenant.add_item(due_at=AT + timedelta(days=1))
    mail_sink.delay = 1.0
    sending = asyncio.create_task(send(email, request(tenant, item_id)))
    await asyncio.sleep(0.4)  # the mail is now inside its SMTP call, under the send guard
    async with tenant_session(app_sessionmaker, tenant.account_id) as session:
        await lifecycle.claim(session, tenant.account_id, item_id, tenant.user("emil"), AT)
    claim_committed = time.monotonic()

    assert (await sending).status == "sent"
    [mail] = mail_sink.mails
    assert mail.received_at < claim_committed
    [delivery] = await tenant.deliveries(item_id)
    assert delivery.status == "sent"  # the claim's suppression does not undo an accept


async def test_a_claim_during_a_slow_batch_waits_for_one_mail_not_the_batch(
    tenant: Tenant,
    app_sessionmaker: async_sessionmaker[AsyncSession],
    mail_sink: MailSink,
) -> None:
    """Five recipients over one connection at 1 s a mail: the claim answers within about
    one mail, and no mail is accepted after it committed."""
    item_id = await tenant.add_item(due_at=AT + timedelta(days=1))
    smtp = Smtp(host=mail_sink.host, port=mail_sink.port, mail_from="escalator@test", timeout=5)
    one_at_a_time = EmailActivities(app_sessionmaker, smtp, pool_size=1)
    five = [person(tenant, key) for key in ("erin", "emil", "ada", "otto", "vera")]
    mail_sink.delay = 1.0
    batch = asyncio.create_task(
        run(one_at_a_time.send_emails, request(tenant, item_id, recipients=five))
    )
    await asyncio.sleep(1.5)  # the second mail is in flight
    asked = time.monotonic()
    async with tenant_session(app_sessionmaker, tenant.account_id) as session:
        await lifecycle.claim(session, tenant.account_id, item_id, tenant.user("emil"), AT)
    committed = time.monotonic()

    outcomes = (await batch).outcomes
    assert committed - asked < 1.5  # one mail in flight at most, never the batch's five
    assert all(mail.received_at < committed for mail in mail_sink.mails)
    sent = len(mail_sink.mails)
    assert 1 <= sent <= 3  # what was in flight before the claim, then nothing
    expected = ["sent"] * sent + ["suppressed"] * (5 - sent)
    assert sorted(o.status for o in outcomes) == expected
    assert sorted(d.status for d in await tenant.deliveries(item_id)) == expected


async def test_a_send_racing_an_uncommitted_claim_waits_and_then_sends_nothing(
    tenant: Tenant,
    email: EmailActivities,
    mail_sink: MailSink,
    app_sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    item_id = await tenant.add_item(due_at=AT + timedelta(days=1))
    async with tenant_session(app_sessionmaker, tenant.account_id) as session:
        await lifecycle.claim(session, tenant.account_id, item_id, tenant.user("emil"), AT)
        sending = asyncio.create_task(send(email, request(tenant, item_id)))
        await asyncio.sleep(0.4)
        assert not sending.done(), "the send must wait for the claim's transaction"
    assert (await sending).status == "suppressed"
    assert mail_sink.mails == []


async def test_quiet_hours_defer_a_normal_notification_to_their_end(
    tenant: Tenant, email: EmailActivities, mail_sink: MailSink
) -> None:
    item_id = await tenant.add_item(due_at=AT + timedelta(days=1))
    quiet = [quiet_recipient(tenant, "erin")]
    result = await send(email, request(tenant, item_id, recipients=quiet))

    assert result.status == "deferred"
    assert result.deferred_until == datetime(2026, 12, 1, 11, 0, tzinfo=UTC)  # 12:00 Berlin
    assert mail_sink.mails == []

    later = await send(email, request(tenant, item_id, recipients=quiet, at=result.deferred_until))
    assert later.status == "sent"
    assert len(mail_sink.mails) == 1


async def test_a_claim_suppresses_a_deferred_mail_at_once(
    tenant: Tenant,
    email: EmailActivities,
    app_sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    """The row says so the moment the item stops being open, not whenever (if ever) the
    workflow's quiet-hours timer would have come back to it."""
    item_id = await tenant.add_item(due_at=AT + timedelta(days=1))
    quiet = [quiet_recipient(tenant, "erin")]
    assert (await send(email, request(tenant, item_id, recipients=quiet))).status == "deferred"
    async with tenant_session(app_sessionmaker, tenant.account_id) as session:
        await lifecycle.claim(session, tenant.account_id, item_id, tenant.user("emil"), AT)
    [row] = await tenant.deliveries(item_id)
    assert (row.status, row.last_error) == ("suppressed", "not sent: the item is claimed")


async def test_a_critical_notification_pierces_quiet_hours(
    tenant: Tenant, email: EmailActivities, mail_sink: MailSink
) -> None:
    item_id = await tenant.add_item(due_at=AT - timedelta(days=3))
    req = request(
        tenant,
        item_id,
        recipients=[quiet_recipient(tenant, "otto")],
        event_key="task.escalated_final",
        rung="escalate_2",
        tier=2,
        critical=True,
    )
    assert (await send(email, req)).status == "sent"
    [mail] = mail_sink.mails
    assert "FINAL" in mail.subject


async def test_a_permanent_5xx_is_that_recipients_recorded_failure(
    tenant: Tenant, email: EmailActivities, mail_sink: MailSink
) -> None:
    item_id = await tenant.add_item(due_at=AT + timedelta(days=1))
    mail_sink.reject(tenant.email("erin"))

    outcome = await send(email, request(tenant, item_id))

    assert outcome.status == "failed"
    [delivery] = await tenant.deliveries(item_id)
    assert delivery.status == "failed"
    assert "550" in (delivery.last_error or "")
    assert ("delivery_failed", 0) in await tenant.audit(item_id)


async def test_a_transient_failure_is_an_outcome_to_send_again(
    tenant: Tenant, app_sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    item_id = await tenant.add_item(due_at=AT + timedelta(days=1))
    dead = EmailActivities(
        app_sessionmaker, Smtp(host="127.0.0.1", port=free_port(), mail_from="e@test", timeout=2)
    )
    assert (await send(dead, request(tenant, item_id))).status == "retry"
    [delivery] = await tenant.deliveries(item_id)
    assert (delivery.status, delivery.attempts) == ("pending", 1)
    assert delivery.last_error
