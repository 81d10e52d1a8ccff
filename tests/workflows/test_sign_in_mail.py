"""Account mails through the delivery engine. A sign-in request: one mail with its `Date`
and `Message-ID`, a delivery row about no item, nothing sent twice, the stored address
cleared once handled, no mail for an address nobody has, and a server that keeps answering
451 leaves it `failed` on the record once the link would have expired. An address change:
the confirmation to the new address while the change is pending, the notice to the old."""

from __future__ import annotations

import functools
import uuid
from datetime import timedelta

from sqlalchemy import select, text
from temporalio.client import WorkflowHandle

from domain.models import Delivery, SignInRequest
from mailsink import MailSink
from tests.support.tenants import Tenant
from tests.workflows.conftest import Runner, save_history
from workflows.sign_in import AccountMailWorkflow, SignInMailWorkflow
from workflows.types import AccountMail, AccountMails, SignIn

Handle = WorkflowHandle[SignInMailWorkflow, list[str]]


async def request(runner: Runner, address: str) -> SignIn:
    """The row the API writes for a sign-in request."""
    async with runner.app() as session, session.begin():
        made = await session.scalar(
            text("SELECT escalator_sign_in_request(:address, 100, interval '15 minutes')"),
            {"address": address},
        )
    assert made is not None
    return SignIn(request_id=made)


async def answer(runner: Runner, asked: SignIn, suffix: str = "") -> Handle:
    return await runner.env.client.start_workflow(
        SignInMailWorkflow.run,
        asked,
        id=f"sign-in-{asked.request_id}{suffix}",
        task_queue=runner.task_queue,
    )


async def sign_in_rows(tenant: Tenant) -> list[tuple[str, int, str | None]]:
    async with tenant.owner() as session:
        rows = await session.scalars(
            select(Delivery).where(
                Delivery.account_id == tenant.account_id, Delivery.event_key == "auth.sign_in"
            )
        )
        return [(d.status, d.attempts, d.message_id) for d in rows]


async def stored(tenant: Tenant, asked: SignIn) -> SignInRequest:
    async with tenant.owner() as session:
        row = await session.get(SignInRequest, asked.request_id)
        assert row is not None
        return row


async def test_a_sign_in_mail_is_sent_once_with_its_headers(runner: Runner, tenant: Tenant) -> None:
    asked = await request(runner, tenant.email("ada"))
    handle = await answer(runner, asked)
    assert await handle.result() == ["sent"]
    [sent] = runner.sink.mails
    assert sent.rcpt_tos == (tenant.email("ada"),)
    assert sent.message["Date"]
    assert "sign-in link" in sent.subject
    [(status, attempts, message_id)] = await sign_in_rows(tenant)
    assert (status, attempts, message_id) == ("sent", 1, sent.message_id)
    row = await stored(tenant, asked)
    assert (row.address, row.handled_at is not None) == (None, True)  # only the hash stays
    again = await answer(runner, asked, "-again")
    assert await again.result() == []  # handled: never a second mail
    assert len(runner.sink.mails) == 1
    await save_history(handle, "sign_in_mail_sent")


async def test_an_address_nobody_has_gets_no_mail_and_is_cleared(
    runner: Runner, tenant: Tenant
) -> None:
    asked = await request(runner, f"nobody@{tenant.slug}.escalator.test")
    assert await (await answer(runner, asked)).result() == []
    assert runner.sink.mails == []
    assert (await stored(tenant, asked)).address is None


async def test_a_server_that_keeps_deferring_leaves_it_failed(
    runner: Runner, tenant: Tenant, mail_sink: MailSink
) -> None:
    mail_sink.reject(tenant.email("ada"), "451 4.3.0 try again later")
    asked = await request(runner, tenant.email("ada"))
    handle = await answer(runner, asked)
    await runner.skip_to(await runner.now() + timedelta(minutes=11))
    assert await handle.result() == ["failed"]
    [(status, attempts, _)] = await sign_in_rows(tenant)
    assert status == "failed"
    assert attempts >= 2
    await save_history(handle, "sign_in_mail_failed")


async def test_an_address_change_mails_the_new_address_and_tells_the_old(
    runner: Runner, tenant: Tenant
) -> None:
    new = f"ada.new@{tenant.slug}.example.com"
    await tenant.update_user("ada", pending_email=new)
    mail = functools.partial(
        AccountMail,
        account_id=str(tenant.account_id),
        user_id=str(tenant.user("ada")),
        requested_at=await runner.now(),
    )
    confirm = mail(delivery_id=str(uuid.uuid4()), kind="auth.confirm_email", address=new)
    notice = mail(
        delivery_id=str(uuid.uuid4()),
        kind="auth.email_changing",
        address=tenant.email("ada"),
        new_address=new,
        actor="Otto Owner",
    )
    handle = await runner.env.client.start_workflow(
        AccountMailWorkflow.run,
        AccountMails(id=str(uuid.uuid4()), mails=[confirm, notice]),
        id=f"address-{uuid.uuid4()}",
        task_queue=runner.task_queue,
    )
    assert await handle.result() == ["sent", "sent"]
    assert sorted(m.rcpt_tos for m in runner.sink.mails) == sorted([(new,), (tenant.email("ada"),)])
    await tenant.update_user("ada", pending_email=None)  # withdrawn: a repeat is not sent
    later = await runner.env.client.start_workflow(
        AccountMailWorkflow.run,
        AccountMails(
            id=str(uuid.uuid4()),
            mails=[mail(delivery_id=str(uuid.uuid4()), kind="auth.confirm_email", address=new)],
        ),
        id=f"address-{uuid.uuid4()}",
        task_queue=runner.task_queue,
    )
    assert await later.result() == ["suppressed"]
    assert len(runner.sink.mails) == 2
    await save_history(handle, "address_change_mailed")
