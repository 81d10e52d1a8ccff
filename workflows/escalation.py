"""`EscalationWorkflow`: one per item (`item-<uuid>`); it holds the item's escalation timers.

Signals: `claim`, `release`, `resolve`, `cancel`, `pause`, `resume`, `change_due`, `replan`,
`sync`. Postgres is the truth and signals are nudges: any signal wakes the loop, which reads
the item back from the database (state, claimer, due, pauses, fired rungs, pinned policy
and calendar versions),
re-plans, and records the item version it applied. A lost signal heals when the reconciler
sends `sync` to an item whose applied version lags; a duplicate one changes nothing.
Queries: `get_state` (state, claimer, every rung with its instant, status and tier).
Timers: one at a time, `wait_condition(timeout=...)` until the next pending rung, summarised as
"escalate_1 at 2026-11-25 09:00 Europe/Berlin"; plus one durable sleep per email deferred by
a recipient's quiet hours. A rung fires as one `fire_rung` transaction (stamp, audit,
recipients, delivery rows, push), then its emails go out, and its webhooks if the rung names
that channel (a delivery row per matching endpoint, then one retried `send_webhook` each).

The plan itself is the pure `domain.planning.plan_rungs`; the item, its pinned policy and its
pinned calendar version come from the `load_item` activity and stay in workflow state, so a
replay never depends on today's database or holiday rules.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import SearchAttributeUpdate

with workflow.unsafe.imports_passed_through():
    from activities.email import EmailActivities
    from activities.items import ItemActivities
    from domain.calendar import BusinessCalendar
    from domain.planning import (
        RUNG_TIERS,
        Pause,
        PlannedRung,
        RungName,
        effective_due,
        next_pending,
        plan_rungs,
    )
    from domain.policy import RungPolicy, offsets, parse_rungs
    from workflows import search_attributes as sa

    # The webhook activities' messages are decoded here too: a dataclass whose module the
    # sandbox has not imported passed-through cannot resolve its `datetime` hints.
    from workflows import webhook_types  # noqa: F401
    from workflows.notifier import Notifier
    from workflows.retries import LOCAL_SEND_TIMEOUT, db_step
    from workflows.types import (
        AppliedVersion,
        AtSignal,
        Carry,
        ChangeDueSignal,
        ClaimSignal,
        EscalationInput,
        EscalationResult,
        FireRung,
        ItemRef,
        ItemSnapshot,
        Notification,
        PauseSpan,
        PendingSend,
        RecordPlan,
        RecordRung,
        RungMark,
        RungView,
        StateView,
    )

TERMINAL = ("resolved", "cancelled")
HANDOFF_FAN_OUT = "account_roles:engineer,admin,owner"
# A rung further off than PRE_WAKE is waited for in two timers, the second armed PRE_WAKE
# before the instant by a task that does nothing else. A timer runs from the moment its
# task completes, but its length was computed at the task's start: a slow task (the first
# one, at a start burst) would make every rung after it that much late.
PRE_WAKE = timedelta(seconds=10)


@workflow.defn
class EscalationWorkflow:
    def __init__(self) -> None:
        self._state = "open"
        self._claimed_by: str | None = None
        self._due: datetime | None = None
        self._pauses: list[PauseSpan] = []
        self._done: dict[str, RungMark] = {}
        self._tier = -1
        self._handoff_notified = False
        self._dirty = False
        self._reload = False
        self._snapshot: ItemSnapshot | None = None
        self._calendar: BusinessCalendar | None = None
        self._rungs: dict[RungName, RungPolicy | None] = {}
        self._plan: list[PlannedRung] = []
        self._recorded_plan: dict[str, datetime | None] | None = None
        # What the search attributes were last upserted from (kind, type and account never
        # change): one upsert command only when one of these did.
        self._shown: tuple[object, ...] = ()
        self._sync_wanted = False

    def _nudged(self) -> None:
        self._sync_wanted = self._dirty = True

    # ---- signals: change state, wake the loop -------------------------------------------
    @workflow.signal
    def claim(self, signal: ClaimSignal) -> None:
        self._nudged()
        if self._state not in TERMINAL:
            self._close_pause(signal.at)
            self._state, self._claimed_by = "claimed", signal.user_id
            self._dirty = True

    @workflow.signal
    def release(self, signal: AtSignal) -> None:
        self._nudged()
        if self._state == "claimed":
            self._state, self._claimed_by = "open", None
            self._dirty = True

    @workflow.signal
    def resolve(self, signal: AtSignal) -> None:
        self._nudged()
        self._state, self._dirty = "resolved", True

    @workflow.signal
    def cancel(self, signal: AtSignal) -> None:
        self._nudged()
        self._state, self._dirty = "cancelled", True

    @workflow.signal
    def pause(self, signal: AtSignal) -> None:
        self._nudged()
        if self._state == "open":
            self._state = "paused"
            self._pauses.append(PauseSpan(start=signal.at or workflow.now()))
            self._dirty = True

    @workflow.signal
    def resume(self, signal: AtSignal) -> None:
        self._nudged()
        if self._state == "paused":
            self._close_pause(signal.at)
            self._state, self._dirty = "open", True

    @workflow.signal
    def change_due(self, signal: ChangeDueSignal) -> None:
        self._nudged()
        self._due, self._dirty = signal.due_at, True

    @workflow.signal
    def replan(self) -> None:
        self._nudged()
        self._reload = self._dirty = True

    @workflow.signal
    def sync(self) -> None:
        """Read the item back from the database: the reconciler's nudge for a lost signal."""
        self._nudged()

    @workflow.query
    def get_state(self) -> StateView:
        return StateView(
            state=self._state,
            claimed_by=self._claimed_by,
            due_at=self._due,
            effective_due_at=self._effective_due(),
            tier=self._fired_tier(),
            rungs=[
                RungView(
                    name=r.name,
                    tier=r.tier,
                    deadline=r.deadline,
                    fire_at=r.fire_at,
                    status=r.status,
                )
                for r in self._plan
            ],
        )

    # ---- the loop -----------------------------------------------------------------------
    @workflow.run
    async def run(self, input: EscalationInput) -> EscalationResult:
        ref = ItemRef(item_id=input.item_id, account_id=input.account_id)
        await self._load(ref, first=input.carry is None)
        notifier = Notifier(ref)
        if input.carry is not None:
            self._restore(input.carry)
            notifier.resume(input.carry.sends)
        await self._record_applied(ref)
        if self._needs_handoff_fan_out():
            self._handoff_notified = True
            await self._notify_handoff(notifier)
        while self._state not in TERMINAL:
            if workflow.info().is_continue_as_new_suggested():
                carry = self._carry(await notifier.carry())
                workflow.continue_as_new(
                    EscalationInput(item_id=input.item_id, account_id=input.account_id, carry=carry)
                )
            if self._sync_wanted:
                self._sync_wanted = self._reload = False
                await self._sync(ref)
                continue  # the database may have ended it
            if self._reload:
                self._reload = False
                await self._load(ref, first=False)
            self._dirty = False
            await self._replan(ref)
            upcoming = next_pending(self._plan) if self._state == "open" else None
            if upcoming is None:
                await workflow.wait_condition(lambda: self._dirty)
                continue
            wait = max(upcoming.fire_at - workflow.now(), timedelta(0))
            pre_wake = wait > 2 * PRE_WAKE
            try:
                await workflow.wait_condition(
                    lambda: self._dirty,
                    timeout=wait - PRE_WAKE if pre_wake else wait,
                    timeout_summary=self._timer_summary(upcoming),
                )
                continue  # a message arrived first: re-plan
            except TimeoutError:
                if pre_wake:
                    continue  # the last stretch, armed afresh
            await self._fire(ref, upcoming, notifier)
        if self._sync_wanted:
            await self._sync(ref)  # record the version that ended it
        notifier.cancel_pending()
        await self._publish_state(ref)
        await workflow.wait_condition(workflow.all_handlers_finished)
        fired = [m.name for m in self._done.values() if m.status == "fired"]
        return EscalationResult(state=self._state, fired=fired)

    async def _load(self, ref: ItemRef, *, first: bool) -> None:
        snapshot = await db_step(ItemActivities.load_item, ref)
        self._snapshot = snapshot
        self._calendar = BusinessCalendar.from_dict(snapshot.calendar)
        self._rungs = parse_rungs(snapshot.rungs)
        if first:
            self._state, self._claimed_by, self._due = (
                snapshot.state,
                snapshot.claimed_by,
                snapshot.due_at,
            )
            self._done = {m.name: m for m in snapshot.done}
            if snapshot.pauses:
                self._pauses = list(snapshot.pauses)
            elif snapshot.state == "paused":  # a parked handoff starts with its clock stopped
                self._pauses = [PauseSpan(start=snapshot.paused_at or snapshot.created_at)]

    async def _sync(self, ref: ItemRef) -> None:
        """The database's state of the item replaces the workflow's, then the applied
        version is recorded."""
        await self._load(ref, first=True)
        await self._record_applied(ref)

    async def _record_applied(self, ref: ItemRef) -> None:
        version = self._snapshot_or_fail().version
        await db_step(
            ItemActivities.record_applied_version,
            AppliedVersion(item_id=ref.item_id, account_id=ref.account_id, version=version),
        )

    def _restore(self, carry: Carry) -> None:
        self._state, self._claimed_by, self._due = carry.state, carry.claimed_by, carry.due_at
        self._pauses, self._done = list(carry.pauses), {m.name: m for m in carry.done}
        self._handoff_notified, self._tier = carry.handoff_notified, carry.tier

    def _carry(self, sends: list[PendingSend]) -> Carry:
        return Carry(
            state=self._state,
            claimed_by=self._claimed_by,
            due_at=self._due,
            pauses=self._pauses,
            done=list(self._done.values()),
            handoff_notified=self._handoff_notified,
            tier=self._tier,
            sends=sends,
        )

    def _fired_tier(self) -> int:
        """The highest tier fired, from the fired marks (which a sync reads back from the
        database), so the query agrees with the API's read model."""
        fired = [RUNG_TIERS[m.name] for m in self._done.values() if m.status == "fired"]  # type: ignore[index]
        return max([self._tier, *fired])

    def _snapshot_or_fail(self) -> ItemSnapshot:
        assert self._snapshot is not None
        return self._snapshot

    def _close_pause(self, at: datetime | None) -> None:
        if self._pauses and self._pauses[-1].end is None:
            self._pauses[-1] = PauseSpan(start=self._pauses[-1].start, end=at or workflow.now())

    def _domain_pauses(self) -> list[Pause]:
        return [Pause(start=p.start, end=p.end) for p in self._pauses]

    def _effective_due(self) -> datetime | None:
        if self._due is None or self._calendar is None:
            return None
        return effective_due(self._due, self._calendar, self._domain_pauses(), workflow.now())

    def _needs_handoff_fan_out(self) -> bool:
        snapshot = self._snapshot_or_fail()
        return (
            snapshot.kind == "handoff"
            and snapshot.intent == "escalate"
            and not self._handoff_notified
            and self._state == "open"
        )

    async def _replan(self, ref: ItemRef) -> None:
        if self._due is None or self._calendar is None:
            self._plan = []
        else:
            self._plan = plan_rungs(
                due=self._due,
                offsets=offsets(self._rungs),
                cal=self._calendar,
                pauses=self._domain_pauses(),
                now=workflow.now(),
                done={name: (m.status, m.at) for name, m in self._done.items()},  # type: ignore[misc]
            )
        if self._state == "open":
            for rung in self._plan:
                if rung.status == "skipped" and rung.name not in self._done:
                    await self._record(ref, rung, "skipped")
        await self._publish_state(ref)

    async def _record(self, ref: ItemRef, rung: PlannedRung, status: str) -> bool:
        at = workflow.now()
        request = RecordRung(
            item_id=ref.item_id,
            account_id=ref.account_id,
            rung=rung.name,
            tier=rung.tier,
            status=status,
            at=at,
            planned_at=rung.fire_at,
        )
        result = await db_step(ItemActivities.record_rung, request)
        if result.recorded:
            self._done[rung.name] = RungMark(name=rung.name, status=status, at=at)
        else:
            self._follow(result.state, result.claimed_by)
        return result.recorded

    async def _fire(self, ref: ItemRef, rung: PlannedRung, notifier: Notifier) -> None:
        """The rung's one transaction (stamp, audit, recipients, delivery rows, push) with
        its first mails, then whatever follows up on them."""
        policy = self._rungs.get(rung.name)
        if policy is None:
            return
        note = Notification(
            event_key=policy.event_key,
            rung=rung.name,
            tier=rung.tier,
            chain=list(policy.recipients),
            channels=list(policy.channels),
            critical=policy.critical,
            push_kind="rung.fired",
            planned_at=rung.fire_at,
        )
        at = workflow.now()
        request = FireRung(
            item_id=ref.item_id,
            account_id=ref.account_id,
            rung=rung.name,
            tier=rung.tier,
            at=at,
            planned_at=rung.fire_at,
            event_key=note.event_key,
            chain=note.chain,
            channels=note.channels,
            critical=note.critical,
        )
        fired = await db_step(EmailActivities.fire_and_send, request, LOCAL_SEND_TIMEOUT)
        if not fired.recorded:  # a claim won the race: nothing was written, nothing is sent
            self._follow(fired.state, fired.claimed_by)
            return
        self._done[rung.name] = RungMark(name=rung.name, status="fired", at=at)
        self._tier = max(self._tier, RUNG_TIERS[rung.name])
        if self._recorded_plan is not None:  # the fire stamped `<rung>_at` too
            self._recorded_plan[rung.name] = at
        notifier.fired(note, fired)

    def _follow(self, state: str, claimed_by: str | None) -> None:
        """The database moved on (a claim committed; its signal is on the way). Follow it
        now rather than re-arming the same overdue rung in a loop."""
        if self._state == "open":
            self._state, self._claimed_by = state, claimed_by

    async def _notify_handoff(self, notifier: Notifier) -> None:
        snapshot = self._snapshot_or_fail()
        await notifier.notify(
            Notification(
                event_key="handoff.escalated",
                rung="handoff",
                tier=0,
                chain=[HANDOFF_FAN_OUT],
                channels=["email", "push"],
                critical=False,
                push_kind="handoff.escalated",
                actor_id=snapshot.creator_id,
            )
        )

    # ---- what the Temporal UI shows ------------------------------------------------------
    def _timer_summary(self, rung: PlannedRung) -> str:
        assert self._calendar is not None
        local = rung.fire_at.astimezone(self._calendar.zone)
        return f"{rung.name} at {local:%Y-%m-%d %H:%M} {self._calendar.tz}"

    async def _publish_state(self, ref: ItemRef) -> None:
        snapshot = self._snapshot_or_fail()
        upcoming = next_pending(self._plan) if self._state == "open" else None
        due = self._effective_due()
        updates: list[SearchAttributeUpdate[Any]] = [
            sa.ESCALATION_STATE.value_set(self._state),
            sa.ESCALATION_TIER.value_set(self._fired_tier()),
            sa.ITEM_KIND.value_set(snapshot.kind),
            sa.ITEM_TYPE.value_set(snapshot.item_type),
            sa.ITEM_TITLE.value_set(snapshot.title),
            sa.ACCOUNT_ID.value_set(snapshot.account_id),
            sa.CLAIMED_BY.value_set(self._claimed_by or ""),
            sa.DUE_AT.value_set(due) if due else sa.DUE_AT.value_unset(),
            sa.NEXT_RUNG_AT.value_set(upcoming.fire_at)
            if upcoming
            else sa.NEXT_RUNG_AT.value_unset(),
        ]
        shown = (
            self._state,
            self._fired_tier(),
            self._claimed_by,
            due,
            upcoming and upcoming.fire_at,
        )
        if shown != self._shown:
            self._shown = shown
            workflow.upsert_search_attributes(updates)
        workflow.set_current_details(self._details(upcoming))
        instants: dict[str, datetime | None] = {r.name: r.fire_at for r in self._plan}
        if instants != self._recorded_plan:
            self._recorded_plan = instants
            request = RecordPlan(
                item_id=ref.item_id, account_id=ref.account_id, instants=dict(instants)
            )
            await db_step(ItemActivities.record_plan, request)

    def _details(self, upcoming: PlannedRung | None) -> str:
        snapshot = self._snapshot_or_fail()
        tier = self._fired_tier()
        lines = [
            f"**{snapshot.item_type}** {snapshot.title}",
            "",
            f"- state: **{self._state}**",
            f"- tier: **{tier if tier >= 0 else 'none yet'}**",
        ]
        if self._claimed_by:
            named = snapshot.claimer_name if snapshot.claimed_by == self._claimed_by else ""
            lines.append(f"- claimed by: {named or self._claimed_by}")
        if upcoming is not None:
            policy = self._rungs.get(upcoming.name)
            chain = ", ".join(policy.recipients) if policy else "nobody"
            names = ", ".join(snapshot.notified.get(upcoming.name, [])) or "nobody valid"
            lines.append(f"- next: **{self._timer_summary(upcoming)}** → {names} ({chain})")
        for rung in self._plan:
            lines.append(
                f"- {rung.name} (tier {rung.tier}): {rung.status}"
                f" @ {rung.fire_at:%Y-%m-%d %H:%M} UTC"
            )
        return "\n".join(lines)
