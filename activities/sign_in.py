"""Mails about a person's account rather than an item (`workflows.sign_in`): sign-in links
and the two mails of an address change.

A sign-in request is answered by the worker: `sign_in_recipients` finds whom its address
belongs to, `send_account_mail` and `record_account_mail` send each mail through the
delivery engine, over the worker's SMTP pool, with its own delivery row (its kind as the
event, about no item), a `Date` and a deterministic `Message-ID`, and `sign_in_handled`
clears the stored address. The request's row is read and written only through the definer
functions made for it."""

from __future__ import annotations

import hashlib
import uuid

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.mail import MailLinks, account_message
from activities.smtp import SmtpPool
from db import tenant_session
from domain import deliveries, links
from domain.addresses import Undeliverable, for_smtp
from domain.clock import utcnow
from domain.models import Account, User
from workflows.types import AccountMail, AccountMailOutcome, RecordAccountMail, SignIn

# Sign-in mails' delivery ids: uuid5(this, "<request id>:<user id>").
MAILS = uuid.UUID("6f1c2b8e-5d4a-4e0b-9a37-2c1d0e8f7a65")


class SignInActivities:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        pool: SmtpPool,
        links: MailLinks,
        *,
        smtputf8: bool = False,
    ) -> None:
        self._sessionmaker = sessionmaker
        self._pool = pool
        self._links = links
        self._smtputf8 = smtputf8

    @activity.defn
    async def sign_in_recipients(self, request: SignIn) -> list[AccountMail]:
        """No side effect: one mail for each active user the request's address belongs to
        (none for an address nobody has, or a request handled already)."""
        async with self._sessionmaker() as session:
            found = await session.execute(
                text("SELECT * FROM escalator_sign_in_recipients(:id)"), {"id": request.request_id}
            )
            return [
                AccountMail(
                    delivery_id=str(uuid.uuid5(MAILS, f"{request.request_id}:{row.user_id}")),
                    account_id=str(row.account_id),
                    user_id=str(row.user_id),
                    requested_at=row.requested_at,
                )
                for row in found
            ]

    @activity.defn
    async def sign_in_handled(self, request: SignIn) -> None:
        """Side effect: the request's address cleared (only its hash stays, for the rate
        limit, until it expires); idempotent."""
        async with self._sessionmaker() as session, session.begin():
            await session.execute(
                text("SELECT escalator_sign_in_handled(:id)"), {"id": request.request_id}
            )

    @activity.defn
    async def send_account_mail(self, mail: AccountMail) -> AccountMailOutcome:
        """Side effect: the account mail (see `AccountMail.kind`) over SMTP. Idempotency
        key: the delivery row's id; a row already `sent` or `failed` is not sent again. A
        transient SMTP error is raised for Temporal to retry; a 5xx or an address that cannot
        be sent to is `failed`; a user gone or deactivated since, or an address change
        withdrawn since, is `suppressed`."""
        delivery_id, account_id = uuid.UUID(mail.delivery_id), uuid.UUID(mail.account_id)
        async with tenant_session(self._sessionmaker, account_id) as session:
            row = await deliveries.attempt_account_mail(
                session, delivery_id, account_id, uuid.UUID(mail.user_id), mail.kind
            )
            if row.status in deliveries.FINAL:
                return AccountMailOutcome(status=row.status, sent_at=row.sent_at)
            found = (
                await session.execute(
                    select(User.name, User.email, User.pending_email, Account.name.label("account"))
                    .join(Account, Account.id == User.account_id)
                    .where(
                        User.id == uuid.UUID(mail.user_id),
                        User.account_id == account_id,
                        User.is_active,
                        User.deleted_at.is_(None),
                    )
                )
            ).one_or_none()
        if found is None:
            return await self._record(
                mail, AccountMailOutcome(status="suppressed", error="user gone")
            )
        if mail.kind == "auth.confirm_email" and found.pending_email != mail.address:
            withdrawn = AccountMailOutcome(status="suppressed", error="address change withdrawn")
            return await self._record(mail, withdrawn)
        try:
            address = for_smtp(mail.address or found.email, smtputf8=self._smtputf8)
        except Undeliverable as error:
            return await self._record(mail, AccountMailOutcome(status="failed", error=str(error)))
        message_id = f"<{hashlib.sha256(mail.delivery_id.encode()).hexdigest()[:32]}@escalator>"
        message = account_message(
            mail.kind,
            name=found.name,
            address=address,
            account=found.account,
            at=utcnow(),
            message_id=message_id,
            **self._variables(mail),
        )
        message["From"] = self._pool.smtp.mail_from
        async with self._pool.slot():
            tried = await self._pool.attempt(message, address)
        if tried.status == "failed":
            return await self._record(mail, AccountMailOutcome(status="failed", error=tried.error))
        if tried.status == "retry":
            await self._record(mail, AccountMailOutcome(status="pending", error=tried.error))
            raise ApplicationError(f"SMTP will be tried again: {tried.error}")
        sent = AccountMailOutcome(status="sent", sent_at=utcnow(), message_id=message_id)
        try:
            return await self._record(mail, sent)
        except Exception as error:  # accepted: never sent again for a failure to record it
            activity.logger.warning("account_mail.unrecorded", extra={"error": str(error)})
            return AccountMailOutcome(
                status="sent", sent_at=sent.sent_at, message_id=message_id, recorded=False
            )

    def _variables(self, mail: AccountMail) -> dict[str, str]:
        """What the kind's template needs: a link for a sign-in or a confirmation."""
        if mail.kind.startswith("webhook."):
            return {
                "endpoint": mail.endpoint or "",
                "reason": mail.reason or "",
                "url": f"{self._links.base_url.rstrip('/')}/admin/webhooks",
            }
        if mail.kind == "auth.email_changing":
            return {"new_address": mail.new_address or "", "actor": mail.actor or "an admin"}
        purpose: links.Purpose = "address" if mail.kind == "auth.confirm_email" else "sign_in"
        token = links.mint(
            purpose,
            self._links.secret,
            user_id=uuid.UUID(mail.user_id),
            account_id=uuid.UUID(mail.account_id),
            email=mail.address if purpose == "address" else None,
            now=mail.requested_at,
        )
        return {"url": links.url(self._links.base_url, purpose, token)}

    @activity.defn
    async def record_account_mail(self, request: RecordAccountMail) -> None:
        """Side effect: the outcome on the account mail's row (see
        `domain.deliveries.record_account_mail`); idempotent."""
        await self._record(request.mail, request.outcome)

    async def _record(self, mail: AccountMail, outcome: AccountMailOutcome) -> AccountMailOutcome:
        account_id = uuid.UUID(mail.account_id)
        async with tenant_session(self._sessionmaker, account_id) as session:
            await deliveries.record_account_mail(
                session,
                uuid.UUID(mail.delivery_id),
                status=outcome.status,
                error=outcome.error,
                sent_at=outcome.sent_at,
                message_id=outcome.message_id,
            )
        return outcome
