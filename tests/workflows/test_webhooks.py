"""A rung's webhooks through the real workflow and worker: Temporal retries a 5xx, a 410
disables the endpoint for every later rung, nothing is posted after a claim, and a slow
receiver never delays the mails. Against a real HTTP receiver that verifies every
Standard Webhooks signature."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from temporalio.testing import WorkflowEnvironment

from config import Settings
from db import tenant_session
from domain import webhooks
from domain.clock import utcnow
from domain.demo import rung
from domain.models import AuditEvent, Delivery, PushEvent, WebhookEndpoint
from mailsink import MailSink
from tests.support.tenants import Tenant
from tests.support.webhook_receiver import WebhookReceiver
from tests.workflows.conftest import Runner
from worker import build_worker


def hooked(offset: dict[str, int], recipients: list[str], event_key: str) -> dict[str, Any]:
    return {
        **rung(offset, recipients, event_key),
        "channels": ["email", "webhook"],
    }


RUNGS = {
    "remind": hooked({"business_days": 1}, ["assignee"], "task.reminder"),
    "escalate_1": hooked({"business_days": 1}, ["assignee_manager"], "task.escalated"),
    "escalate_2": None,
}


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as running:
        yield running


async def _endpoint(
    runner: Runner,
    tenant: Tenant,
    receiver: WebhookReceiver,
    rungs: dict[str, Any] | None = None,
) -> uuid.UUID:
    await tenant.around_the_clock(rungs or RUNGS)
    async with tenant_session(runner.app, tenant.account_id) as session:
        made = await webhooks.create_endpoint(
            session,
            tenant.account_id,
            actor_id=tenant.user("ada"),
            values={"name": "PSA", "url": receiver.url},
            allow_private=True,  # the receiver is on 127.0.0.1
        )
    receiver.secrets = [made.secret]
    return made.id


async def _hooks(runner: Runner, tenant: Tenant, item_id: uuid.UUID) -> list[Delivery]:
    async with tenant_session(runner.app, tenant.account_id) as session:
        rows = await session.scalars(
            select(Delivery)
            .where(Delivery.item_id == item_id, Delivery.channel == "webhook")
            .order_by(Delivery.created_at)
        )
        return list(rows)


def _sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def _until(check: Any, within: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, "never happened"
        await asyncio.sleep(0.1)


async def test_a_5xx_is_retried_by_temporal_until_the_receiver_takes_it(
    runner: Runner, tenant: Tenant, receiver: WebhookReceiver
) -> None:
    await _endpoint(runner, tenant, receiver)
    receiver.answers = [503, 500]
    labels = {"channel": "webhook"}
    before = {
        s: _sample("escalator_deliveries_total", status=s, **labels) for s in ("sent", "pending")
    }
    now = await runner.now()
    item_id = await tenant.add_item(due_at=now + timedelta(days=3))
    handle = await runner.start(tenant, item_id)
    await runner.skip_to(now + timedelta(days=2, minutes=5))  # remind fired; retries skipped

    async def sent() -> bool:
        rows = await _hooks(runner, tenant, item_id)
        return bool(rows) and rows[0].status == "sent"

    await _until(sent)
    [row] = await _hooks(runner, tenant, item_id)
    assert (row.attempts, row.response_code, row.event_key) == (3, 200, "task.reminder")
    assert len(receiver.requests) == 3
    assert {r.headers["webhook-id"] for r in receiver.requests} == {str(row.id)}
    assert all(r.verified_with == receiver.secrets for r in receiver.requests)
    assert receiver.requests[-1].json["data"]["rung"] == "remind"
    await runner.save_history(handle, "webhooks_retried")
    # The worker runs in this process: its counters moved by what happened.
    assert _sample("escalator_deliveries_total", status="sent", **labels) == before["sent"] + 1
    assert (
        _sample("escalator_deliveries_total", status="pending", **labels) == before["pending"] + 2
    )


async def test_a_410_disables_the_endpoint_for_every_later_rung(
    runner: Runner, tenant: Tenant, receiver: WebhookReceiver
) -> None:
    endpoint_id = await _endpoint(runner, tenant, receiver)
    receiver.status = 410
    disabled_before = _sample("escalator_webhook_endpoints_disabled_total", reason="gone")
    now = await runner.now()
    item_id = await tenant.add_item(due_at=now + timedelta(days=3))
    handle = await runner.start(tenant, item_id)
    await runner.skip_to(now + timedelta(days=4, minutes=5))  # remind and escalate_1
    mails = await runner.sink.wait_for(4)  # the two rungs', and one to each admin
    admins = sorted((tenant.email("ada"), tenant.email("otto")))
    told = [m for m in mails if m.message["X-Escalator-Event"] == "webhook.disabled"]
    assert sorted(a for m in told for a in m.rcpt_tos) == admins
    assert "switched off" in told[0].subject
    text = told[0].message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert all(s in text for s in ('"PSA"', "410 Gone", "/admin/webhooks")), text

    async with tenant_session(runner.app, tenant.account_id) as session:
        endpoint = await session.get(WebhookEndpoint, endpoint_id)
        assert endpoint is not None
        assert (endpoint.enabled, endpoint.disabled_reason) == (False, "410 Gone")
        audited = await session.scalars(
            select(AuditEvent.action).where(AuditEvent.action == "webhook_endpoint_disabled")
        )
        assert list(audited) == ["webhook_endpoint_disabled"]
        # Announced live, so an admin's open queue page shows it at once.
        [pushed] = await session.scalars(
            select(PushEvent.payload).where(PushEvent.kind == "webhook.disabled")
        )
        assert (pushed["endpoint_name"], pushed["reason"]) == ("PSA", "410 Gone")
    assert len(receiver.requests) == 1  # escalate_1 found the endpoint disabled
    assert _sample("escalator_webhook_endpoints_disabled_total", reason="gone") == (
        disabled_before + 1
    )
    [row] = await _hooks(runner, tenant, item_id)
    assert (row.status, row.response_code) == ("failed", 410)

    # An admin switches it back on: its first success tells the admins it works again.
    async with tenant_session(runner.app, tenant.account_id) as session:
        await webhooks.update_endpoint(
            session,
            tenant.account_id,
            endpoint_id,
            actor_id=tenant.user("ada"),
            changes={"enabled": True},
            now=now,
        )
    receiver.status = 200
    later = await runner.now()
    await runner.start(tenant, await tenant.add_item(due_at=later + timedelta(days=1)))
    await runner.skip_to(later + timedelta(days=2, minutes=5))
    mails = await runner.sink.wait_for(7)  # and the new item's remind
    back = [m for m in mails if m.message["X-Escalator-Event"] == "webhook.recovered"]
    assert sorted(a for m in back for a in m.rcpt_tos) == admins
    assert "works again" in back[0].subject
    await runner.save_history(handle, "endpoint_switched_off")


async def test_nothing_is_posted_after_a_claim(
    runner: Runner, tenant: Tenant, receiver: WebhookReceiver
) -> None:
    await _endpoint(runner, tenant, receiver)
    receiver.status = 503
    now = await runner.now()
    item_id = await tenant.add_item(due_at=now + timedelta(days=3))
    handle = await runner.start(tenant, item_id)
    await runner.skip_to(now + timedelta(days=2, seconds=1))

    async def tried() -> bool:
        return len(receiver.requests) >= 1

    await _until(tried)
    await runner.claim(tenant, handle, item_id, "emil")  # while Temporal backs off
    receiver.status = 200
    await runner.skip_to(now + timedelta(days=10))

    async def settled() -> bool:
        rows = await _hooks(runner, tenant, item_id)
        return bool(rows) and rows[0].status == "suppressed"

    await _until(settled)
    told = [r.json["type"] for r in receiver.requests]
    assert told == ["task.reminder", "item.claimed"], "a rung's webhook went out after the claim"
    [row, claimed] = await _hooks(runner, tenant, item_id)
    assert (row.attempts, claimed.status) == (1, "sent")


async def test_a_claim_a_release_and_a_resolve_post_their_own_events(
    runner: Runner, tenant: Tenant, receiver: WebhookReceiver
) -> None:
    endpoint_id = await _endpoint(runner, tenant, receiver)
    async with tenant_session(runner.app, tenant.account_id) as session:
        only_ends = await webhooks.create_endpoint(
            session,
            tenant.account_id,
            actor_id=tenant.user("ada"),
            values={"name": "Ends", "url": receiver.url, "event_filter": ["item.resolved"]},
            allow_private=True,
        )
    receiver.secrets = [receiver.secrets[0], only_ends.secret]
    now = await runner.now()
    item_id = await tenant.add_item(due_at=now + timedelta(days=30))
    handle = await runner.start(tenant, item_id)
    await runner.claim(tenant, handle, item_id, "emil")
    await _until(lambda: _told(receiver, 1))
    await runner.act(tenant, handle, item_id, "release", who="ada")
    await _until(lambda: _told(receiver, 2))
    receiver.answers = [503]  # the first try of the end fails: retried after the item ended
    await runner.act(tenant, handle, item_id, "resolve", who="erin")
    await runner.skip_to(now + timedelta(minutes=5))
    result = await handle.result()

    assert result.state == "resolved"
    assert all(r.verified_with for r in receiver.requests)
    sent = [(r.json["type"], r.json["data"]["by"]["name"]) for r in receiver.requests]
    assert sent[:2] == [("item.claimed", "Emil Engineer"), ("item.released", "Ada Admin")]
    assert sorted(sent[2:]) == [("item.resolved", "Erin Engineer")] * 3  # 503, retry, Ends
    last = receiver.requests[-1].json["data"]
    assert (last["state"], last["id"]) == ("resolved", str(item_id))
    rows = await _hooks(runner, tenant, item_id)
    assert sorted((str(r.endpoint_id), r.event_key.partition("@")[0], r.status) for r in rows) == (
        sorted(
            [
                (str(endpoint_id), "item.claimed", "sent"),
                (str(endpoint_id), "item.released", "sent"),
                (str(endpoint_id), "item.resolved", "sent"),
                (str(only_ends.id), "item.resolved", "sent"),
            ]
        )
    )
    await runner.save_history(handle, "lifecycle_webhooks")


async def _told(receiver: WebhookReceiver, count: int) -> bool:
    return len(receiver.requests) >= count


async def test_a_slow_receiver_never_delays_the_mails(
    dev_env: WorkflowEnvironment,
    settings: Settings,
    mail_sink: MailSink,
    engine: AsyncEngine,
    app_sessionmaker: async_sessionmaker[AsyncSession],
    tenant: Tenant,
    receiver: WebhookReceiver,
) -> None:
    """Real time on the dev server: the reminder's webhook takes 4 s to answer, and the
    escalation due 3 s after the reminder mails on time meanwhile."""
    task_queue = f"hooks-{uuid.uuid4()}"
    on_queue = settings.model_copy(update={"task_queue": task_queue, "smtp_port": mail_sink.port})
    runner = Runner(dev_env, task_queue, mail_sink, app_sessionmaker)
    await _endpoint(
        runner,
        tenant,
        receiver,
        {
            "remind": hooked({"business_seconds": 2}, ["assignee"], "task.reminder"),
            "escalate_1": hooked({"business_seconds": 1}, ["assignee_manager"], "task.escalated"),
            "escalate_2": None,
        },
    )
    receiver.delay = 4.0
    due = utcnow() + timedelta(seconds=6)
    item_id = await tenant.add_item(due_at=due)
    async with build_worker(dev_env.client, on_queue, engine):
        await runner.start(tenant, item_id)
        try:
            await mail_sink.wait_for(2, within=30)

            async def answered() -> bool:
                return bool(receiver.requests) and receiver.requests[0].answered_at is not None

            await _until(answered)
        finally:
            await runner.stop_all()
    escalated = next(
        m for m in mail_sink.mails if m.message["X-Escalator-Event"] == "task.escalated"
    )
    first = receiver.requests[0]
    assert first.json["data"]["rung"] == "remind"
    assert first.answered_at is not None
    assert escalated.received_at < first.answered_at, "the escalation waited for a webhook"
    assert escalated.received_wall - (due + timedelta(seconds=1)).timestamp() < 2.0


async def test_slow_receivers_never_take_the_mails_activity_slots(
    dev_env: WorkflowEnvironment,
    settings: Settings,
    mail_sink: MailSink,
    engine: AsyncEngine,
    app_sessionmaker: async_sessionmaker[AsyncSession],
    tenant: Tenant,
    receiver: WebhookReceiver,
) -> None:
    """Two activity slots a queue. The reminder posts to three endpoints that take 12 s each
    (two of them fill the slots); the escalation 4 s later mails 30 people, more than the
    fire mails itself, so through a `send_emails` activity: every mail is out within
    seconds, because webhooks run on a task queue of their own."""
    task_queue = f"hooks-{uuid.uuid4()}"
    on_queue = settings.model_copy(
        update={
            "task_queue": task_queue,
            "smtp_port": mail_sink.port,
            "worker_activity_slots": 2,
            "webhook_timeout_seconds": 15.0,
        }
    )
    runner = Runner(dev_env, task_queue, mail_sink, app_sessionmaker)
    crowd = await tenant.add_engineers(30)
    await _endpoint(
        runner,
        tenant,
        receiver,
        {
            "remind": {
                **rung({"business_seconds": 2}, ["assignee"], "task.reminder"),
                "channels": ["webhook"],
            },
            "escalate_1": rung(
                {"business_seconds": 2}, ["account_roles:engineer"], "task.escalated"
            ),
            "escalate_2": None,
        },
    )
    for name in ("ticketing", "chat"):
        async with tenant_session(runner.app, tenant.account_id) as session:
            made = await webhooks.create_endpoint(
                session,
                tenant.account_id,
                actor_id=tenant.user("ada"),
                values={"name": name, "url": receiver.url},
                allow_private=True,
            )
        receiver.secrets.append(made.secret)
    receiver.delay = 12.0
    due = utcnow() + timedelta(seconds=5)
    escalates_at = due + timedelta(seconds=2)
    item_id = await tenant.add_item(due_at=due)
    async with build_worker(dev_env.client, on_queue, engine):
        await runner.start(tenant, item_id)
        try:
            mails = await mail_sink.wait_for(len(crowd) + 2, within=40)  # + Erin and Emil
        finally:
            await runner.stop_all()
    late = max(m.received_wall for m in mails) - escalates_at.timestamp()
    answered = [r.answered_at for r in receiver.requests if r.answered_at is not None]
    assert len(receiver.requests) >= 2
    assert late < 4.0, f"the last mail went out {late:.1f} s after its rung"
    assert not answered or min(answered) > max(m.received_at for m in mails)
