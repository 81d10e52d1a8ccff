"""Escalation never goes silent (issue 22 item 5): a last rung with `repeat_every` tells its
people again that often until someone claims, and a release at the last tier tells them
again at once. Each repeat is its own event (`~n`): its own delivery rows and audit row."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from domain.demo import rung
from tests.support.tenants import Tenant
from tests.workflows.conftest import Handle, Runner

MINUTE = timedelta(minutes=1)


async def test_the_last_tier_repeats_until_claimed_and_again_after_a_release(
    runner: Runner, tenant: Tenant
) -> None:
    final = rung({"business_hours": 2}, ["role:top_management"], "task.escalated_final")
    await tenant.around_the_clock(
        {
            "remind": rung({"business_hours": 1}, ["assignee"], "task.reminder"),
            "escalate_1": rung({"business_hours": 1}, ["assignee_manager"], "task.escalated"),
            "escalate_2": {**final, "repeat_every": {"business_hours": 4}},
        }
    )
    due = await runner.now() + timedelta(hours=2)
    item_id = await tenant.add_item(due_at=due)
    handle = await runner.start(tenant, item_id)
    last = due + timedelta(hours=2)

    await runner.skip_to(last + MINUTE)
    assert len(await runner.sink.wait_for(3)) == 3
    for n, at in ((2, last + timedelta(hours=4)), (3, last + timedelta(hours=8))):
        await runner.skip_to(at + MINUTE)
        mails = await runner.sink.wait_for(n + 2)
        assert mails[-1].rcpt_tos == (tenant.email("otto"),)
        assert mails[-1].subject.startswith(f"[still unclaimed, notice {n}] ")

    await runner.claim(tenant, handle, item_id, "emil")
    await runner.skip_to(last + timedelta(hours=20))
    assert len(runner.sink.mails) == 5  # claimed: silence is someone's choice now

    await runner.act(tenant, handle, item_id, "release", who="emil")
    mails = await runner.sink.wait_for(6)  # released at the last tier: told again at once
    assert mails[-1].rcpt_tos == (tenant.email("otto"),)
    assert mails[-1].subject.startswith("[still unclaimed, notice 4] ")
    audit = await tenant.audit(item_id)
    assert [a for a, _ in audit if a == "rung_repeated"] == ["rung_repeated"] * 3
    deliveries = await tenant.deliveries(item_id)
    assert sorted(
        d.event_key for d in deliveries if d.event_key.startswith("task.escalated_f")
    ) == [
        "task.escalated_final",
        "task.escalated_final~1",
        "task.escalated_final~2",
        "task.escalated_final~3",
    ]
    await runner.save_history(handle, "repeated_until_claimed")


async def escalated_then_claimed(
    runner: Runner, tenant: Tenant, **policy: Any
) -> tuple[uuid.UUID, Handle, datetime]:
    """An item whose one rung (escalate_1, an hour after due, to Erin's manager) fired, then
    claimed by Emil; the item, its workflow and its due."""
    await tenant.around_the_clock(
        {
            "remind": None,
            "escalate_1": rung({"business_hours": 1}, ["assignee_manager"], "task.escalated"),
            "escalate_2": None,
            **policy,
        }
    )
    due = await runner.now() + timedelta(hours=1)
    item_id = await tenant.add_item(due_at=due)
    handle = await runner.start(tenant, item_id)
    await runner.skip_to(due + timedelta(hours=1) + MINUTE)
    await runner.sink.wait_for(1)
    await runner.claim(tenant, handle, item_id, "emil")
    return item_id, handle, due


async def test_without_repeat_a_release_at_the_last_tier_still_tells_it_again(
    runner: Runner, tenant: Tenant
) -> None:
    item_id, handle, due = await escalated_then_claimed(runner, tenant)
    await runner.act(tenant, handle, item_id, "release", who="emil")
    mails = await runner.sink.wait_for(2)
    assert [m.rcpt_tos for m in mails] == [(tenant.email("ada"),)] * 2
    await runner.skip_to(due + timedelta(days=3))
    assert len(runner.sink.mails) == 2  # no repeat_every: told once more, not for ever


async def test_a_claim_not_resolved_in_time_reopens_the_item_and_tells_again(
    runner: Runner, tenant: Tenant
) -> None:
    item_id, handle, due = await escalated_then_claimed(
        runner, tenant, claim_timeout={"business_hours": 2}
    )
    await runner.skip_to(due + timedelta(hours=2))
    assert (await tenant.item(item_id)).state == "claimed"  # an hour in: still Emil's

    await runner.skip_to(due + timedelta(hours=3, minutes=2))
    mails = await runner.sink.wait_for(2)
    assert [m.rcpt_tos for m in mails] == [(tenant.email("ada"),)] * 2  # told again
    item = await tenant.item(item_id)
    assert (item.state, item.claimed_by) == ("open", None)
    assert ("claim_timed_out", None) in await tenant.audit(item_id)
    await runner.save_history(handle, "claim_timed_out")
