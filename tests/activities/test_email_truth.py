"""Delivery records tell the truth, and an SMTP accept is never forgotten: the attempt is
committed before SMTP, `sent_at` is the accept time, a database failure after the accept
still reports `sent` (and the workflow records it), retries never send it again, an attempt
cut off mid-send shows as such, and giving up marks only what really failed."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from activities.email import EmailActivities
from activities.smtp import Smtp
from db import autocommit, tenant_session
from domain import lifecycle, send_guard
from domain.clock import utcnow
from domain.deliveries import UNKNOWN_OUTCOME
from mailsink import MailSink, free_port
from tests.activities.test_email import AT, person, quiet_recipient, request, send
from tests.activities.test_rungs import escalate_1
from tests.support.activity import run
from tests.support.tenants import Tenant
from workflows.types import RecordFailures, RecordOutcomes

APP_ROLE = "escalator_app"


@asynccontextmanager
async def app_role_locked_out(
    owner_sessionmaker: async_sessionmaker[AsyncSession],
) -> AsyncIterator[None]:
    """Postgres refuses the app role: every connection of it is ended and no new one is
    let in, until the block ends (what a Postgres outage looks like to the worker)."""
    async with owner_sessionmaker() as session, session.begin():
        await session.execute(text(f"ALTER ROLE {APP_ROLE} CONNECTION LIMIT 0"))
        await session.execute(
            text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                f"WHERE usename = '{APP_ROLE}' AND datname = current_database()"
            )
        )
    try:
        yield
    finally:
        async with owner_sessionmaker() as session, session.begin():
            await session.execute(text(f"ALTER ROLE {APP_ROLE} CONNECTION LIMIT -1"))


async def test_the_attempt_is_committed_before_smtp_and_sent_at_is_the_accept_time(
    tenant: Tenant,
    email: EmailActivities,
    mail_sink: MailSink,
) -> None:
    item_id = await tenant.add_item(due_at=AT + timedelta(days=1))
    mail_sink.delay = 1.0
    sending = asyncio.create_task(send(email, request(tenant, item_id)))
    await asyncio.sleep(0.5)  # inside the SMTP call
    [during] = await tenant.deliveries(item_id)
    assert (during.status, during.attempts) == ("sending", 1)
    before_accept = utcnow()
    result = await sending
    [after] = await tenant.deliveries(item_id)
    assert (result.status, after.status, after.attempts) == ("sent", "sent", 1)
    assert after.sent_at is not None
    assert after.sent_at >= before_accept  # the accept, not the rung's planned instant
    assert result.sent_at == after.sent_at


async def test_postgres_failing_while_a_batch_is_recorded_never_resends(
    tenant: Tenant,
    email: EmailActivities,
    mail_sink: MailSink,
    owner_sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    """Three recipients, one answering 550; Postgres goes away while the mails are in
    flight: the result says what SMTP did (`recorded=False`), the workflow's
    `record_outcomes` puts it on the record once Postgres is back, and a retry of the whole
    send mails nobody again."""
    item_id = await tenant.add_item(due_at=AT + timedelta(days=1))
    mail_sink.reject(tenant.email("ada"))
    batch = request(
        tenant, item_id, recipients=[person(tenant, k) for k in ("erin", "emil", "ada")]
    )
    mail_sink.delay = 1.0
    sending = asyncio.create_task(run(email.send_emails, batch))
    await asyncio.sleep(0.5)  # every mail is inside its SMTP call
    async with app_role_locked_out(owner_sessionmaker):
        outcomes = (await sending).outcomes
        assert sorted((o.status, o.recorded) for o in outcomes) == [
            ("failed", False),
            ("sent", False),
            ("sent", False),
        ]
        assert len(mail_sink.mails) == 2
    rows = sorted((d.status, d.attempts) for d in await tenant.deliveries(item_id))
    assert rows == [("sending", 1)] * 3  # the committed attempt, no outcome yet

    # What the workflow does next, retried until Postgres answers: record the outcomes.
    await run(email.record_outcomes, RecordOutcomes(batch=batch, outcomes=outcomes))
    await run(email.record_outcomes, RecordOutcomes(batch=batch, outcomes=outcomes))  # again
    rows = sorted((d.status, d.attempts) for d in await tenant.deliveries(item_id))
    assert rows == [("failed", 1), ("sent", 1), ("sent", 1)]
    assert [a for a in await tenant.audit(item_id) if a[0] == "delivery_failed"] == [
        ("delivery_failed", 0)
    ]
    mail_sink.delay = 0
    again = (await run(email.send_emails, batch)).outcomes
    assert sorted(o.status for o in again) == ["failed", "sent", "sent"]
    assert len(mail_sink.mails) == 2


async def test_an_attempt_cut_off_mid_send_is_on_the_record(
    tenant: Tenant,
    email: EmailActivities,
    mail_sink: MailSink,
) -> None:
    """RFC 1047's window: the retry sends again with the same Message-ID, and the row says
    two attempts, the first with an unknown outcome."""
    item_id = await tenant.add_item(due_at=AT + timedelta(days=1))
    mail_sink.delay = 1.0
    sending = asyncio.create_task(send(email, request(tenant, item_id)))
    await asyncio.sleep(0.5)
    sending.cancel()  # the worker is gone: its transaction rolls back, the attempt stays
    await asyncio.gather(sending, return_exceptions=True)
    [cut] = await tenant.deliveries(item_id)
    assert (cut.status, cut.attempts) == ("sending", 1)
    mail_sink.delay = 0
    result = await send(email, request(tenant, item_id))
    [row] = await tenant.deliveries(item_id)
    assert (result.status, row.status, row.attempts) == ("sent", "sent", 2)
    assert row.last_error == UNKNOWN_OUTCOME


async def test_giving_up_fails_only_what_is_still_pending(
    tenant: Tenant,
    email: EmailActivities,
    app_sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    """Out of attempts: the recipient whose mail kept failing is `failed` and audited; one
    whose mail went out stays `sent`, one in quiet hours stays `deferred`."""
    item_id = await tenant.add_item(due_at=AT + timedelta(days=1))
    down = EmailActivities(
        app_sessionmaker, Smtp(host="127.0.0.1", port=free_port(), mail_from="e@test", timeout=2)
    )
    assert (await send(down, request(tenant, item_id))).status == "retry"
    assert (await send(email, request(tenant, item_id, key="emil"))).status == "sent"
    quiet = request(tenant, item_id, recipients=[quiet_recipient(tenant, "ada")])
    assert (await send(email, quiet)).status == "deferred"
    marked = await run(
        email.record_failures,
        RecordFailures(
            item_id=str(item_id),
            account_id=str(tenant.account_id),
            event_key="task.reminder",
            tier=0,
            recipient_ids=[str(tenant.user(k)) for k in ("erin", "emil", "ada")],
            error="retries exhausted: connection refused",
        ),
    )
    assert marked == [str(tenant.user("erin"))]
    rows = {d.recipient_id: (d.status, d.last_error) for d in await tenant.deliveries(item_id)}
    assert rows[tenant.user("erin")] == ("failed", "retries exhausted: connection refused")
    assert rows[tenant.user("emil")][0] == "sent"
    assert rows[tenant.user("ada")][0] == "deferred"
    assert [a for a in await tenant.audit(item_id) if a[0] == "delivery_failed"] == [
        ("delivery_failed", 0)
    ]


async def test_a_failure_is_not_announced_once_the_item_is_claimed(
    tenant: Tenant,
    email: EmailActivities,
    mail_sink: MailSink,
    app_sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    """A 550 whose answer comes while Emil claims: the row is `failed` (it did fail), but
    nobody is told about an item someone already holds."""
    item_id = await tenant.add_item(due_at=AT + timedelta(days=1))
    mail_sink.reject(tenant.email("erin"))
    mail_sink.delay = 1.0
    sending = asyncio.create_task(send(email, request(tenant, item_id)))
    await asyncio.sleep(0.4)
    async with tenant_session(app_sessionmaker, tenant.account_id) as session:
        await lifecycle.claim(session, tenant.account_id, item_id, tenant.user("emil"), AT)
    assert (await sending).status == "failed"
    [row] = await tenant.deliveries(item_id)
    assert row.status == "failed"
    assert "delivery.failed" not in [e.kind for e in await tenant.push_events(item_id)]


async def test_a_send_cut_off_mid_mail_lets_its_guard_go(
    tenant: Tenant,
    email: EmailActivities,
    mail_sink: MailSink,
    owner_sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    """The send is cancelled while its mail is in SMTP, holding the item's send guard at
    session level: its connection is closed, not pooled with the guard still held, so a
    claim (on a connection of its own) goes ahead at once; a guard left held would stall it
    until its lock timeout."""
    item_id = await tenant.add_item(due_at=AT + timedelta(days=1))
    mail_sink.delay = 2.0
    sending = asyncio.create_task(send(email, request(tenant, item_id)))
    await asyncio.sleep(0.5)  # inside the SMTP call
    sending.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await sending
    async with tenant_session(owner_sessionmaker, tenant.account_id) as session:
        await session.execute(text("SET LOCAL lock_timeout = '500ms'"))
        await lifecycle.claim(session, tenant.account_id, item_id, tenant.user("emil"), AT)
    assert (await tenant.item(item_id)).state == "claimed"


async def test_every_mail_lets_its_guard_go(
    tenant: Tenant,
    email: EmailActivities,
    mail_sink: MailSink,
    owner_sessionmaker: async_sessionmaker[AsyncSession],
    app_sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    """A rung's own mail (its row recorded by the call that lets the guard go), a batch's
    mail (let go by a call of its own), a mail that failed, and a mail not sent because the
    item was claimed (let go by the call that read the state): after each, a transition on
    a connection of its own goes ahead at once."""
    item_id = await tenant.add_item(due_at=AT - timedelta(days=1))
    fired = await run(email.fire_and_send, escalate_1(tenant, item_id))
    assert [o.status for o in fired.outcomes or []] == ["sent"]
    assert (await send(email, request(tenant, item_id))).status == "sent"
    mail_sink.reject(tenant.email("emil"))
    assert (await send(email, request(tenant, item_id, key="emil"))).status == "failed"
    async with tenant_session(owner_sessionmaker, tenant.account_id) as session:
        await session.execute(text("SET LOCAL lock_timeout = '500ms'"))
        await lifecycle.claim(session, tenant.account_id, item_id, tenant.user("emil"), AT)
    async with send_guard.held(autocommit(app_sessionmaker), item_id, tenant.account_id) as held:
        assert held.state == "claimed"  # what a mail meets after a claim: it sends nothing
    async with tenant_session(owner_sessionmaker, tenant.account_id) as session:
        await session.execute(text("SET LOCAL lock_timeout = '500ms'"))
        actor = tenant.user("emil")
        await lifecycle.transition(session, tenant.account_id, item_id, actor, AT, "resolve")
    assert (await tenant.item(item_id)).state == "resolved"
