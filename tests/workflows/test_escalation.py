"""EscalationWorkflow on the time-skipping server with the real worker, Postgres and SMTP
sink: days of business-time timers in seconds."""

from __future__ import annotations

from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from domain import demo
from tests.support.tenants import Tenant
from tests.workflows.conftest import Runner
from workflows import search_attributes as sa
from workflows.escalation import PRE_WAKE, EscalationWorkflow

BERLIN = ZoneInfo("Europe/Berlin")
MINUTE = timedelta(minutes=1)


def berlin(day: datetime, hour: int) -> datetime:
    return datetime.combine(day.astimezone(BERLIN).date(), time(hour), tzinfo=BERLIN)


def friday_after(now: datetime, days: int = 5) -> datetime:
    """Friday 10:00 Berlin, at least `days` after `now` (the calendar has no holidays)."""
    day = (now + timedelta(days=days)).astimezone(BERLIN)
    day += timedelta(days=(4 - day.weekday()) % 7)
    return berlin(day, 10)


def weekday(friday: datetime, offset_days: int) -> datetime:
    return friday + timedelta(days=offset_days)


async def test_capa_rungs_fire_at_their_planned_instants_to_the_right_people(
    runner: Runner, tenant: Tenant
) -> None:
    due = friday_after(await runner.now())
    item_id = await tenant.add_item(due_at=due)
    handle = await runner.start(tenant, item_id)
    # Mon-Fri 09-17: remind one business day before (Thursday 10:00), escalate_1 one after
    # (Monday 10:00), escalate_2 three after (Wednesday 10:00), the seed's rule.
    expected = {
        "remind": weekday(due, -1),
        "escalate_1": weekday(due, 3),
        "escalate_2": weekday(due, 5),
    }
    plan = {r.name: r.fire_at for r in (await runner.state(handle)).rungs}
    assert plan == expected
    assert expected["escalate_2"].weekday() == 2  # Wednesday
    assert await runner.search_attribute(handle, sa.ESCALATION_TIER.name) is None  # no rung yet

    recipients = {"remind": "erin", "escalate_1": "ada", "escalate_2": "otto"}
    for count, (rung, at) in enumerate(expected.items(), start=1):
        await runner.skip_to(at + MINUTE)
        mails = await runner.sink.wait_for(count)
        assert mails[-1].rcpt_tos == (tenant.email(recipients[rung]),), rung
        item = await tenant.item(item_id)
        # The timer fires at the planned instant; the stamp is taken right after (ms).
        assert at <= getattr(item, f"{rung}_fired_at") < at + timedelta(seconds=1), rung

    subjects = [m.subject.split(":")[0] for m in runner.sink.mails]
    assert subjects == [
        "[escalator] Reminder",
        "[escalator] Escalated",
        "[escalator] FINAL escalation",
    ]
    audit = await tenant.audit(item_id)
    assert [t for a, t in audit if a == "rung_fired"] == [0, 1, 2]
    # Falling due is an event too, between the reminder and the first escalation.
    assert [a for a, _ in audit if a in ("rung_fired", "fell_due")] == [
        "rung_fired",
        "fell_due",
        "rung_fired",
        "rung_fired",
    ]
    assert await runner.search_attribute(handle, sa.ESCALATION_TIER.name) == 2
    assert await runner.search_attribute(handle, sa.ESCALATION_STATE.name) == "open"
    kinds = [e.kind for e in await tenant.push_events(item_id)]
    assert kinds == ["rung.fired", "item.overdue", "rung.fired", "rung.fired"]
    await runner.save_history(handle, "escalated_to_tier_2")
    await runner.act(tenant, handle, item_id, "resolve")
    assert (await handle.result()).fired == ["remind", "escalate_1", "escalate_2"]


async def test_a_rung_at_the_due_instant_records_the_falling_due_in_its_own_transaction(
    runner: Runner, tenant: Tenant
) -> None:
    """Falling due and a rung at that same instant are one transaction, not two: the
    `fell_due` row and `item.overdue` event are written with the rung's, before them."""
    reminder = demo.rung({"business_seconds": 0}, ["assignee"], "task.reminder")
    await tenant.around_the_clock({"remind": reminder, "escalate_1": None, "escalate_2": None})
    due = await runner.now() + timedelta(hours=1)
    item_id = await tenant.add_item(due_at=due)
    handle = await runner.start(tenant, item_id)
    await runner.skip_to(due + MINUTE)
    await runner.sink.wait_for(1)
    audit = await tenant.audit(item_id)
    assert [a for a, _ in audit if a in ("rung_fired", "fell_due")] == ["fell_due", "rung_fired"]
    events = await tenant.push_events(item_id)
    assert [e.kind for e in events] == ["item.overdue", "rung.fired"]
    assert events[0].created_at == events[1].created_at  # now(): one transaction's start
    await runner.save_history(handle, "rung_at_due")
    await runner.act(tenant, handle, item_id, "resolve")
    assert (await handle.result()).fired == ["remind"]


async def test_a_far_rung_is_armed_afresh_pre_wake_before_its_instant(
    runner: Runner, tenant: Tenant
) -> None:
    """A timer's length is computed at its task's start but runs from the task's end: the
    last stretch to every far rung is a timer of at most PRE_WAKE, armed by a cheap task."""
    due = friday_after(await runner.now())
    handle = await runner.start(tenant, await tenant.add_item(due_at=due))
    await runner.skip_to(weekday(due, -1) + MINUTE)
    await runner.sink.wait_for(1)
    timers = [
        event.timer_started_event_attributes.start_to_fire_timeout.ToTimedelta()
        async for event in handle.fetch_history_events()
        if event.HasField("timer_started_event_attributes")
    ]
    assert timers[0] > timedelta(days=1)
    assert timedelta(0) < timers[1] <= PRE_WAKE


