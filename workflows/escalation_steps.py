"""The notification fan-out of one rung, run from `EscalationWorkflow` (workflow code: only
`workflow.*` time and activities here; imported passed-through with the message types).

A rung's stamp, recipients, undeliverable audit, delivery rows and push are one
`fire_rung` transaction (see `EscalationWorkflow._fire`); `Notifier.send` then runs one
`send_email` per recipient, concurrently with a bound. A handoff's fan-out (and a history from
before that patch) goes the older way: resolve recipients -> audit `escalation_undeliverable`
if nobody -> publish the push event -> the same sends. A recipient in quiet hours gets a
durable timer until the window ends, then another attempt; one recipient's failure never
blocks the others.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

from activities.email import EmailActivities
from activities.items import ItemActivities
from activities.push import PushActivities
from activities.recipients import RecipientActivities
from workflows.types import (
    DeliveryOutcome,
    ItemRef,
    ItemSnapshot,
    PublishEvent,
    Recipient,
    RecordAudit,
    ResolveRecipients,
    SendEmail,
)

SEND_CONCURRENCY = 8
SEND_HEARTBEAT = timedelta(seconds=10)
DELIVERY_TRUTH = "delivery-failure-recorded"  # workflow.patched: earlier histories did not
DB_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=30)
)

ActivitySelf = TypeVar("ActivitySelf")
Arg = TypeVar("Arg")
Result = TypeVar("Result")


async def db_step(method: Callable[[ActivitySelf, Arg], Awaitable[Result]], arg: Arg) -> Result:
    """A short DB-only activity, run locally (no server round trip per step)."""
    return await workflow.execute_local_activity_method(
        method, arg, start_to_close_timeout=timedelta(seconds=15), retry_policy=DB_RETRY
    )


SMTP_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=2),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=5),
    maximum_attempts=20,
    non_retryable_error_types=["PermanentDeliveryError"],
)


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

    def send(self, note: Notification, recipients: list[Recipient]) -> None:
        """One concurrent `send_email` per recipient (bounded), if the rung emails."""
        if "email" in note.channels:
            for recipient in recipients:
                self._sends.append(asyncio.create_task(self._deliver(note, recipient)))

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
                    await self._publish(
                        "delivery.failed",
                        f"{self._ref.item_id}:{note.event_key}:{recipient.user_id}:failed",
                        {"recipient": recipient.email, "error": str(error.cause or error)},
                    )
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

    async def drain(self) -> None:
        """Wait for every send in flight (before continue-as-new)."""
        await asyncio.gather(*self._sends)
        self._sends.clear()

    def cancel_pending(self) -> None:
        """The item ended: deferred sends would only be suppressed, so stop waiting."""
        for send in self._sends:
            if not send.done():
                send.cancel()
