"""`send_emails`: one rung's mails in one activity over the SMTP pool, each recipient with its
own delivery row, status and failure, and a retry that sends only what is not yet sent."""

from __future__ import annotations

import email
import email.policy
import uuid
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from activities.email import LOCAL_SENDS, EmailActivities
from activities.mail import MailItem, render
from activities.mail_outcomes import RECORD_MARGIN
from activities.smtp import Smtp
from db import tenant_session
from domain import lifecycle
from domain.people import Recipient
from mailsink import MailSink
from tests.activities.test_email import AT, quiet_recipient
from tests.activities.test_rungs import escalate_1
from tests.support.activity import run
from tests.support.tenants import Tenant
from workflows.types import SendEmails

WHO = ("erin", "ada", "otto")


def recipient(tenant: Tenant, key: str) -> Recipient:
    return Recipient(
        user_id=str(tenant.user(key)),
        email=tenant.email(key),
        name=key.title(),
        timezone="Europe/Berlin",
    )


def batch(tenant: Tenant, item_id: object, recipients: list[Recipient]) -> SendEmails:
    return SendEmails(
        item_id=str(item_id),
        account_id=str(tenant.account_id),
        recipients=recipients,
        event_key="task.escalated.tier1",
        rung="escalate_1",
        tier=1,
        critical=False,
        at=AT,
    )


async def statuses(tenant: Tenant, item_id: uuid.UUID) -> dict[str, tuple[str, int]]:
    keys: dict[uuid.UUID | None, str] = {tenant.user(k): k for k in WHO}
    return {keys[d.recipient_id]: (d.status, d.attempts) for d in await tenant.deliveries(item_id)}


async def test_each_recipient_has_its_own_outcome_and_a_retry_sends_only_the_failed(
    tenant: Tenant, email: EmailActivities, mail_sink: MailSink
) -> None:
    item_id = await tenant.add_item(due_at=AT + timedelta(days=1))
    mail_sink.reject(tenant.email("ada"), "451 4.3.0 try again later")
    mail_sink.reject(tenant.email("otto"))  # 550: permanent
    everyone = batch(tenant, item_id, [recipient(tenant, k) for k in WHO])

    first = await run(email.send_emails, everyone)

    assert [(o.status, o.recorded) for o in first.outcomes] == [
        ("sent", True),
        ("retry", True),
        ("failed", True),
    ]
    assert "451" in (first.outcomes[1].error or "")
    assert [m.rcpt_tos for m in mail_sink.mails] == [(tenant.email("erin"),)]
    assert await statuses(tenant, item_id) == {
        "erin": ("sent", 1),
        "ada": ("pending", 1),
        "otto": ("failed", 1),
    }
    assert ("delivery_failed", 1) in await tenant.audit(item_id)

    # The whole batch again (a dead worker's retry): only ada's mail is still to send.
    mail_sink.accept(tenant.email("ada"))
    again = await run(email.send_emails, everyone)

    assert [o.status for o in again.outcomes] == ["sent", "sent", "failed"]
    assert sorted(m.rcpt_tos[0] for m in mail_sink.mails) == sorted(
        [tenant.email("erin"), tenant.email("ada")]
    )
    assert await statuses(tenant, item_id) == {
        "erin": ("sent", 1),
        "ada": ("sent", 2),
        "otto": ("failed", 1),
    }
    assert again.outcomes[0].sent_at == first.outcomes[0].sent_at  # the row's, not a new one