async def test_doc_ack_never_reaches_tier_2(runner: Runner, tenant: Tenant) -> None:
    due = friday_after(await runner.now())
    item_id = await tenant.add_item(due_at=due, item_type="DOC_ACK")
    handle = await runner.start(tenant, item_id)
    assert [r.name for r in (await runner.state(handle)).rungs] == ["remind", "escalate_1"]

    await runner.skip_to(due + timedelta(days=30))
    await runner.sink.wait_for(2)
    state = await runner.state(handle)
    assert state.tier == 1
    assert len(runner.sink.mails) == 2
    assert all(tier != 2 for _, tier in await tenant.audit(item_id))


async def test_after_a_claim_before_escalate_1_nothing_more_is_ever_sent(
    runner: Runner, tenant: Tenant
) -> None:
    due = friday_after(await runner.now())
    item_id = await tenant.add_item(due_at=due)
    handle = await runner.start(tenant, item_id)
    await runner.skip_to(weekday(due, -1) + MINUTE)
    await runner.sink.wait_for(1)

    await runner.claim(tenant, handle, item_id, "emil")
    await runner.skip_to(due + timedelta(days=30))

    state = await runner.state_when(handle, lambda s: s.state == "claimed")
    assert state.claimed_by == str(tenant.user("emil"))
    assert len(runner.sink.mails) == 1
    assert [d.event_key for d in await tenant.deliveries(item_id)] == ["task.reminder"]
    assert await runner.search_attribute(handle, sa.CLAIMED_BY.name) == str(tenant.user("emil"))
    await runner.save_history(handle, "claimed")


async def test_release_resumes_at_the_rung_matching_now(runner: Runner, tenant: Tenant) -> None:
    due = friday_after(await runner.now())
    item_id = await tenant.add_item(due_at=due)
    handle = await runner.start(tenant, item_id)
    await runner.claim(tenant, handle, item_id, "emil")
    # Past escalate_1 (Monday) but before escalate_2 (Wednesday): Tuesday noon.
    await runner.skip_to(berlin(weekday(due, 4), 12))
    assert runner.sink.mails == []

    await runner.act(tenant, handle, item_id, "release", who="emil")
    [mail] = await runner.sink.wait_for(1)
    assert mail.rcpt_tos == (tenant.email("ada"),)  # escalate_1 at once, not from zero
    state = await runner.state_when(handle, lambda s: s.tier == 1)
    statuses = {r.name: r.status for r in state.rungs}
    assert statuses == {"remind": "skipped", "escalate_1": "fired", "escalate_2": "pending"}
    assert ("rung_skipped", 0) in await tenant.audit(item_id)
    await runner.act(tenant, handle, item_id, "resolve", who="emil")
    assert (await handle.result()).state == "resolved"
    await runner.save_history(handle, "released_resolved")


async def test_pause_and_resume_shift_the_rungs_by_the_paused_business_time(
    runner: Runner, tenant: Tenant
) -> None:
    due = friday_after(await runner.now())
    item_id = await tenant.add_item(due_at=due)
    handle = await runner.start(tenant, item_id)
    before = {r.name: r.fire_at for r in (await runner.state(handle)).rungs}

    monday = berlin(weekday(due, -4), 9)
    await runner.skip_to(monday)
    await runner.act(tenant, handle, item_id, "pause", at=monday)
    await runner.state_when(handle, lambda s: s.state == "paused")
    await runner.skip_to(monday + timedelta(hours=3))  # three business hours paused
    await runner.act(tenant, handle, item_id, "resume", at=monday + timedelta(hours=3))

    state = await runner.state_when(handle, lambda s: s.state == "open")
    after = {r.name: r.fire_at for r in state.rungs}
    assert after == {name: at + timedelta(hours=3) for name, at in before.items()}
    await runner.save_history(handle, "paused_resumed")


async def test_change_due_re_arms_every_rung(runner: Runner, tenant: Tenant) -> None:
    due = friday_after(await runner.now())
    item_id = await tenant.add_item(due_at=due)
    handle = await runner.start(tenant, item_id)
    later = due + timedelta(days=7)
    await runner.act(tenant, handle, item_id, "change_due", due_at=later)
    await runner.state_when(handle, lambda s: s.due_at == later)

    await runner.skip_to(weekday(due, -1) + timedelta(hours=1))  # the old remind
    assert runner.sink.mails == []
    plan = {r.name: r.fire_at for r in (await runner.state(handle)).rungs}
    assert plan["remind"] == weekday(later, -1)
    await runner.skip_to(weekday(later, -1) + MINUTE)
    await runner.sink.wait_for(1)
    planned = {r.name: r.fire_at for r in (await runner.state(handle)).rungs}
    await handle.signal(EscalationWorkflow.replan)  # the policy re-read: the same plan
    assert {r.name: r.fire_at for r in (await runner.state(handle)).rungs} == planned
    await runner.save_history(handle, "due_changed")


async def test_a_task_created_overdue_fires_only_its_highest_rung(
    runner: Runner, tenant: Tenant
) -> None:
    now = await runner.now()
    item_id = await tenant.add_item(due_at=now - timedelta(days=20))
    await runner.start(tenant, item_id)
    [mail] = await runner.sink.wait_for(1, within=20)
    assert mail.rcpt_tos == (tenant.email("otto"),)
    audit = await tenant.audit(item_id)
    assert [(a, t) for a, t in audit if a.startswith("rung_")] == [
        ("rung_skipped", 0),
        ("rung_skipped", 1),
        ("rung_fired", 2),
    ]
