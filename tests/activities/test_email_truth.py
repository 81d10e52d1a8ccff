"""Delivery records tell the truth, and an SMTP accept is never forgotten: the attempt is
committed before SMTP, `sent_at` is the accept time, a database failure after the accept
still reports `sent` (and the workflow records it), retries never send it again, and an
attempt cut off mid-send shows as such."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.testing import ActivityEnvironment

from activities.email import UNKNOWN_OUTCOME, EmailActivities
from activities.smtp import Smtp
from domain.clock import utcnow
from mailsink import MailSink, free_port
from tests.activities.test_email import AT, request
from tests.support.tenants import Tenant
from workflows.types import DeliveryOutcome, SendEmail, SendEmailResult


def in_flight(email: EmailActivities, send: SendEmail) -> asyncio.Task[SendEmailResult]:
    return asyncio.create_task(ActivityEnvironment().run(email.send_email, send))


def outcome(send: SendEmail, **what: object) -> DeliveryOutcome:
    return DeliveryOutcome(
        item_id=send.item_id,
        account_id=send.account_id,
        recipient_id=send.recipient.user_id,
        event_key=send.event_key,
        tier=send.tier,
        **what,  # type: ignore[arg-type]
    )


async def test_the_attempt_is_committed_before_smtp_and_sent_at_is_the_accept_time(
    tenant: Tenant,
    email: EmailActivities,
    mail_sink: MailSink,
) -> None:
    item_id = await tenant.add_item(due_at=AT + timedelta(days=1))
    mail_sink.delay = 1.0
    send = asyncio.create_task(
        ActivityEnvironment().run(email.send_email, request(tenant, item_id))
    )
    await asyncio.sleep(0.5)  # inside the SMTP call
    [during] = await tenant.deliveries(item_id)
    assert (during.status, during.attempts) == ("sending", 1)
    before_accept = utcnow()
    result = await send
    [after] = await tenant.deliveries(item_id)
    assert (result.status, after.status, after.attempts) == ("sent", "sent", 1)
    assert after.sent_at is not None
    assert after.sent_at >= before_accept  # the accept, not the rung's planned instant
    assert result.sent_at == after.sent_at


async def test_a_database_failure_after_the_accept_still_reports_sent_and_never_resends(
    tenant: Tenant,
    email: EmailActivities,
    mail_sink: MailSink,
    owner_sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    item_id = await tenant.add_item(due_at=AT + timedelta(days=1))
    send_request = request(tenant, item_id)
    mail_sink.delay = 1.0
    send = in_flight(email, send_request)
    await asyncio.sleep(0.5)  # the send's transaction holds the item lock inside SMTP
    async with owner_sessionmaker() as session:
        killed = await session.scalar(
            text(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND state = 'idle in transaction' "
                "AND usename = 'escalator_app'"
            )
        )
    assert killed == 1
    result = await send
    assert (result.status, result.recorded) == ("sent", False)
    assert len(mail_sink.mails) == 1
    [row] = await tenant.deliveries(item_id)
    assert (row.status, row.attempts) == ("sending", 1)  # the committed attempt, no outcome

    # What the workflow does next, retried until Postgres answers: record the accept.
    await ActivityEnvironment().run(
        email.record_sent,
        outcome(send_request, sent_at=result.sent_at, message_id=result.message_id),
    )
    [row] = await tenant.deliveries(item_id)
    assert (row.status, row.sent_at) == ("sent", result.sent_at)
    mail_sink.delay = 0
    again = await ActivityEnvironment().run(email.send_email, send_request)
    assert again.status == "sent"
    assert len(mail_sink.mails) == 1


async def test_an_attempt_cut_off_mid_send_is_on_the_record(
    tenant: Tenant,
    email: EmailActivities,
    mail_sink: MailSink,
) -> None:
    """RFC 1047's window: the retry sends again with the same Message-ID, and the row says
    two attempts, the first with an unknown outcome."""
    item_id = await tenant.add_item(due_at=AT + timedelta(days=1))
    mail_sink.delay = 1.0
    send = asyncio.create_task(
        ActivityEnvironment().run(email.send_email, request(tenant, item_id))
    )
    await asyncio.sleep(0.5)
    send.cancel()  # the worker is gone: its transaction rolls back, the attempt stays
    await asyncio.gather(send, return_exceptions=True)
    [cut] = await tenant.deliveries(item_id)
    assert (cut.status, cut.attempts) == ("sending", 1)
    mail_sink.delay = 0
    result = await ActivityEnvironment().run(email.send_email, request(tenant, item_id))
    [row] = await tenant.deliveries(item_id)
    assert (result.status, row.status, row.attempts) == ("sent", "sent", 2)
    assert row.last_error == UNKNOWN_OUTCOME


async def test_exhausted_retries_are_failed_and_audited_but_a_sent_row_stays_sent(
    tenant: Tenant,
    email: EmailActivities,
    app_sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    failing = await tenant.add_item(due_at=AT + timedelta(days=1))
    delivered = await tenant.add_item(due_at=AT + timedelta(days=1))
    down = EmailActivities(
        app_sessionmaker, Smtp(host="127.0.0.1", port=free_port(), mail_from="e@test", timeout=2)
    )
    with pytest.raises(RuntimeError, match="will retry"):
        await ActivityEnvironment().run(down.send_email, request(tenant, failing))
    [attempted] = await tenant.deliveries(failing)
    assert (attempted.status, attempted.attempts) == ("pending", 1)
    assert attempted.last_error
    await ActivityEnvironment().run(email.send_email, request(tenant, delivered))
    # The workflow, once SMTP_RETRY is exhausted, puts the failure on the record:
    for item_id in (failing, delivered):
        await ActivityEnvironment().run(
            email.record_delivery_failure,
            outcome(request(tenant, item_id), error="retries exhausted: connection refused"),
        )
    [failed] = await tenant.deliveries(failing)
    assert (failed.status, failed.attempts) == ("failed", 1)
    assert failed.last_error == "retries exhausted: connection refused"
    assert ("delivery_failed", 0) in await tenant.audit(failing)
    assert [d.status for d in await tenant.deliveries(delivered)] == ["sent"]
    assert ("delivery_failed", 0) not in await tenant.audit(delivered)
