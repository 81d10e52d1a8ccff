"""`plan_webhooks`, `send_webhook`, `record_webhook_failure`: a rung's webhooks, each
endpoint's delivery sent at most once, none after a claim.

A delivery row per (endpoint, item, event_key, 'webhook') is the dedup claim and the
record, as for email. `send_webhook` works in two transactions, as `send_emails` does:

1. The attempt, committed: the item FOR SHARE, the row FOR UPDATE. A final row (`sent`,
   `failed`, `suppressed`) is returned as it is; a closed item makes it `suppressed`, a
   disabled or deleted endpoint `failed`, with the reason. Otherwise it becomes `sending` with
   attempts + 1, so even a worker that dies mid-POST leaves the attempt on the record.
2. The POST, under the row's lock and the item's send guard (`domain.send_guard`), held
   across it: a claim waits for it, so the request goes out before the claim commits or not
   at all, while the next rung's stamp and mails never wait for a slow receiver. Its outcome is
   recorded and committed *before* a retryable error is raised, so every attempt survives.

`webhook-id` is the delivery row's id, the same on every retry, so receivers deduplicate
a resend whose first answer was lost (Standard Webhooks' at-least-once contract).
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import httpx
from sqlalchemy import Row, func, or_, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

import metrics
from activities import webhook_http as http
from activities import webhook_rows as rows
from config import Settings
from db import tenant_session
from domain import audit, destinations, item_hooks, push, webhooks
from domain.clock import Clock, SystemClock
from domain.errors import Invalid
from domain.models import User
from workflows.types import AccountMail
from workflows.webhook_types import (
    EndpointNews,
    PlanWebhooks,
    SendWebhook,
    WebhookFailure,
    WebhookOutcome,
)

DELIVERY, ENDPOINT, ITEM, CHANNEL = rows.DELIVERY, rows.ENDPOINT, rows.ITEM, rows.CHANNEL
FINAL = webhooks.FINAL
UNKNOWN_OUTCOME = (
    "the previous attempt's outcome is unknown (its worker stopped mid-send); sent again "
    "with the same webhook-id"
)


class WebhookActivities:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        *,
        base_url: str,
        timeout_seconds: float = 5.0,
        disable_after: int = 10,
        disable_window: timedelta = timedelta(days=1),
        clock: Clock | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        allow_private: bool = False,
    ) -> None:
        self._sessionmaker = sessionmaker
        self._base_url = base_url.rstrip("/")
        self._timeout = timeout_seconds
        self._disable_after = disable_after
        self._disable_window = disable_window
        self._clock = clock or SystemClock()
        self._transport = transport
        self._allow_private = allow_private

    @classmethod
    def from_settings(
        cls, sessionmaker: async_sessionmaker[AsyncSession], settings: Settings
    ) -> WebhookActivities:
        return cls(
            sessionmaker,
            base_url=settings.base_url,
            timeout_seconds=settings.webhook_timeout_seconds,
            disable_after=settings.webhook_disable_after_failures,
            disable_window=timedelta(seconds=settings.webhook_disable_after_seconds),
            allow_private=settings.webhooks_reach_private,
        )

    @activity.defn
    async def plan_webhooks(self, request: PlanWebhooks) -> list[str]:
        """Side effect: a `pending` delivery row for every enabled, undeleted endpoint of the
        account whose filter matches the event key (none if the item is no longer open).
        Idempotency key: (endpoint, item, event_key, 'webhook'), ON CONFLICT DO NOTHING.
        Returns, sorted, the endpoints whose row for this event is not yet final: the ones
        the workflow still sends to."""
        account_id, item_id = uuid.UUID(request.account_id), uuid.UUID(request.item_id)
        async with tenant_session(self._sessionmaker, account_id) as session:
            state = await session.scalar(
                select(ITEM.c.state)
                .where(ITEM.c.id == item_id, ITEM.c.account_id == account_id)
                .with_for_update(read=True)
            )
            if state != "open":
                return []
            await item_hooks.plan_event(session, account_id, item_id, request.event_key)
            live = await session.scalars(
                select(DELIVERY.c.endpoint_id).where(
                    *rows.row_of(request, account_id), DELIVERY.c.status.not_in(FINAL)
                )
            )
            return sorted(str(endpoint_id) for endpoint_id in live)

    @activity.defn
    async def send_webhook(self, request: SendWebhook) -> WebhookOutcome:
        """Side effect: one signed HTTP POST to one endpoint. Idempotency key: the delivery
        row (endpoint, item, event_key, 'webhook'): a final row is returned as it is, so a
        retry after success sends nothing. 2xx is `sent`; 410 and other 4xx are `failed`
        (410 also disables the endpoint), returned, never raised. 5xx, 408, 429, timeouts
        and refused connections record the attempt and raise a retryable `ApplicationError`
        (with 429/503's Retry-After as the next delay), unless the endpoint's consecutive
        failures reach `disable_after`: then it is disabled and the row `failed`."""
        account_id = uuid.UUID(request.account_id)
        async with tenant_session(self._sessionmaker, account_id) as session:
            settled = await self._attempt(session, request, account_id)
        if settled is not None:
            return settled
        async with tenant_session(self._sessionmaker, account_id) as session:
            outcome, retry = await self._deliver(session, request, account_id)
        _measure(outcome)  # committed
        if retry is not None:  # committed above: the attempt is on the record
            raise ApplicationError(
                f"webhook to endpoint {request.endpoint_id} failed, will retry: {outcome.error}",
                type="WebhookTransientError",
                next_retry_delay=retry.retry_after,
            )
        return outcome

    @activity.defn
    async def record_webhook_failure(self, request: WebhookFailure) -> None:
        """Side effect: the delivery `failed` with the error, once Temporal's retries ran
        out, plus its `delivery_failed` audit row. Idempotency: a final row is left as it
        is, and the audit key is `<delivery>:failed`."""
        account_id = uuid.UUID(request.account_id)
        async with tenant_session(self._sessionmaker, account_id) as session:
            row = await rows.locked_row(session, request, account_id)
            if row is None or row.status in FINAL:
                return
            await rows.set_row(session, row, status="failed", last_error=request.error)
            name = await session.scalar(
                select(ENDPOINT.c.name).where(ENDPOINT.c.id == row.endpoint_id)
            )
            await rows.audit_failure(session, row, request.tier, name or "", request.error)
        metrics.delivered(CHANNEL, "failed")

    @activity.defn
    async def endpoint_news(self, request: EndpointNews) -> list[AccountMail]:
        """Side effect: none (a read). One account mail of `request.kind` per active admin
        and owner of the account, naming the endpoint and why it was switched off; the
        workflow sends them (`workflows.sign_in.send`), each a delivery row of its own."""
        account_id = uuid.UUID(request.account_id)
        async with tenant_session(self._sessionmaker, account_id) as session:
            endpoint = (
                await session.execute(
                    select(ENDPOINT.c.name, ENDPOINT.c.disabled_reason).where(
                        ENDPOINT.c.id == uuid.UUID(request.endpoint_id),
                        ENDPOINT.c.account_id == account_id,
                    )
                )
            ).one_or_none()
            if endpoint is None:
                return []
            admins = await session.scalars(
                select(User.id)
                .where(
                    User.account_id == account_id,
                    User.role.in_(("admin", "owner")),
                    User.is_active,
                    User.deleted_at.is_(None),
                )
                .order_by(User.id)
            )
            now = self._clock.now()
            return [
                AccountMail(
                    delivery_id=str(uuid.uuid4()),  # fixed once in the workflow's history
                    account_id=request.account_id,
                    user_id=str(admin),
                    requested_at=now,
                    kind=request.kind,
                    endpoint=endpoint.name,
                    reason=endpoint.disabled_reason,
                )
                for admin in admins
            ]

    async def _attempt(
        self, session: AsyncSession, request: SendWebhook, account_id: uuid.UUID
    ) -> WebhookOutcome | None:
        """Step 1: the outcome if there is nothing to send, else None with `sending` and
        attempts + 1 on the row (committed by the caller)."""
        item = await rows.item_row(session, request, account_id)
        endpoint = await rows.endpoint_of(session, request, account_id)
        await session.execute(  # normally `plan_webhooks` made it
            insert(DELIVERY).values(**rows.key(request, account_id)).on_conflict_do_nothing()
        )
        row = await rows.locked_row(session, request, account_id)
        assert row is not None  # inserted above if it was missing
        if row.status in FINAL:
            return rows.final(row)
        why = rows.not_now(item, endpoint, request.event_key)
        if why is not None:
            stopped = await rows.stop(session, row, why)
            metrics.delivered(CHANNEL, stopped.status)
            return stopped
        note = UNKNOWN_OUTCOME if row.status == "sending" else None
        await rows.set_row(
            session, row, status="sending", attempts=row.attempts + 1, last_error=note
        )
        return None

    async def _deliver(
        self, session: AsyncSession, request: SendWebhook, account_id: uuid.UUID
    ) -> tuple[WebhookOutcome, http.Answer | None]:
        """Step 2: the POST under the send guard and the row's lock, and its record. The
        answer is returned too when it is to be retried."""
        item = await rows.item_row(session, request, account_id, guarded=True)
        row = await rows.locked_row(session, request, account_id)
        assert row is not None  # step 1 committed it
        if row.status in FINAL:  # a concurrent attempt finished it meanwhile
            return rows.final(row), None
        endpoint = await rows.endpoint_of(session, request, account_id)
        why = rows.not_now(item, endpoint, request.event_key)
        if why is not None:  # changed between the steps: step 1's attempt never went out
            return await rows.stop(session, row, why, attempts=max(row.attempts - 1, 0)), None
        answer = await self._post(request, item, endpoint, row.id, await rows.people(session, row))
        code = answer.code
        if answer.ok:
            note = row.last_error if row.last_error == UNKNOWN_OUTCOME else None  # sent twice
            sent_at = self._clock.now()
            await rows.set_row(
                session, row, status="sent", response_code=code, sent_at=sent_at, last_error=note
            )
            await session.execute(
                update(ENDPOINT)
                .where(
                    ENDPOINT.c.id == endpoint.id,
                    or_(
                        ENDPOINT.c.consecutive_failures != 0,
                        ENDPOINT.c.failing_since.is_not(None),
                    ),
                )
                .values(consecutive_failures=0, failing_since=None)
            )
            recovered = await session.scalar(  # of concurrent first successes, one tells
                update(ENDPOINT)
                .where(ENDPOINT.c.id == endpoint.id, ENDPOINT.c.recovering)
                .values(recovering=False)
                .returning(ENDPOINT.c.id)
            )
            outcome = WebhookOutcome(
                status="sent",
                response_code=code,
                sent_at=sent_at,
                attempts=row.attempts,
                endpoint_recovered=recovered is not None,
            )
            return outcome, None
        error = answer.error
        now = self._clock.now()
        failures, since = (
            await session.execute(
                update(ENDPOINT)
                .where(ENDPOINT.c.id == endpoint.id)
                .values(
                    consecutive_failures=ENDPOINT.c.consecutive_failures + 1,
                    failing_since=func.coalesce(ENDPOINT.c.failing_since, now),
                )
                .returning(ENDPOINT.c.consecutive_failures, ENDPOINT.c.failing_since)
            )
        ).one()
        disable = None
        if code == 410:  # the receiver says it is gone for good
            disable = "410 Gone"
        elif failures >= self._disable_after and now - since >= self._disable_window:
            disable = f"{failures} failures in a row, none sent since {since:%Y-%m-%d %H:%M} UTC"
        disabled = disable is not None and await self._disable(
            session, request, row, endpoint, disable
        )
        if answer.transient and disable is None:
            await rows.set_row(session, row, status="pending", response_code=code, last_error=error)
            retry = WebhookOutcome(status="pending", response_code=code, error=error)
            return retry, answer
        await rows.set_row(session, row, status="failed", response_code=code, last_error=error)
        await rows.audit_failure(session, row, request.tier, endpoint.name, error)
        if disabled:  # last: the push's ordering lock is held until commit
            await push.publish(
                session,
                account_id=row.account_id,
                item=None,
                kind="webhook.disabled",
                dedup_key=f"{row.id}:endpoint_disabled",
                data={
                    "endpoint_id": str(endpoint.id),
                    "endpoint_name": endpoint.name,
                    "reason": disable or "",
                    "item_id": str(row.item_id),
                },
            )
        outcome = WebhookOutcome(
            status="failed",
            response_code=code,
            error=error,
            attempts=row.attempts,
            endpoint_disabled=disabled,
        )
        return outcome, None

    async def _post(
        self,
        request: SendWebhook,
        item: Any,
        endpoint: Any,
        msg_id: uuid.UUID,
        people: http.People,
    ) -> http.Answer:
        """The signed POST of the endpoint's format, to the endpoint's URL; not sent at all
        to a host that is not public when private ones are not allowed (checked now: DNS
        may have changed since the endpoint was saved)."""
        pinned = None
        if not self._allow_private:
            try:
                pinned = await destinations.pin(endpoint.url)
            except Invalid as refused:
                activity.logger.warning("webhook.refused", extra={"reason": refused.message})
                reason = "not sent: the destination is not a public address"
                return http.Answer(code=None, error=reason, refused=True)
        hook = http.HookItem(
            id=str(item.id),
            kind=item.kind,
            item_type=item.item_type,
            title=item.title,
            due_at=item.due_at,
            zone=item.tz,
            assignee_id=str(item.assignee_id) if item.assignee_id else None,
            assignee_name=item.assignee_name,
            state=item.state,
            people=people,
        )
        content = http.body(endpoint.format, request, hook, f"{self._base_url}/items/{item.id}")
        now = self._clock.now()
        secrets = webhooks.signing_secrets(endpoint, now)
        headers = http.headers(str(msg_id), now, content, secrets)
        return await http.post(
            endpoint.url,
            content,
            headers,
            within=self._timeout,
            transport=self._transport,
            pinned=pinned,
        )

    async def _disable(
        self,
        session: AsyncSession,
        request: SendWebhook,
        row: Row[Any],
        endpoint: Row[Any],
        reason: str,
    ) -> bool:
        """Disable the endpoint with `reason`, audited against this delivery's item; False
        if it was disabled already (by a concurrent send or an admin)."""
        changed = await session.scalar(
            update(ENDPOINT)
            .where(ENDPOINT.c.id == endpoint.id, ENDPOINT.c.enabled)
            .values(enabled=False, disabled_at=self._clock.now(), disabled_reason=reason)
            .returning(ENDPOINT.c.id)
        )
        if changed is None:
            return False
        await audit.record(
            session,
            account_id=row.account_id,
            item_id=row.item_id,
            action="webhook_endpoint_disabled",
            tier=request.tier,
            key=f"{row.id}:endpoint_disabled",
            data={
                "endpoint_id": str(endpoint.id),
                "endpoint_name": endpoint.name,
                "reason": reason,
            },
        )
        activity.logger.warning(
            "webhook.endpoint_disabled", extra={"endpoint_id": str(endpoint.id), "reason": reason}
        )
        return True


def _measure(outcome: WebhookOutcome) -> None:
    """An attempt's metrics (step 2's: step 1 counts what it stops itself)."""
    metrics.delivered(CHANNEL, outcome.status)
    if outcome.endpoint_disabled:
        reason = "gone" if outcome.response_code == 410 else "failing"
        metrics.WEBHOOK_ENDPOINTS_DISABLED.labels(reason=reason).inc()
