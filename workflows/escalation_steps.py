"""The notification fan-out of one rung, run from `EscalationWorkflow` (workflow code: only
`workflow.*` time and activities here; imported passed-through with the message types).

A rung's stamp, recipients, undeliverable audit, delivery rows and push are one
`fire_rung` transaction (see `EscalationWorkflow._fire`); `Notifier.send` then sends the
rung's mails as one `send_emails` activity over the worker's SMTP pool (up to `BATCH`
recipients each). Its outcome is per recipient: the sent and suppressed are done, a 5xx is
recorded and announced, a transient error is sent again after a durable backoff timer to
those recipients only, and a recipient in quiet hours gets a durable timer until the window
ends, then another attempt. A handoff's fan-out (and a history from before that patch) goes
the older way: resolve recipients -> audit `escalation_undeliverable` if nobody -> publish
the push event -> the same sends. A history from before `batched-sends` runs one
`send_email` per recipient. One recipient's failure never blocks the others.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

from activities.email import EmailActivities
from activities.items import ItemActivities
from activities.push import PushActivities
from activities.recipients import RecipientActivities
from activities.webhook import WebhookActivities
from workflows.types import (
    DeliveryOutcome,
    ItemRef,
    ItemSnapshot,
    MailOutcome,
    PublishEvent,
    Recipient,
    RecordAudit,
    RecordFailures,
    ResolveRecipients,
    SendEmail,
    SendEmails,
)
from workflows.webhook_types import PlanWebhooks, SendWebhook, WebhookFailure

SEND_CONCURRENCY = 8
SEND_HEARTBEAT = timedelta(seconds=10)
DELIVERY_TRUTH = "delivery-failure-recorded"  # workflow.patched: earlier histories did not
# workflow.patched: a rung's mails are one `send_emails` activity; before it, one per recipient.
BATCHED_SENDS = "batched-sends"
BATCH = 500  # recipients per `send_emails` (its payload stays far below Temporal's limit)
BATCH_TIMEOUT = timedelta(minutes=15)  # 500 mails over a slow server; heartbeats catch a death
LOCAL_SEND_TIMEOUT = timedelta(minutes=1)  # `fire_and_send`: a few mails, SMTP timeouts of 10 s
DB_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=30)
)

ActivitySelf = TypeVar("ActivitySelf")
Arg = TypeVar("Arg")
Result = TypeVar("Result")


async def db_step(
    method: Callable[[ActivitySelf, Arg], Awaitable[Result]],
    arg: Arg,
    allowed: timedelta = timedelta(seconds=15),
) -> Result:
    """A short activity, run locally (no server round trip per step): a DB step, or a
    rung's fire and its few mails (`fire_and_send`, given a minute)."""
    return await workflow.execute_local_activity_method(
        method, arg, start_to_close_timeout=allowed, retry_policy=DB_RETRY
    )


SMTP_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=2),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=5),
    maximum_attempts=20,
    non_retryable_error_types=["PermanentDeliveryError"],
)


# A webhook POST: Temporal retries a 5xx, 408, 429 or timeout with backoff for about a day
# (a receiver's Retry-After sets the next delay); each attempt is on its delivery row.
WEBHOOK_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=5),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(hours=1),
    maximum_attempts=30,
)
WEBHOOK_TIMEOUT = timedelta(seconds=60)  # one attempt: the POST's own timeout is seconds


@dataclass(frozen=True, kw_only=True)
class Notification:
    event_key: str
    rung: str
    tier: int
    chain: list[str]
    channels: list[str]
    critical: bool
    push_kind: str
    actor_id: str | None = None
    extra: dict[str, str] = field(default_factory=dict)
    planned_at: datetime | None = None  # the rung's instant: the lateness metric's start


