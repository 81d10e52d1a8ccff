"""The sign-in mail through the delivery engine: one mail with its `Date` and `Message-ID`,
a delivery row about no item, nothing sent twice, and a server that keeps answering 451 leaves it
`failed` on the record once the link would have expired."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from sqlalchemy import select

from domain.models import Delivery
from mailsink import MailSink
from tests.support.tenants import Tenant
from tests.workflows.conftest import Runner, save_history
from workflows.sign_in import SignInMailWorkflow
from workflows.types import SignInMail


def mail_for(tenant: Tenant, key: str, at: datetime) -> SignInMail:
    return SignInMail(
        delivery_id=str(uuid.uuid4()),
        account_id=str(tenant.account_id),
        user_id=str(tenant.user(key)),
        requested_at=at,
    )


async def sign_in_rows(tenant: Tenant) -> list[tuple[str, int, str | None]]:
    async with tenant.owner() as session:
        rows = await session.scalars(
            select(Delivery).where(
                Delivery.account_id == tenant.account_id, Delivery.event_key == "auth.sign_in"
            )
        )
        return [(d.status, d.attempts, d.message_id) for d in rows]


async def test_a_sign_in_mail_is_sent_once_with_its_headers(runner: Runner, tenant: Tenant) -> None:
    mail = mail_for(tenant, "ada", await runner.now())
    handle = await runner.env.client.start_workflow(
        SignInMailWorkflow.run, mail, id=f"sign-in-{mail.delivery_id}", task_queue=runner.task_queue
    )
    assert await handle.result() == "sent"
    [sent] = runner.sink.mails
    assert sent.rcpt_tos == (tenant.email("ada"),)
    assert sent.message["Date"]
    assert "sign-in link" in sent.subject
    [(status, attempts, message_id)] = await sign_in_rows(tenant)
    assert (status, attempts, message_id) == ("sent", 1, sent.message_id)
    again = await runner.env.client.start_workflow(
        SignInMailWorkflow.run,
        mail,
        id=f"sign-in-{mail.delivery_id}-again",
        task_queue=runner.task_queue,
    )
    assert await again.result() == "sent"
    assert len(runner.sink.mails) == 1  # the row's id is the key: never a second mail
    await save_history(handle, "sign_in_mail_sent")


async def test_a_server_that_keeps_deferring_leaves_it_failed(
    runner: Runner, tenant: Tenant, mail_sink: MailSink
) -> None:
    mail_sink.reject(tenant.email("ada"), "451 4.3.0 try again later")
    mail = mail_for(tenant, "ada", await runner.now())
    handle = await runner.env.client.start_workflow(
        SignInMailWorkflow.run, mail, id=f"sign-in-{mail.delivery_id}", task_queue=runner.task_queue
    )
    await runner.skip_to(await runner.now() + timedelta(minutes=11))
    assert await handle.result() == "failed"
    [(status, attempts, _)] = await sign_in_rows(tenant)
    assert status == "failed"
    assert attempts >= 2
    await save_history(handle, "sign_in_mail_failed")
