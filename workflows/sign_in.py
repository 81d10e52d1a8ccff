"""The account mails' workflows: no signals, no queries; their only timers are Temporal's
retry backoffs.

`SignInMailWorkflow`: one per sign-in request (`sign-in-<request id>`), started by the
API after it has answered, or by the reconciler if that start never happened. It looks up
whom the address belongs to (`sign_in_recipients`), sends each a mail through the delivery
engine (`send_account_mail`), retried for up to 10 minutes (the link is valid for 15), puts
what the activity could not on the record (`record_account_mail`), and last clears the
stored address (`sign_in_handled`).

`AccountMailWorkflow`: one per address change (`address-<change id>`): the confirmation to
the new address and the notice to the old one, sent the same way."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from activities.sign_in import SignInActivities
    from workflows.retries import db_step
    from workflows.types import (
        AccountMail,
        AccountMailOutcome,
        AccountMails,
        RecordAccountMail,
        SignIn,
    )

SIGN_IN_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=2), maximum_interval=timedelta(seconds=30)
)


@workflow.defn
class SignInMailWorkflow:
    @workflow.run
    async def run(self, request: SignIn) -> list[str]:
        mails = await db_step(SignInActivities.sign_in_recipients, request)
        sent = await asyncio.gather(*(send(mail) for mail in mails))
        await db_step(SignInActivities.sign_in_handled, request)
        return list(sent)


@workflow.defn
class AccountMailWorkflow:
    @workflow.run
    async def run(self, mails: AccountMails) -> list[str]:
        return list(await asyncio.gather(*(send(mail) for mail in mails.mails)))


async def send(mail: AccountMail) -> str:
    """One account mail through the delivery engine, retried for up to 10 minutes; its
    outcome on the record (`failed` once out of time)."""
    try:
        outcome = await workflow.execute_activity_method(
            SignInActivities.send_account_mail,
            mail,
            start_to_close_timeout=timedelta(minutes=1),
            schedule_to_close_timeout=timedelta(minutes=10),
            retry_policy=SIGN_IN_RETRY,
            summary=mail.kind,
        )
    except ActivityError as error:  # out of time: on the record as failed
        outcome = AccountMailOutcome(status="failed", error=str(error.cause or error))
        await db_step(
            SignInActivities.record_account_mail, RecordAccountMail(mail=mail, outcome=outcome)
        )
        return outcome.status
    if not outcome.recorded:
        await db_step(
            SignInActivities.record_account_mail, RecordAccountMail(mail=mail, outcome=outcome)
        )
    return outcome.status
