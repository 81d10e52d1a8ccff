"""A sign-in request answered by the worker (`workflows.sign_in`): `sign_in_recipients`
finds whom its address belongs to, `send_sign_in` and `record_sign_in` send each their mail
through the delivery engine, over the worker's SMTP pool, with its own delivery row
(`auth.sign_in`, about no item), a `Date` and a deterministic `Message-ID`, and
`sign_in_handled` clears the stored address. The request's row is read and written only
through the definer functions made for it."""

from __future__ import annotations

import hashlib
import uuid

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.mail import MailLinks, sign_in_message
from activities.smtp import SmtpPool
from db import tenant_session
from domain import deliveries, links
from domain.addresses import Undeliverable, for_smtp
from domain.clock import utcnow
from domain.models import Account, User
from workflows.types import RecordSignIn, SignIn, SignInMail, SignInOutcome

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
    async def sign_in_recipients(self, request: SignIn) -> list[SignInMail]:
        """No side effect: one mail for each active user the request's address belongs to
        (none for an address nobody has, or a request handled already)."""
        async with self._sessionmaker() as session:
            found = await session.execute(
                text("SELECT * FROM escalator_sign_in_recipients(:id)"), {"id": request.request_id}
            )
            return [
                SignInMail(
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
    async def send_sign_in(self, mail: SignInMail) -> SignInOutcome:
        """Side effect: the sign-in mail over SMTP. Idempotency key: the delivery row's id
        (the request's); a row already `sent` or `failed` is not sent again. A transient
        SMTP error is raised for Temporal to retry; a 5xx or an address that cannot be sent
        to is `failed`; a user gone or deactivated since is `suppressed`."""
        delivery_id, account_id = uuid.UUID(mail.delivery_id), uuid.UUID(mail.account_id)
        async with tenant_session(self._sessionmaker, account_id) as session:
            row = await deliveries.attempt_sign_in(
                session, delivery_id, account_id, uuid.UUID(mail.user_id)
            )
            if row.status in deliveries.FINAL:
                return SignInOutcome(status=row.status, sent_at=row.sent_at)
            found = (
                await session.execute(
                    select(User.name, User.email, Account.name.label("account"))
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
            return await self._record(mail, SignInOutcome(status="suppressed", error="user gone"))
        try:
            address = for_smtp(found.email, smtputf8=self._smtputf8)
        except Undeliverable as error:
            return await self._record(mail, SignInOutcome(status="failed", error=str(error)))
        message_id = f"<{hashlib.sha256(mail.delivery_id.encode()).hexdigest()[:32]}@escalator>"
        token = links.mint(
            "sign_in",
            self._links.secret,
            user_id=uuid.UUID(mail.user_id),
            account_id=account_id,
            now=mail.requested_at,
        )
        message = sign_in_message(
            name=found.name,
            address=address,
            account=found.account,
            url=links.url(self._links.base_url, "sign_in", token),
            at=utcnow(),
            message_id=message_id,
        )
        message["From"] = self._pool.smtp.mail_from
        async with self._pool.slot():
            tried = await self._pool.attempt(message, address)
        if tried.status == "failed":
            return await self._record(mail, SignInOutcome(status="failed", error=tried.error))
        if tried.status == "retry":
            await self._record(mail, SignInOutcome(status="pending", error=tried.error))
            raise ApplicationError(f"SMTP will be tried again: {tried.error}")
        sent = SignInOutcome(status="sent", sent_at=utcnow(), message_id=message_id)
        try:
            return await self._record(mail, sent)
        except Exception as error:  # accepted: never sent again for a failure to record it
            activity.logger.warning("sign_in.unrecorded", extra={"error": str(error)})
            return SignInOutcome(
                status="sent", sent_at=sent.sent_at, message_id=message_id, recorded=False
            )

    @activity.defn
    async def record_sign_in(self, request: RecordSignIn) -> None:
        """Side effect: the outcome on the sign-in mail's row (see
        `domain.deliveries.record_sign_in`); idempotent."""
        await self._record(request.mail, request.outcome)

    async def _record(self, mail: SignInMail, outcome: SignInOutcome) -> SignInOutcome:
        account_id = uuid.UUID(mail.account_id)
        async with tenant_session(self._sessionmaker, account_id) as session:
            await deliveries.record_sign_in(
                session,
                uuid.UUID(mail.delivery_id),
                status=outcome.status,
                error=outcome.error,
                sent_at=outcome.sent_at,
                message_id=outcome.message_id,
            )
        return outcome
