"""`Notifier`: what happens to one item's notifications after they fire (workflow code:
only `workflow.*` time and activities here; imported passed-through with the message types).

Mails. A rung's first attempt goes out with its fire (`fire_and_send`); bigger fan-outs, and
every later attempt, are `send_emails` activities of up to `BATCH` recipients. Each
recipient's outcome is its own: `sent`, `suppressed` and `failed` are done; `retry` (a
transient error) is sent again, to those recipients only, after a durable backoff; `later`
(not tried: its batch ran out of time) is sent again at once; `deferred` (quiet hours)
sleeps on a durable timer of its own until the window ends, without holding up anyone
else's retry. Outcomes an activity could not record are recorded by `record_outcomes`,
retried until Postgres answers. Out of attempts, the rest are `failed` (`record_failures`).

Webhooks. A rung that names the channel gets a delivery row per matching endpoint
(`plan_webhooks`) and one `send_webhook` per endpoint, retried by Temporal. A transition's
webhooks (`item.claimed@7`, planned by the transition itself) are posted as the workflow
reads them back (`announce`); the item's end does not cancel them (`settle` waits for them).

Every send runs in a task of its own, so one slow recipient, receiver or quiet window never
delays another. What is still to send when the workflow continues as new is carried into
the next run (`carry`/`resume`), not drained: a carried mail waits for its backoff or quiet
hours there, a carried webhook is posted again (same webhook-id).
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Coroutine
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.exceptions import ActivityError

from activities.email import EmailActivities
from activities.webhook import WebhookActivities
from domain import item_hooks
from workflows.retries import (
    BATCH,
    BATCH_TIMEOUT,
    SEND_HEARTBEAT,
    SMTP_RETRY,
    WEBHOOK_RETRY,
    WEBHOOK_TIMEOUT,
    db_step,
    smtp_backoff,
)
from workflows.sign_in import send as send_account_mail
from workflows.types import (
    ItemHook,
    ItemRef,
    MailOutcome,
    Notification,
    PendingSend,
    Recipient,
    RecordFailures,
    RecordOutcomes,
    RungFired,
    SendEmails,
)
from workflows.webhook_types import EndpointNews, PlanWebhooks, SendWebhook, WebhookFailure

WEBHOOK_QUEUE_SUFFIX = "-webhooks"  # webhook POSTs run on a task queue of their own


class Notifier:
    def __init__(self, ref: ItemRef) -> None:
        self._ref = ref
        self._tasks: list[asyncio.Task[None]] = []
        self._pending: dict[int, PendingSend] = {}  # what each live send task still owes
        self._ids = itertools.count()
        self._busy = 0  # mail activities in flight (continue-as-new waits for them)
        self._announced: set[tuple[str, str]] = set()  # lifecycle (endpoint, event) posted
        self._lifecycle: list[asyncio.Task[None]] = []

    # ---- entry points ---------------------------------------------------------------------
    def fired(self, note: Notification, fired: RungFired) -> None:
        """A rung fired: follow up on the mails `fire_and_send` sent (or send them, for a
        fan-out too big for it), then its webhooks."""
        if "email" in note.channels and fired.recipients:
            if fired.outcomes is not None:
                self._spawn(note, fired.recipients, first=fired.outcomes)
            else:
                self._send(note, fired.recipients)
        if "webhook" in note.channels:
            self._start(self._hook_all(note))

    def announce(self, hooks: list[ItemHook]) -> None:
        """Post the transitions' webhooks not posted yet (read back with the item)."""
        for hook in hooks:
            self._lifecycle_hook(hook.event_key, hook.endpoint_id, hook.at)

    def resume(self, carried: list[PendingSend]) -> None:
        """The sends the run before this one carried over."""
        for send in carried:
            if send.endpoint_id is not None and send.at is not None:
                if item_hooks.is_lifecycle(send.note.event_key):
                    self._lifecycle_hook(send.note.event_key, send.endpoint_id, send.at)
                    continue
                self._start(self._hook_one(send.note, send.endpoint_id, send.at))
            else:
                self._spawn(
                    send.note, send.recipients, wait_until=send.not_before, attempt=send.attempt
                )

    async def carry(self) -> list[PendingSend]:
        """Before continue-as-new: once no mail activity is in flight (never mid-send), what
        every live send still owes."""
        await workflow.wait_condition(lambda: self._busy == 0)
        return [self._pending[key] for key in sorted(self._pending)]

    def cancel_pending(self) -> None:
        """The item ended: its waiting rows are already `suppressed` (by the transition that
        ended it), so stop waiting on their timers."""
        for task in self._tasks:
            if not task.done():
                task.cancel()

    async def settle(self) -> None:
        """The item ended: wait until every transition's webhook is sent or failed."""
        await asyncio.gather(*self._lifecycle)

    # ---- mails ----------------------------------------------------------------------------
    def _send(self, note: Notification, recipients: list[Recipient]) -> None:
        for n in range(0, len(recipients), BATCH):
            self._spawn(note, recipients[n : n + BATCH])

    def _spawn(
        self,
        note: Notification,
        recipients: list[Recipient],
        *,
        first: list[MailOutcome] | None = None,
        wait_until: datetime | None = None,
        attempt: int = 0,
        why: str = "carried retry",
    ) -> None:
        if recipients:
            key = next(self._ids)
            self._pending[key] = PendingSend(
                note=note, recipients=recipients, not_before=wait_until, attempt=attempt
            )
            self._start(self._deliver(key, note, recipients, first, (wait_until, why), attempt))

    def _start(self, work: Coroutine[Any, Any, None]) -> None:
        self._tasks.append(asyncio.create_task(work))

    async def _deliver(
        self,
        key: int,
        note: Notification,
        recipients: list[Recipient],
        first: list[MailOutcome] | None,
        wait: tuple[datetime | None, str],
        attempt: int,
    ) -> None:
        """Send until every recipient is sent, suppressed, failed or handed to a task of its
        own (quiet hours, not tried in time). `first`: an attempt already made."""
        try:
            until, why = wait
            if until is not None:
                await workflow.sleep(
                    max(until - workflow.now(), timedelta(0)),
                    summary=f"{why}: mail {note.rung} to {len(recipients)} recipient(s)"
                    f" at {until:%H:%M} UTC",
                )
            while recipients:
                self._busy += 1  # an attempt and its follow-up are never cut by a carry
                try:
                    if first is None:
                        outcomes = await self._attempt(note, recipients, attempt)
                    else:
                        outcomes, first = first, None
                    if outcomes is None:
                        return
                    attempt += 1
                    recipients = await self._follow_up(note, recipients, outcomes, attempt)
                finally:
                    self._busy -= 1
                if recipients:
                    wake = workflow.now() + smtp_backoff(attempt)
                    self._pending[key] = PendingSend(
                        note=note, recipients=recipients, not_before=wake, attempt=attempt
                    )
                    await workflow.sleep(smtp_backoff(attempt), summary=f"SMTP retry {attempt}")
        finally:
            self._pending.pop(key, None)

    async def _follow_up(
        self,
        note: Notification,
        recipients: list[Recipient],
        outcomes: list[MailOutcome],
        attempt: int,
    ) -> list[Recipient]:
        """Record what the attempt could not, hand quiet hours and untried mails to tasks
        of their own, give up on the retries out of attempts; returns whom to retry."""
        by_id = {r.user_id: r for r in recipients}
        unrecorded = [o for o in outcomes if not o.recorded]
        if unrecorded:
            batch = self._batch(note, recipients, planned=False)
            await db_step(
                EmailActivities.record_outcomes, RecordOutcomes(batch=batch, outcomes=unrecorded)
            )
        deferred: dict[datetime, list[Recipient]] = {}
        for o in outcomes:
            if o.status == "deferred" and o.deferred_until is not None:
                deferred.setdefault(o.deferred_until, []).append(by_id[o.user_id])
        quiet = replace(note, planned_at=None)  # a mail after quiet hours is not late
        for until, who in sorted(deferred.items()):
            self._spawn(quiet, who, wait_until=until, why="quiet hours")
        self._spawn(
            note, [by_id[o.user_id] for o in outcomes if o.status == "later"], attempt=attempt
        )
        retry = [by_id[o.user_id] for o in outcomes if o.status == "retry"]
        if retry and attempt >= (SMTP_RETRY.maximum_attempts or 1):
            last = next(o.error for o in outcomes if o.status == "retry")
            await self._give_up(note, retry, last or "SMTP kept failing")
            return []
        return retry

    async def _attempt(
        self, note: Notification, recipients: list[Recipient], attempt: int
    ) -> list[MailOutcome] | None:
        """One `send_emails`; None when the activity itself ran out of attempts (then they
        are failed)."""
        try:
            result = await workflow.execute_activity_method(
                EmailActivities.send_emails,
                self._batch(note, recipients, planned=attempt == 0),
                start_to_close_timeout=BATCH_TIMEOUT,
                heartbeat_timeout=SEND_HEARTBEAT,
                retry_policy=SMTP_RETRY,
                summary=f"email {note.rung} → {len(recipients)} recipient(s)",
            )
        except ActivityError as error:
            await self._give_up(note, recipients, str(error.cause or error))
            return None
        return result.outcomes

    def _batch(
        self, note: Notification, recipients: list[Recipient], *, planned: bool
    ) -> SendEmails:
        return SendEmails(
            item_id=self._ref.item_id,
            account_id=self._ref.account_id,
            recipients=recipients,
            event_key=note.event_key,
            rung=note.rung,
            tier=note.tier,
            critical=note.critical,
            at=workflow.now(),
            # The first attempt's lateness is the stack's; a retry's is the server's.
            planned_at=note.planned_at if planned else None,
        )

    async def _give_up(self, note: Notification, recipients: list[Recipient], error: str) -> None:
        """Out of attempts: each still pending is `failed`, audited and (while the item is
        open) announced, by the activity."""
        await db_step(
            EmailActivities.record_failures,
            RecordFailures(
                item_id=self._ref.item_id,
                account_id=self._ref.account_id,
                event_key=note.event_key,
                tier=note.tier,
                recipient_ids=[r.user_id for r in recipients],
                error=error,
                emails={r.user_id: r.email for r in recipients},
            ),
        )

    # ---- webhooks -------------------------------------------------------------------------
    async def _hook_all(self, note: Notification) -> None:
        self._busy += 1  # until each endpoint's send is a task that a carry sees
        try:
            endpoints = await self._plan_webhooks(note)
            at = workflow.now()  # the event's timestamp: the same body on every retry
            for endpoint in endpoints:
                self._start(self._hook_one(note, endpoint, at))
        finally:
            self._busy -= 1

    async def _plan_webhooks(self, note: Notification) -> list[str]:
        ref = self._ref
        return await db_step(
            WebhookActivities.plan_webhooks,
            PlanWebhooks(
                item_id=ref.item_id,
                account_id=ref.account_id,
                event_key=note.event_key,
                rung=note.rung,
                tier=note.tier,
            ),
        )

    def _lifecycle_hook(self, event_key: str, endpoint_id: str, at: datetime) -> None:
        if (endpoint_id, event_key) in self._announced:
            return
        self._announced.add((endpoint_id, event_key))
        action = item_hooks.event_name(event_key).removeprefix("item.")
        note = Notification(
            event_key=event_key,
            rung=action,
            tier=0,
            chain=[],
            channels=["webhook"],
            critical=False,
            push_kind="",
        )
        self._lifecycle.append(asyncio.create_task(self._hook_one(note, endpoint_id, at)))

    async def _hook_one(self, note: Notification, endpoint_id: str, at: datetime) -> None:
        ref = self._ref
        key = next(self._ids)
        self._pending[key] = PendingSend(note=note, endpoint_id=endpoint_id, at=at)
        try:
            request = SendWebhook(
                item_id=ref.item_id,
                account_id=ref.account_id,
                endpoint_id=endpoint_id,
                event_key=note.event_key,
                rung=note.rung,
                tier=note.tier,
                at=at,
            )
            await post_webhook(request, f"webhook {note.rung} → endpoint {endpoint_id}")
        finally:
            self._pending.pop(key, None)


