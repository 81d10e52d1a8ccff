"""Who hears about an item, and when: handoff fan-out, park, quiet hours, SMTP failures."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, time, timedelta
from typing import Any

from tests.api.test_links import plain
from tests.support.tenants import Tenant
from tests.workflows.conftest import Handle, Runner
from tests.workflows.test_escalation import MINUTE, berlin, friday_after, weekday
from workflows.retries import SMTP_RETRY


async def _handoff(runner: Runner, tenant: Tenant, intent: str) -> tuple[uuid.UUID, Handle]:
    now = await runner.now()
    values: dict[str, Any] = {"state": "paused", "paused_at": now} if intent == "park" else {}
    item_id = await tenant.add_item(
        due_at=now + timedelta(days=2),
        item_type="handoff",
        kind="handoff",
        intent=intent,
        assignee=None,
        creator="erin",
        session_ref="session-42",
        engineer_notes="customer VPN down",
        **values,
    )
    return item_id, await runner.start(tenant, item_id)


async def test_escalate_fans_out_to_seniors_except_escalator_viewers_and_soft_deleted(
    runner: Runner, tenant: Tenant
) -> None:
    await tenant.update_user("emil", deleted_at=datetime(2026, 1, 1, tzinfo=UTC))
    item_id, handle = await _handoff(runner, tenant, "escalate")

    mails = await runner.sink.wait_for(2)
    assert sorted(m.rcpt_tos[0] for m in mails) == [tenant.email("ada"), tenant.email("otto")]
    assert all("customer VPN down" in plain(m) for m in mails)
    # Who escalated it, by name (not "an engineer", whatever their role).
    assert all("escalated by Erin Engineer" in plain(m) for m in mails)
    [event] = await tenant.push_events(item_id)
    assert event.kind == "handoff.escalated"
    assert event.payload["item"]["kind"] == "handoff"
    await runner.act(tenant, handle, item_id, "cancel")
    assert (await handle.result()).state == "cancelled"
    await runner.save_history(handle, "handoff_fanned_out_cancelled")


async def test_park_notifies_nobody_and_stops_the_clock(runner: Runner, tenant: Tenant) -> None:
    item_id, handle = await _handoff(runner, tenant, "park")
    await runner.skip_to(await runner.now() + timedelta(days=30))

    state = await runner.state(handle)
    assert state.state == "paused"
    assert runner.sink.mails == []
    assert await tenant.deliveries(item_id) == []


async def test_one_recipients_5xx_does_not_stop_the_others_and_is_recorded(
    runner: Runner, tenant: Tenant
) -> None:
    runner.sink.reject(tenant.email("ada"))
    item_id, handle = await _handoff(runner, tenant, "escalate")

    mails = await runner.sink.wait_for(2)
    assert sorted(m.rcpt_tos[0] for m in mails) == [tenant.email("emil"), tenant.email("otto")]
    for _ in range(100):  # the failure is recorded by the activity, then pushed
        kinds = [e.kind for e in await tenant.push_events(item_id)]
        if "delivery.failed" in kinds:
            break
        await asyncio.sleep(0.05)
    assert kinds == ["handoff.escalated", "delivery.failed"]
    statuses = {d.recipient_id: d.status for d in await tenant.deliveries(item_id)}
    assert statuses == {
        tenant.user("ada"): "failed",
        tenant.user("emil"): "sent",
        tenant.user("otto"): "sent",
    }
    assert ("delivery_failed", 0) in await tenant.audit(item_id)
    await runner.save_history(handle, "delivery_failed")


async def test_quiet_hours_defer_normal_mail_and_critical_mail_pierces(
    runner: Runner, tenant: Tenant
) -> None:
    for key in ("erin", "otto"):
        await tenant.update_user(key, quiet_start=time(8), quiet_end=time(12))
    due = friday_after(await runner.now())
    item_id = await tenant.add_item(due_at=due)
    handle = await runner.start(tenant, item_id)

    remind = weekday(due, -1)
    await runner.skip_to(remind + MINUTE)
    assert runner.sink.mails == []
    [delivery] = await tenant.deliveries(item_id)
    assert (delivery.status, delivery.deferred_until) == ("deferred", berlin(remind, 12))

    await runner.skip_to(berlin(remind, 12) + MINUTE)
    [mail] = await runner.sink.wait_for(1)
    assert mail.rcpt_tos == (tenant.email("erin"),)

    await runner.skip_to(weekday(due, 5) + MINUTE)  # escalate_2 (critical) at 10:00
    mails = await runner.sink.wait_for(3)
    assert mails[-1].rcpt_tos == (tenant.email("otto"),)
    await runner.save_history(handle, "quiet_hours")


async def test_a_transient_error_is_sent_again_to_that_recipient_alone(
    runner: Runner, tenant: Tenant
) -> None:
    runner.sink.reject(tenant.email("ada"), "451 4.3.0 try again later")
    item_id, handle = await _handoff(runner, tenant, "escalate")
    await runner.sink.wait_for(2)
    runner.sink.accept(tenant.email("ada"))

    await runner.skip_to(await runner.now() + timedelta(minutes=1))  # past the backoff timer
    mails = await runner.sink.wait_for(3)

    assert sorted(m.rcpt_tos[0] for m in mails) == sorted(
        tenant.email(k) for k in ("ada", "emil", "otto")
    )
    attempts = {d.recipient_id: (d.status, d.attempts) for d in await tenant.deliveries(item_id)}
    assert attempts == {
        tenant.user("ada"): ("sent", 2),
        tenant.user("emil"): ("sent", 1),
        tenant.user("otto"): ("sent", 1),
    }
    await runner.save_history(handle, "smtp_retried")


async def test_out_of_attempts_the_mail_is_failed_and_the_others_are_untouched(
    runner: Runner, tenant: Tenant
) -> None:
    """A server that answers 451 to one recipient for ever: after `SMTP_RETRY`'s attempts
    that recipient's row is `failed`, audited and announced once; the others were sent."""
    runner.sink.reject(tenant.email("ada"), "451 4.3.0 try again later")
    item_id, handle = await _handoff(runner, tenant, "escalate")
    await runner.sink.wait_for(2)
    for _ in range(200):
        await runner.skip_to(await runner.now() + timedelta(minutes=10))
        rows = {d.recipient_id: d for d in await tenant.deliveries(item_id)}
        if rows[tenant.user("ada")].status == "failed":
            break
    ada = rows[tenant.user("ada")]
    assert (ada.status, ada.attempts) == ("failed", SMTP_RETRY.maximum_attempts)
    assert "451" in (ada.last_error or "")
    assert len(runner.sink.mails) == 2
    kinds = [e.kind for e in await tenant.push_events(item_id)]
    assert kinds == ["handoff.escalated", "delivery.failed"]
    await runner.save_history(handle, "smtp_gave_up")


async def test_a_retry_never_waits_for_another_recipients_quiet_hours(
    runner: Runner, tenant: Tenant
) -> None:
    """Ada is in quiet hours until 23:59; Otto's server answers 451 once. Otto's mail goes
    out after its backoff, not after Ada's night."""
    await tenant.update_user("ada", quiet_start=time(0, 0), quiet_end=time(23, 59))
    runner.sink.reject(tenant.email("otto"), "451 4.3.0 try again later")
    item_id, _ = await _handoff(runner, tenant, "escalate")
    [first] = await runner.sink.wait_for(1)
    assert first.rcpt_tos == (tenant.email("emil"),)
    runner.sink.accept(tenant.email("otto"))

    await runner.skip_to(await runner.now() + timedelta(minutes=1))  # past the backoff only
    mails = await runner.sink.wait_for(2)
    assert sorted(m.rcpt_tos[0] for m in mails) == sorted(tenant.email(k) for k in ("emil", "otto"))
    statuses = {d.recipient_id: d.status for d in await tenant.deliveries(item_id)}
    assert statuses[tenant.user("ada")] == "deferred"
