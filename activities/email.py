"""The mail half of the delivery engine: `send_emails`, `fire_and_send`, `record_outcomes`
and `record_failures`. Each mail is sent at most once per delivery row, none after a claim,
and one recipient's trouble is never the batch's.

1. The attempt, one committed transaction: every recipient's row into its attempt state
   (`domain.deliveries.attempt`): a final row is skipped, a recipient in quiet hours is
   `deferred`, the rest are `sending` with attempts + 1. If the item is no longer open, every
   live row of it is `suppressed` instead.
2. The sends, concurrently over the worker's SMTP pool. Each mail, once a pooled connection
   is free for it, is rendered (an address that cannot be encoded fails that recipient
   alone), then sent while it holds the item's send guard (`domain.send_guard.held`: one
   call takes it and reads the item's state, one lets it go and, for a sent mail of a
   rung's own few, records its row's `sent`): a claim waits for the mails in flight, never
   for the batch, and a mail that starts after a claim committed is not sent. Such a mail
   is two calls and the SMTP commands, with no transaction around them. No mail is started
   with less time left than `smtp_timeout_seconds` before the activity's own timeout: a
   slow but working server is never cut off mid-mail; the mails not started come back
   `later` and the workflow sends them at once in a new activity.
3. The other outcomes (a big fan-out's sent mails, and failed, not tried, not encodable,
   or a commit that failed), after the guards, together (`domain.deliveries.record`), with
   the audit row and the `delivery.failed` push of each new failure (none once the item is
   not open). If Postgres fails there, the result still says what SMTP did
   (`recorded=False`) and the workflow records it with `record_outcomes`, retried until
   Postgres is back: an accepted mail is never sent again for a failure to record it.

The one honest limit (RFC 1047): a worker that dies between SMTP's accept and the record
leaves the row `sending`; the retry sends again, with the same Message-ID, and the row says
`attempts: 2` with the unknown outcome in `last_error`.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from dataclasses import replace
from email.message import Message

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity

import metrics
from activities.mail import MailItem, MailLinks, message_id, render
from activities.mail_outcomes import (
    announce,
    batch_of,
    delivery_key,
    heartbeating,
    measure,
    not_now,
    open_item,
    send_deadline,
    suppress_all,
)
from activities.rungs import fire
from activities.smtp import Smtp, SmtpPool
from config import Settings
from db import autocommit, tenant_session
from domain import deliveries, send_guard
from domain.addresses import for_smtp
from domain.clock import utcnow
from domain.recipients import Recipient
from workflows.types import (
    FireRung,
    MailOutcome,
    RecordFailures,
    RecordOutcomes,
    RungFired,
    SendEmails,
    SendEmailsResult,
)

# `fire_and_send` mails up to this many recipients itself (a local activity); a bigger
# fan-out goes to `send_emails`, a heartbeating activity of its own.
LOCAL_SENDS = 25


class EmailActivities:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        smtp: Smtp,
        pool_size: int = 8,
        links: MailLinks | None = None,
    ) -> None:
        self._sessionmaker = sessionmaker
        # The rung's call, and the mails' send guards (two calls each), in autocommit.
        self._autocommit = autocommit(sessionmaker)
        self._smtp = smtp
        self._pool = SmtpPool(smtp, pool_size)
        self._links = links or MailLinks.from_settings(Settings())

    @property
    def pool(self) -> SmtpPool:
        """The worker's SMTP connections, shared with the sign-in mail."""
        return self._pool

    @activity.defn
    async def send_emails(self, request: SendEmails) -> SendEmailsResult:
        """Side effect: one email per recipient over SMTP. Idempotency key: each delivery
        row's unique (recipient, item, event_key, 'email'); a `sent` row is never sent again,
        so a retry of the whole activity (a dead worker) sends only what is not yet sent.
        Every per-recipient error is an outcome, never a failure of the activity: a
        transient one `retry`, a permanent one `failed`. Heartbeats every second."""
        deadline = send_deadline()
        async with heartbeating():
            return SendEmailsResult(outcomes=await self._send_all(request, deadline))

    @activity.defn
    async def fire_and_send(self, request: FireRung) -> RungFired:
        """Side effect: `fire_rung`'s transaction, which (if the rung emails at most
        `LOCAL_SENDS` recipients) also commits the mails' attempt, then the sends. Run as a
        local activity, a rung costs one workflow task and no activity round trip through
        the server. Idempotency: both parts' keys; a retry re-fires nothing and sends only
        what is not yet sent. More recipients than that are left to `send_emails`
        (`outcomes` None), which heartbeats."""
        deadline = send_deadline()
        account_id = uuid.UUID(request.account_id)
        attempt = LOCAL_SENDS if "email" in request.channels else None
        fired = await fire(self._autocommit, request, attempt)
        if fired.item is None or fired.attempted is None:
            return fired.rung
        batch = replace(batch_of(request), recipients=list(fired.rung.recipients))
        settled = not_now(fired.attempted)
        due = [r for r in batch.recipients if r.user_id not in settled]
        if due:
            sent = await self._deliver(batch, account_id, due, fired.item, deadline, each=True)
            settled.update(sent)
        return replace(fired.rung, outcomes=[settled[r.user_id] for r in batch.recipients])

    @activity.defn
    async def record_outcomes(self, request: RecordOutcomes) -> None:
        """Side effect: the outcomes a send reported but could not record (Postgres failed
        after SMTP answered), recorded as `send_emails` would have. Idempotent: `sent` is
        set once, the rest only on rows still `sending`, audits once per delivery."""
        account_id = uuid.UUID(request.batch.account_id)
        await self._record(request.batch, account_id, request.outcomes)

    @activity.defn
    async def record_failures(self, request: RecordFailures) -> list[str]:
        """Side effect: out of attempts, every named delivery still `pending` or `sending`
        becomes `failed` with the error, its `delivery_failed` audit row (key
        `<delivery>:failed`, so once) and, while the item is open, its `delivery.failed`
        push. Returns the recipients it marked."""
        account_id = uuid.UUID(request.account_id)
        key = deliveries.Key(
            account_id=account_id,
            item_id=uuid.UUID(request.item_id),
            event_key=request.event_key,
        )
        ids = [uuid.UUID(r) for r in request.recipient_ids]
        async with tenant_session(self._sessionmaker, account_id) as session:
            # The send guard before the rows, in the order a claim takes them (guard, item,
            # rows): the two never deadlock, and a claim committing goes first.
            await send_guard.sending(session, key.item_id)
            rows = await deliveries.give_up(session, key, ids, request.error, request.tier)
            await announce(session, key, [(row, request.error) for row in rows], request.emails)
        metrics.delivered("email", "failed", len(rows))
        return [str(row.recipient_id) for row in rows]

    # ---- the engine ----------------------------------------------------------------------
    async def _send_all(self, request: SendEmails, deadline: float) -> list[MailOutcome]:
        unique = list({r.user_id: r for r in request.recipients}.values())
        request = replace(request, recipients=unique)  # one row, one mail, per recipient
        account_id = uuid.UUID(request.account_id)
        outcomes, item = await self._prepare(request, account_id)
        due = [r for r in request.recipients if r.user_id not in outcomes]
        if due and item is not None:
            outcomes.update(await self._deliver(request, account_id, due, item, deadline))
        return [outcomes[r.user_id] for r in request.recipients]

    async def _prepare(
        self, request: SendEmails, account_id: uuid.UUID
    ) -> tuple[dict[str, MailOutcome], MailItem | None]:
        """The attempt, committed: the outcome of every recipient not to be sent now."""
        async with tenant_session(self._sessionmaker, account_id) as session:
            item = await open_item(session, request, account_id)
            if item is None:
                return await suppress_all(session, request, account_id), None
            rows = await deliveries.attempt(
                session, delivery_key(request), request.at, request.critical, request.recipients
            )
            return not_now(rows), item

    async def _deliver(
        self,
        request: SendEmails,
        account_id: uuid.UUID,
        due: Sequence[Recipient],
        item: MailItem,
        deadline: float,
        *,
        each: bool = False,
    ) -> dict[str, MailOutcome]:
        """The sends, each under the send guard; then, together, the outcomes no guard's
        transaction recorded. `each` (a rung's few mails): a sent mail is recorded in its
        guard's transaction, one round trip and no transaction of its own. A big fan-out
        records them all together instead: each mail's commit would then wait for its own
        WAL flush, which made 5,000 mails take 70 % longer on the bench."""
        key = delivery_key(request)
        tried = await asyncio.gather(
            *(self._send_one(request, key, r, item, deadline, each) for r in due)
        )
        sent = [outcome for outcome, _ in tried]
        outcomes = {o.user_id: o for o in sent}
        unrecorded = [outcome for outcome, recorded in tried if not recorded]
        try:
            if unrecorded:
                await self._record(request, account_id, unrecorded)
        except Exception as error:
            # SMTP has what it has; only the record is missing. Never send again for that:
            # the workflow records what this could not.
            activity.logger.warning("email.unrecorded", extra={"error": str(error)})
            for o in unrecorded:
                outcomes[o.user_id] = replace(o, recorded=False)
        measure(request, item, sent)
        activity.logger.info(
            "email.sent",
            extra={"sent": sum(o.status == "sent" for o in sent), "rung": request.rung},
        )
        return outcomes

    async def _send_one(
        self,
        request: SendEmails,
        key: deliveries.Key,
        recipient: Recipient,
        item: MailItem,
        deadline: float,
        each: bool,
    ) -> tuple[MailOutcome, bool]:
        """One recipient's mail, what became of it, and whether that is recorded; never
        raises. It is rendered once a pooled connection is free for it, and sent only if
        there is time for it and the item is open under the send guard (`send_guard.held`:
        the guard and the state in one call, the SMTP commands, one call to let it go). With
        `each`, a sent mail's row is recorded by the call that lets the guard go; any other
        outcome after the guard, with the batch's, so a failure is announced only while no
        claim has committed."""
        user_id = recipient.user_id
        async with self._pool.slot():
            try:
                message = render(
                    request, recipient, item, self._links, smtputf8=self._smtp.smtputf8
                )
                message["From"] = self._smtp.mail_from
                wire = for_smtp(recipient.email, smtputf8=self._smtp.smtputf8)
            except Exception as error:  # this address or name, never the batch
                reason = f"cannot be sent to {recipient.email!r}: {error}"
                return MailOutcome(user_id=user_id, status="failed", error=reason), False
            if deadline - asyncio.get_running_loop().time() < self._smtp.timeout:
                return MailOutcome(user_id=user_id, status="later"), False
            outcome: MailOutcome | None = None
            try:
                async with send_guard.held(self._autocommit, item.id, key.account_id) as guard:
                    if guard.state != "open":
                        reason = f"not sent: the item is {guard.state}"
                        outcome = MailOutcome(user_id=user_id, status="suppressed", error=reason)
                        return outcome, False  # recorded with the batch's, after the guard
                    outcome = await self._smtp_send(request, user_id, message, wire)
                    if each and outcome.status == "sent" and outcome.sent_at and outcome.message_id:
                        recipient_id, sent_id = uuid.UUID(user_id), outcome.message_id
                        await guard.release_sent(
                            key.event_key, recipient_id, outcome.sent_at, sent_id
                        )
                        return outcome, True
                    await guard.release()
                    return outcome, False  # recorded with the batch's, after the guard
            except Exception as error:  # Postgres: the guard and its read, the record
                if outcome is None:
                    reason = f"not sent: the database failed: {type(error).__name__}: {error}"
                    return MailOutcome(user_id=user_id, status="retry", error=reason), False
                return outcome, False  # SMTP answered: recorded with the batch's leftovers

    async def _smtp_send(
        self, request: SendEmails, user_id: str, message: Message, wire: str
    ) -> MailOutcome:
        """One mail over a pooled connection, within the mail's time: its outcome."""
        tried = await self._pool.attempt(message, wire)
        if tried.status != "sent":
            return MailOutcome(user_id=user_id, status=tried.status, error=tried.error)
        return MailOutcome(
            user_id=user_id,
            status="sent",
            sent_at=utcnow(),
            message_id=message_id(user_id, request.item_id, request.event_key),
        )

    async def _record(
        self, request: SendEmails, account_id: uuid.UUID, outcomes: Sequence[MailOutcome]
    ) -> None:
        results = [
            deliveries.Result(
                recipient_id=uuid.UUID(o.user_id),
                status=o.status,
                sent_at=o.sent_at,
                message_id=o.message_id,
                error=o.error,
            )
            for o in outcomes
            if o.status in ("sent", "failed", "retry", "later", "suppressed")
        ]
        if not results:
            return
        key = delivery_key(request)
        emails = {r.user_id: r.email for r in request.recipients}
        errors = {o.user_id: o.error or "" for o in outcomes}
        async with tenant_session(self._sessionmaker, account_id) as session:
            await send_guard.sending(session, key.item_id)  # before the rows, as a claim
            failed = await deliveries.record(session, key, results, request.tier)
            announced = [(row, errors[str(row.recipient_id)]) for row in failed]
            await announce(session, key, announced, emails)