async def post_webhook(request: SendWebhook, summary: str) -> None:
    """One endpoint's delivery, retried by Temporal on the webhooks queue; out of attempts,
    it is `failed` on the record."""
    try:
        outcome = await workflow.execute_activity_method(
            WebhookActivities.send_webhook,
            request,
            task_queue=workflow.info().task_queue + WEBHOOK_QUEUE_SUFFIX,
            start_to_close_timeout=WEBHOOK_TIMEOUT,
            retry_policy=WEBHOOK_RETRY,
            summary=summary,
        )
        if outcome.endpoint_disabled or outcome.endpoint_recovered:
            kind = "webhook.disabled" if outcome.endpoint_disabled else "webhook.recovered"
            news = EndpointNews(
                account_id=request.account_id, endpoint_id=request.endpoint_id, kind=kind
            )
            mails = await db_step(WebhookActivities.endpoint_news, news)
            await asyncio.gather(*(send_account_mail(m) for m in mails))  # to the account's admins
    except ActivityError as error:  # out of attempts: on the record as failed
        await db_step(
            WebhookActivities.record_webhook_failure,
            WebhookFailure(
                item_id=request.item_id,
                account_id=request.account_id,
                endpoint_id=request.endpoint_id,
                event_key=request.event_key,
                error=str(error.cause or error),
                tier=request.tier,
            ),
        )