class Notifier:
    def __init__(self, ref: ItemRef, snapshot: ItemSnapshot) -> None:
        self._ref = ref
        self._snapshot = snapshot
        self._sends: list[asyncio.Task[None]] = []
        self._slots = asyncio.Semaphore(SEND_CONCURRENCY)

    async def notify(self, note: Notification) -> None:
        ref = self._ref
        resolved = await db_step(
            RecipientActivities.resolve_recipients,
            ResolveRecipients(
                item_id=ref.item_id,
                account_id=ref.account_id,
                chain=note.chain,
                actor_id=note.actor_id,
            ),
        )
        if not resolved.recipients:
            # Never silent: an empty chain end is on the record.
            await db_step(
                ItemActivities.record_audit,
                RecordAudit(
                    item_id=ref.item_id,
                    account_id=ref.account_id,
                    action="escalation_undeliverable",
                    key=f"{ref.item_id}:{note.event_key}:undeliverable",
                    tier=note.tier,
                    data={"rung": note.rung, "tried": ",".join(resolved.tried)},
                ),
            )
        if "push" in note.channels:
            await self._publish(
                note.push_kind,
                f"{ref.item_id}:{note.event_key}",
                {
                    "tier": note.tier,
                    "rung": note.rung,
                    "event_key": note.event_key,
                    "recipients": [r.name for r in resolved.recipients],
                },
            )
        self.send(note, resolved.recipients)

    def sent(
        self, note: Notification, recipients: list[Recipient], outcomes: list[MailOutcome]
    ) -> None:
        """The rung's mails went out with its fire (`fire_and_send`): follow up on their
        outcomes (retries, quiet hours, failures) as `send` would."""
        self._sends.append(asyncio.create_task(self._deliver_batch(note, recipients, outcomes)))

    def send(self, note: Notification, recipients: list[Recipient]) -> None:
        """The rung's mails, if it emails: `send_emails` per `BATCH` recipients (one
        concurrent `send_email` per recipient in a history from before `batched-sends`)."""
        if "email" not in note.channels or not recipients:
            return
        if workflow.patched(BATCHED_SENDS):
            for n in range(0, len(recipients), BATCH):
                batch = recipients[n : n + BATCH]
                self._sends.append(asyncio.create_task(self._deliver_batch(note, batch)))
            return
        for recipient in recipients:
            self._sends.append(asyncio.create_task(self._deliver(note, recipient)))

    async def _deliver_batch(
        self,
        note: Notification,
        recipients: list[Recipient],
        first: list[MailOutcome] | None = None,
    ) -> None:
        """Send until every recipient is sent, suppressed or failed: transient errors again
        after a durable backoff (those recipients only), quiet hours after their end.
        `first`: the outcomes of an attempt already made (by `fire_and_send`)."""
        attempt = 0
        while recipients:
            if first is not None:
                outcomes = {o.user_id: o for o in first}
                first = None
            else:
                sent = await self._attempt(note, recipients, on_time=attempt == 0)
                if sent is None:
                    return
                outcomes = {o.user_id: o for o in sent}
            by_id = {r.user_id: r for r in recipients}
            await self._record_unrecorded(note, by_id, outcomes)
            deferred: dict[datetime, list[Recipient]] = {}
            for o in outcomes.values():
                if o.status == "deferred" and o.deferred_until is not None:
                    deferred.setdefault(o.deferred_until, []).append(by_id[o.user_id])
            if deferred:
                await asyncio.gather(
                    *(self._after_quiet_hours(note, until, who) for until, who in deferred.items())
                )
            retry = [by_id[o.user_id] for o in outcomes.values() if o.status == "retry"]
            attempt += 1
            if retry and attempt >= (SMTP_RETRY.maximum_attempts or 1):
                last = next(o.error for o in outcomes.values() if o.status == "retry")
                await self._give_up(note, retry, last or "SMTP kept failing")
                return
            if retry:
                await workflow.sleep(_backoff(attempt), summary=f"SMTP retry {attempt}")
            recipients = retry

    async def _attempt(
        self, note: Notification, recipients: list[Recipient], *, on_time: bool
    ) -> list[MailOutcome] | None:
        """One `send_emails`; None when it ran out of attempts (then they are failed).
        `on_time`: the rung's first attempt, whose lateness the metric measures."""
        try:
            result = await workflow.execute_activity_method(
                EmailActivities.send_emails,
                SendEmails(
                    item_id=self._ref.item_id,
                    account_id=self._ref.account_id,
                    recipients=recipients,
                    event_key=note.event_key,
                    rung=note.rung,
                    tier=note.tier,
                    critical=note.critical,
                    at=workflow.now(),
                    planned_at=note.planned_at if on_time else None,
                ),
                start_to_close_timeout=BATCH_TIMEOUT,
                heartbeat_timeout=SEND_HEARTBEAT,
                retry_policy=SMTP_RETRY,
                summary=f"email {note.rung} → {len(recipients)} recipient(s)",
            )
        except ActivityError as error:  # the activity itself ran out of attempts
            await self._give_up(note, recipients, str(error.cause or error))
            return None
        return result.outcomes

    async def _after_quiet_hours(
        self, note: Notification, until: datetime, recipients: list[Recipient]
    ) -> None:
        # Quiet hours: a durable timer, so the deferred mails survive restarts.
        await workflow.sleep(
            max(until - workflow.now(), timedelta(0)),
            summary=f"quiet hours of {len(recipients)} recipient(s) until {until:%H:%M} UTC",
        )
        await self._deliver_batch(replace(note, planned_at=None), recipients)  # not late

    async def _record_unrecorded(
        self, note: Notification, by_id: dict[str, Recipient], outcomes: dict[str, MailOutcome]
    ) -> None:
        """What the activity could not record (Postgres failed after SMTP answered) is
        recorded now, retried until Postgres is back; a 5xx is announced."""
        failed: list[MailOutcome] = []
        for o in outcomes.values():
            if o.status == "sent" and not o.recorded:
                await db_step(
                    EmailActivities.record_sent,
                    self._outcome(
                        note, by_id[o.user_id], sent_at=o.sent_at, message_id=o.message_id
                    ),
                )
            elif o.status == "failed" and o.error is not None:
                failed.append(o)
        unrecorded = [by_id[o.user_id] for o in failed if not o.recorded]
        if unrecorded:
            await self._give_up(note, unrecorded, failed[0].error or "")
        for o in failed:
            if o.recorded:
                await self._announce_failure(note, by_id[o.user_id], o.error or "")

    async def _give_up(self, note: Notification, recipients: list[Recipient], error: str) -> None:
        """Out of attempts: every one of them not sent is `failed`, audited and announced."""
        marked = await db_step(
            EmailActivities.record_failures,
            RecordFailures(
                item_id=self._ref.item_id,
                account_id=self._ref.account_id,
                event_key=note.event_key,
                tier=note.tier,
                recipient_ids=[r.user_id for r in recipients],
                error=error,
            ),
        )
        by_id = {r.user_id: r for r in recipients}
        for user_id in marked:
            await self._announce_failure(note, by_id[user_id], error)

    async def _announce_failure(self, note: Notification, recipient: Recipient, error: str) -> None:
        await self._publish(
            "delivery.failed",
            f"{self._ref.item_id}:{note.event_key}:{recipient.user_id}:failed",
            {"recipient": recipient.email, "error": error},
        )

    async def _publish(self, kind: str, dedup_key: str, data: dict[str, object]) -> None:
        await db_step(
            PushActivities.publish_event,
            PublishEvent(
                account_id=self._ref.account_id,
                item_id=self._ref.item_id,
                kind=kind,
                dedup_key=dedup_key,
                data=data,
            ),
        )

    async def _deliver(self, note: Notification, recipient: Recipient) -> None:
        while True:
            async with self._slots:
                try:
                    result = await workflow.execute_activity_method(
                        EmailActivities.send_email,
                        SendEmail(
                            item_id=self._ref.item_id,
                            account_id=self._ref.account_id,
                            recipient=recipient,
                            event_key=note.event_key,
                            rung=note.rung,
                            tier=note.tier,
                            critical=note.critical,
                            at=workflow.now(),
                        ),
                        start_to_close_timeout=timedelta(seconds=60),
                        # It beats every second: a dead worker's send is retried in seconds.
                        heartbeat_timeout=SEND_HEARTBEAT,
                        retry_policy=SMTP_RETRY,
                        summary=f"email {note.rung} → {recipient.email}",
                    )
                except ActivityError as error:
                    if workflow.patched(DELIVERY_TRUTH):  # retries exhausted: on the record
                        await db_step(
                            EmailActivities.record_delivery_failure,
                            self._outcome(note, recipient, error=str(error.cause or error)),
                        )
                    await self._announce_failure(note, recipient, str(error.cause or error))
                    return
            if result.status == "sent" and not result.recorded:
                # SMTP accepted it but Postgres failed before the record: record it now,
                # retrying until Postgres is back. It is never sent again.
                await db_step(
                    EmailActivities.record_sent,
                    self._outcome(
                        note, recipient, sent_at=result.sent_at, message_id=result.message_id
                    ),
                )
            if result.status != "deferred" or result.deferred_until is None:
                return
            # Quiet hours: a durable timer, so the deferred mail survives restarts.
            await workflow.sleep(
                max(result.deferred_until - workflow.now(), timedelta(0)),
                summary=f"quiet hours of {recipient.email} until {result.deferred_until:%H:%M} UTC",
            )

    def _outcome(self, note: Notification, recipient: Recipient, **what: Any) -> DeliveryOutcome:
        return DeliveryOutcome(
            item_id=self._ref.item_id,
            account_id=self._ref.account_id,
            recipient_id=recipient.user_id,
            event_key=note.event_key,
            tier=note.tier,
            **what,
        )

    def hook(self, note: Notification) -> None:
        """The rung's webhooks: one delivery row per matching endpoint, then one retried
        `send_webhook` per endpoint, concurrently, in tasks of their own: a slow or failing
        receiver never delays the mails, nor another receiver."""
        self._sends.append(asyncio.create_task(self._hook_all(note)))

    async def _hook_all(self, note: Notification) -> None:
        ref = self._ref
        endpoints = await db_step(
            WebhookActivities.plan_webhooks,
            PlanWebhooks(
                item_id=ref.item_id,
                account_id=ref.account_id,
                event_key=note.event_key,
                rung=note.rung,
                tier=note.tier,
            ),
        )
        at = workflow.now()  # the event's timestamp: the same body on every retry
        await asyncio.gather(*(self._hook_one(note, endpoint, at) for endpoint in endpoints))

    async def _hook_one(self, note: Notification, endpoint_id: str, at: datetime) -> None:
        ref = self._ref
        try:
            await workflow.execute_activity_method(
                WebhookActivities.send_webhook,
                SendWebhook(
                    item_id=ref.item_id,
                    account_id=ref.account_id,
                    endpoint_id=endpoint_id,
                    event_key=note.event_key,
                    rung=note.rung,
                    tier=note.tier,
                    at=at,
                ),
                start_to_close_timeout=WEBHOOK_TIMEOUT,
                retry_policy=WEBHOOK_RETRY,
                summary=f"webhook {note.rung} → endpoint {endpoint_id}",
            )
        except ActivityError as error:  # out of attempts: on the record as failed
            await db_step(
                WebhookActivities.record_webhook_failure,
                WebhookFailure(
                    item_id=ref.item_id,
                    account_id=ref.account_id,
                    endpoint_id=endpoint_id,
                    event_key=note.event_key,
                    error=str(error.cause or error),
                    tier=note.tier,
                ),
            )

    async def drain(self) -> None:
        """Wait for every send in flight (before continue-as-new)."""
        await asyncio.gather(*self._sends)
        self._sends.clear()

    def cancel_pending(self) -> None:
        """The item ended: deferred sends would only be suppressed, so stop waiting."""
        for send in self._sends:
            if not send.done():
                send.cancel()


def _backoff(attempt: int) -> timedelta:
    """SMTP_RETRY's schedule, for the recipients a batch is sending again."""
    seconds = SMTP_RETRY.initial_interval.total_seconds() * SMTP_RETRY.backoff_coefficient ** (
        attempt - 1
    )
    return min(timedelta(seconds=seconds), SMTP_RETRY.maximum_interval or timedelta(minutes=5))