async def test_no_mail_of_the_batch_once_a_claim_has_committed(
    tenant: Tenant,
    email: EmailActivities,
    mail_sink: MailSink,
    app_sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    item_id = await tenant.add_item(due_at=AT + timedelta(days=1))
    async with tenant_session(app_sessionmaker, tenant.account_id) as session:
        await lifecycle.claim(session, tenant.account_id, item_id, tenant.user("emil"), AT)

    result = await run(
        email.send_emails, batch(tenant, item_id, [recipient(tenant, k) for k in WHO])
    )

    assert [o.status for o in result.outcomes] == ["suppressed"] * 3
    assert mail_sink.mails == []
    assert {s for s, _ in (await statuses(tenant, item_id)).values()} == {"suppressed"}


async def test_quiet_hours_defer_one_recipient_and_the_others_are_sent(
    tenant: Tenant, email: EmailActivities, mail_sink: MailSink
) -> None:
    item_id = await tenant.add_item(due_at=AT + timedelta(days=1))
    quiet = quiet_recipient(tenant, "ada")
    result = await run(
        email.send_emails, batch(tenant, item_id, [recipient(tenant, "erin"), quiet])
    )

    assert [o.status for o in result.outcomes] == ["sent", "deferred"]
    assert result.outcomes[1].deferred_until is not None
    assert [m.rcpt_tos for m in mail_sink.mails] == [(tenant.email("erin"),)]
    assert await statuses(tenant, item_id) == {"erin": ("sent", 1), "ada": ("deferred", 0)}


async def test_five_hundred_recipients_get_one_mail_each(
    tenant: Tenant, email: EmailActivities, mail_sink: MailSink
) -> None:
    item_id = await tenant.add_item(due_at=AT + timedelta(days=1))
    users = await tenant.add_engineers(500)
    many = [
        Recipient(user_id=str(u), email=f"u{n}@bulk.test", name=f"U{n}", timezone="UTC")
        for n, u in enumerate(users)
    ]
    result = await run(email.send_emails, batch(tenant, item_id, many))

    assert {o.status for o in result.outcomes} == {"sent"}
    assert sorted(m.rcpt_tos[0] for m in mail_sink.mails) == sorted(r.email for r in many)
    assert len({m.message_id for m in mail_sink.mails}) == 500


def test_a_title_with_line_breaks_cannot_add_a_header_and_unicode_survives() -> None:
    item = MailItem(
        id=uuid.uuid4(),
        title="Pumpe P-101 läuft aus\r\nBcc: mallory@evil.test",
        item_type="CAPA",
        kind="task",
        due_at=AT,
        engineer_notes=None,
        priority=None,
    )
    someone = Recipient(user_id=str(uuid.uuid4()), email="z@x.test", name="Zoë\nX", timezone="UTC")
    request = SendEmails(
        item_id=str(item.id),
        account_id=str(uuid.uuid4()),
        recipients=[someone],
        event_key="task.reminder",
        rung="remind",
        tier=0,
        critical=False,
        at=AT,
    )
    raw = render(request, someone, item).as_bytes()
    parsed = email.message_from_bytes(raw, policy=email.policy.default)

    assert parsed["Bcc"] is None
    assert "Pumpe P-101 läuft aus Bcc: mallory@evil.test" in str(parsed["Subject"])
    assert str(parsed["To"]) == "Zoë X <z@x.test>"
    assert parsed.get_body(("plain",)).get_content().startswith("Hello Zoë")  # type: ignore[union-attr]


async def test_fire_and_send_fires_and_mails_once_however_often_it_is_retried(
    tenant: Tenant, email: EmailActivities, mail_sink: MailSink
) -> None:
    item_id = await tenant.add_item(due_at=AT - timedelta(days=1))
    request = escalate_1(tenant, item_id, chain=["role:quality_manager"])

    first = await run(email.fire_and_send, request)
    retry = await run(email.fire_and_send, request)

    assert first.recorded
    assert first.outcomes is not None
    assert [o.status for o in first.outcomes] == ["sent"]
    assert retry.outcomes == first.outcomes  # the row's record, not a second mail
    [mail] = mail_sink.mails
    assert mail.rcpt_tos == (tenant.email("ada"),)
    [delivery] = await tenant.deliveries(item_id)
    assert (delivery.status, delivery.attempts) == ("sent", 1)
    assert (await tenant.item(item_id)).escalate_1_fired_at is not None


async def test_fire_and_send_leaves_a_big_fan_out_to_send_emails(
    tenant: Tenant, email: EmailActivities, mail_sink: MailSink
) -> None:
    await tenant.add_engineers(LOCAL_SENDS)  # with Erin and Emil: more than it mails itself
    item_id = await tenant.add_item(due_at=AT - timedelta(days=1))
    request = escalate_1(tenant, item_id, chain=["account_roles:engineer"])

    fired = await run(email.fire_and_send, request)

    assert fired.recorded
    assert fired.outcomes is None
    assert len(fired.recipients) > LOCAL_SENDS
    assert mail_sink.mails == []
    assert {d.status for d in await tenant.deliveries(item_id)} == {"pending"}


async def test_fire_and_send_after_a_claim_writes_and_sends_nothing(
    tenant: Tenant,
    email: EmailActivities,
    mail_sink: MailSink,
    app_sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    item_id = await tenant.add_item(due_at=AT - timedelta(days=1))
    async with tenant_session(app_sessionmaker, tenant.account_id) as session:
        await lifecycle.claim(session, tenant.account_id, item_id, tenant.user("emil"), AT)

    fired = await run(email.fire_and_send, escalate_1(tenant, item_id))

    assert (fired.recorded, fired.state, fired.outcomes) == (False, "claimed", None)
    assert mail_sink.mails == []
    assert await tenant.deliveries(item_id) == []


async def test_an_address_that_cannot_be_encoded_fails_alone(
    tenant: Tenant, email: EmailActivities, mail_sink: MailSink
) -> None:
    """A non-ASCII local part (no SMTPUTF8) is that recipient's `failed`, with the reason;
    everyone else in the batch gets exactly one mail, and a retry sends nobody anything."""
    item_id = await tenant.add_item(due_at=AT + timedelta(days=1))
    bad = Recipient(
        user_id=str(tenant.user("emil")),
        email="jürgen@example.com",
        name="Jürgen",
        timezone="Europe/Berlin",
    )
    everyone = batch(tenant, item_id, [recipient(tenant, "erin"), bad, recipient(tenant, "ada")])
    first = {o.user_id: o for o in (await run(email.send_emails, everyone)).outcomes}
    again = await run(email.send_emails, everyone)

    assert first[bad.user_id].status == "failed"
    assert "jürgen@example.com" in (first[bad.user_id].error or "")
    assert sorted(o.status for o in again.outcomes) == ["failed", "sent", "sent"]
    assert sorted(m.rcpt_tos[0] for m in mail_sink.mails) == sorted(
        [tenant.email("erin"), tenant.email("ada")]
    )
    rows = {d.recipient_id: d for d in await tenant.deliveries(item_id)}
    assert (rows[tenant.user("emil")].status, rows[tenant.user("emil")].attempts) == ("failed", 1)
    assert ("delivery_failed", 1) in await tenant.audit(item_id)


async def test_a_batch_starts_no_mail_it_has_no_time_left_for(
    tenant: Tenant,
    mail_sink: MailSink,
    app_sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    """A slow but working server (1 s a mail, one connection), 3.5 s of sending time and a
    2 s mail budget: two mails go out whole, the rest come back `later`, untried (their
    rows `pending`, attempts 0), and the next attempt sends each of them once."""
    item_id = await tenant.add_item(due_at=AT + timedelta(days=1))
    smtp = Smtp(host=mail_sink.host, port=mail_sink.port, mail_from="escalator@test", timeout=2)
    slow = EmailActivities(app_sessionmaker, smtp, pool_size=1)
    five = [recipient(tenant, k) for k in ("erin", "emil", "ada", "otto", "vera")]
    mail_sink.delay = 1.0
    allowed = RECORD_MARGIN + timedelta(seconds=3.5)
    first = (await run(slow.send_emails, batch(tenant, item_id, five), allowed)).outcomes

    statuses = sorted(o.status for o in first)
    assert statuses == ["later", "later", "later", "sent", "sent"]
    rows = sorted((d.status, d.attempts) for d in await tenant.deliveries(item_id))
    assert rows == [("pending", 0)] * 3 + [("sent", 1)] * 2
    mail_sink.delay = 0
    second = (await run(slow.send_emails, batch(tenant, item_id, five))).outcomes
    assert [o.status for o in second] == ["sent"] * 5
    assert sorted(m.rcpt_tos[0] for m in mail_sink.mails) == sorted(r.email for r in five)
    rows = sorted((d.status, d.attempts) for d in await tenant.deliveries(item_id))
    assert rows == [("sent", 1)] * 5
