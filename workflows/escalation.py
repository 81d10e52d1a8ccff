"""`EscalationWorkflow`: one per item (`item-<uuid>`); it holds the item's escalation timers.

Signals: `claim`, `release`, `resolve`, `cancel`, `pause`, `resume`, `change_due`, `replan`,
`sync`. Postgres is the truth and signals are nudges: any signal wakes the loop, which reads
the item back from the database (state, claimer, due, pauses, fired rungs, pinned policy and
calendar versions), re-plans, and records the item version it applied. A lost signal heals
when the reconciler sends `sync` to an item whose applied version lags; a duplicate one
changes nothing.
Queries: `get_state` (state, claimer, every rung with its instant, status and tier).
Timers: one at a time until the next pending rung ("escalate_1 at 2026-11-25 09:00
Europe/Berlin"), re-armed `PRE_WAKE` before it, or until the item falls due ("due at …"),
which is audited and pushed (`record_due`, or the rung's own transaction when a rung
fires at that instant); plus the notifier's (quiet hours, SMTP
backoffs). A rung fires as one `fire_and_send` local activity: the transaction that stamps,
audits, resolves, writes delivery and outbox rows, then its first mails; `workflows.notifier`
follows up on them and posts its webhooks. A handoff's fan-out is notified once at start.

The plan itself is the pure `domain.planning.plan_rungs`; the item, its pinned policy and its
pinned calendar version come from the `load_item` activity and stay in workflow state
(`workflows.escalation_state`, which also renders what the Temporal UI shows), so a replay
never depends on today's database or holiday rules.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities.email import EmailActivities
    from activities.items import ItemActivities
    from domain.calendar import BusinessCalendar
    from domain.planning import (
        RUNG_TIERS,
        PlannedRung,
        next_pending,
        plan_rungs,
        shifted,
    )
    from domain.policy import RungPolicy, claim_timeout, offsets, parse_rungs, repeat_event
    from domain.recipients import HANDOFF_EVENT, HANDOFF_FAN_OUT

    # The webhook activities' messages are decoded here too: a dataclass whose module the
    # sandbox has not imported passed-through cannot resolve its `datetime` hints.
    from workflows import webhook_types  # noqa: F401
    from workflows.escalation_state import EscalationState
    from workflows.notifier import Notifier
    from workflows.retries import LOCAL_SEND_TIMEOUT, db_step
    from workflows.types import (
        AppliedVersion,
        AtSignal,
        ChangeDueSignal,
        ClaimSignal,
        EscalationInput,
        EscalationResult,
        FireRung,
        ItemRef,
        MarkDue,
        Notification,
        PauseSpan,
        RecordRung,
        RungFired,
        RungMark,
        RungView,
        StateView,
        TimeOutClaim,
    )

TERMINAL = ("resolved", "cancelled")
HANDOFF = "handoff"  # the fan-out's `rung`: `activities.rungs` locks, not stamps, for it
# A rung further off than PRE_WAKE is waited for in two timers, the second armed PRE_WAKE
# before the instant by a task that does nothing else. A timer runs from the moment its
# task completes, but its length was computed at the task's start: a slow task (the first
# one, at a start burst) would make every rung after it that much late.
PRE_WAKE = timedelta(seconds=10)


@workflow.defn
class EscalationWorkflow(EscalationState):
    def _nudged(self) -> None:
        self._sync_wanted = self._dirty = True

    # ---- signals: change state, wake the loop -------------------------------------------
    @workflow.signal
    def claim(self, signal: ClaimSignal) -> None:
        self._nudged()
        if self._state not in TERMINAL:
            self._close_pause(signal.at)
            self._state, self._claimed_by = "claimed", signal.user_id
            self._claimer_name, self._claimed_at = signal.name, signal.at or workflow.now()
            self._dirty = True

    @workflow.signal
    def release(self, signal: AtSignal) -> None:
        self._nudged()
        # Released (whatever this run saw of the claim): at the last tier, its people hear
        # again at once.
        self._renotify = True
        if self._state == "claimed":
            self._state, self._claimed_by, self._claimer_name = "open", None, None
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
        notifier.announce(self._snapshot_or_fail().hooks)
        await self._record_applied(ref)
        if self._needs_handoff_fan_out():
            self._handoff_notified = True
            await self._notify_handoff(ref, notifier)
        while self._state not in TERMINAL:
            if workflow.info().is_continue_as_new_suggested():
                carry = self._carry(await notifier.carry())
                workflow.continue_as_new(
                    EscalationInput(item_id=input.item_id, account_id=input.account_id, carry=carry)
                )
            if self._sync_wanted:
                self._sync_wanted = self._reload = False
                await self._sync(ref, notifier)
                continue  # the database may have ended it
            if self._reload:
                self._reload = False
                await self._load(ref, first=False)
            self._dirty = False
            await self._replan(ref)
            upcoming = next_pending(self._plan) if self._state == "open" else None
            falls_due = self._due_to_mark()
            expiry = self._claim_expiry()
            if expiry is not None and (falls_due is None or expiry < falls_due):
                if await self._until(expiry, f"claim times out at {self._local(expiry)}"):
                    await self._time_out_claim(ref)
                continue
            # A rung at the due instant itself records the falling due in its own
            # transaction (`FireRung.fell_due`); one before it is its own event.
            if falls_due is not None and (upcoming is None or falls_due < upcoming.fire_at):
                if await self._until(falls_due, f"due at {self._local(falls_due)}"):
                    await self._mark_due(ref, falls_due)
                continue
            if upcoming is not None:
                self._renotify = False  # a rung is still to come: it does the telling
            elif self._state == "open" and (again := self._next_repeat()) is not None:
                policy, at = again
                if await self._until(at, f"{policy.name} again at {self._local(at)}"):
                    await self._fire_repeat(ref, policy, at, notifier)
                continue
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
            await self._fire(ref, upcoming, notifier, falls_due)
        if self._sync_wanted:
            await self._sync(ref, notifier)  # record the version that ended it
        notifier.cancel_pending()
        await self._publish_state(ref)
        await notifier.settle()  # the webhooks that tell of the end go out all the same
        await workflow.wait_condition(workflow.all_handlers_finished)
        fired = [m.name for m in self._done.values() if m.status == "fired"]
        return EscalationResult(state=self._state, fired=fired)

    async def _until(self, at: datetime, summary: str) -> bool:
        """Wait until `at`; False if a message arrived first (the loop re-plans)."""
        wait = at - workflow.now()
        if wait <= timedelta(0):
            return True
        try:
            await workflow.wait_condition(
                lambda: self._dirty, timeout=wait, timeout_summary=summary
            )
        except TimeoutError:
            return True
        return False

    async def _mark_due(self, ref: ItemRef, due: datetime) -> None:
        """Falling due is an event: audited and pushed, so an open queue shows it at once."""
        request = MarkDue(item_id=ref.item_id, account_id=ref.account_id, due_at=due)
        await db_step(ItemActivities.record_due, request)
        self._due_marked = due

    async def _load(self, ref: ItemRef, *, first: bool) -> None:
        snapshot = await db_step(ItemActivities.load_item, ref)
        self._snapshot = snapshot
        self._calendar = BusinessCalendar.from_dict(snapshot.calendar)
        self._rungs = parse_rungs(snapshot.rungs)
        self._claim_timeout = claim_timeout(snapshot.rungs)
        if first:
            self._state, self._claimed_by, self._due = (
                snapshot.state,
                snapshot.claimed_by,
                snapshot.due_at,
            )
            self._claimer_name = None  # the snapshot's `claimer_name` is the truth now
            self._claimed_at = snapshot.claimed_at
            self._done = {m.name: m for m in snapshot.done}
            if snapshot.pauses:
                self._pauses = list(snapshot.pauses)
            elif snapshot.state == "paused":  # a parked handoff starts with its clock stopped
                self._pauses = [PauseSpan(start=snapshot.paused_at or snapshot.created_at)]

    async def _sync(self, ref: ItemRef, notifier: Notifier) -> None:
        """The database's state of the item replaces the workflow's, its transitions'
        webhooks go out, then the applied version is recorded."""
        await self._load(ref, first=True)
        notifier.announce(self._snapshot_or_fail().hooks)
        await self._record_applied(ref)

    async def _record_applied(self, ref: ItemRef) -> None:
        version = self._snapshot_or_fail().version
        await db_step(
            ItemActivities.record_applied_version,
            AppliedVersion(item_id=ref.item_id, account_id=ref.account_id, version=version),
        )

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

    async def _fire(
        self, ref: ItemRef, rung: PlannedRung, notifier: Notifier, falls_due: datetime | None
    ) -> None:
        """The rung's one transaction (stamp, audit, recipients, delivery rows, push, and
        the item's falling due when that is this same instant) with its first mails, then
        whatever follows up on them."""
        policy = self._rungs.get(rung.name)
        if policy is None:
            return
        note = _rung_note(policy, rung.fire_at)
        at = workflow.now()
        fell_due = falls_due if falls_due is not None and falls_due <= rung.fire_at else None
        fired = await self._fire_or_follow(ref, note, at, rung.fire_at, fell_due)
        if fired is None:
            return
        if fell_due is not None:
            self._due_marked = fell_due
        self._done[rung.name] = RungMark(name=rung.name, status="fired", at=at)
        self._tier = max(self._tier, RUNG_TIERS[rung.name])
        if self._recorded_plan is not None:  # the fire stamped `<rung>_at` too
            self._recorded_plan[rung.name] = at
        notifier.fired(note, fired)

    def _claim_expiry(self) -> datetime | None:
        """When the current claim times out (the policy's `claim_timeout`), if it can."""
        timeout = self._claim_timeout
        if self._state != "claimed" or timeout is None or self._calendar is None:
            return None
        if self._claimed_at is None or self._claimed_by is None:
            return None
        return shifted(self._claimed_at, timeout, self._calendar)

    async def _time_out_claim(self, ref: ItemRef) -> None:
        """The claim was not resolved in time: the item reopens (in Postgres first) and the
        last tier's people hear again."""
        assert self._claimed_by is not None
        assert self._claimed_at is not None
        request = TimeOutClaim(
            item_id=ref.item_id,
            account_id=ref.account_id,
            claimed_by=self._claimed_by,
            claimed_at=self._claimed_at,
            at=workflow.now(),
        )
        if await db_step(ItemActivities.time_out_claim, request):
            self._state, self._claimed_by, self._claimer_name = "open", None, None
            self._claimed_at, self._renotify = None, True
        # Read it back: the database moved on, or the timeout's own webhooks are to post.
        self._sync_wanted = True

    def _next_repeat(self) -> tuple[RungPolicy, datetime] | None:
        """Escalation never goes silent: with nothing pending, the last rung that fired is
        repeated `repeat_every` after it (or after its last repeat), or at once after a
        release."""
        fired = [m for m in self._done.values() if m.status == "fired"]
        if not fired or self._calendar is None:
            return None
        last = max(fired, key=lambda m: RUNG_TIERS[m.name])  # type: ignore[index]
        policy = self._rungs.get(last.name)  # type: ignore[call-overload]
        if policy is None:
            return None
        if self._renotify:
            return policy, workflow.now()
        if policy.repeat_every is None:
            return None
        return policy, shifted(self._repeated_at or last.at, policy.repeat_every, self._calendar)

    async def _fire_repeat(
        self, ref: ItemRef, policy: RungPolicy, at: datetime, notifier: Notifier
    ) -> None:
        """The rung's people told again, as the rung told them (`~n` on its event key)."""
        repeat = self._repeats + 1
        note = _rung_note(policy, at, repeat)
        fired = await self._fire_or_follow(ref, note, workflow.now(), at)
        if fired is None:
            return
        self._repeats, self._repeated_at, self._renotify = repeat, workflow.now(), False
        notifier.fired(note, fired)

    def _follow(self, state: str, claimed_by: str | None) -> None:
        """The database moved on (a claim committed; its signal is on the way). Follow it
        now rather than re-arming the same overdue rung in a loop."""
        if self._state == "open":
            self._state, self._claimed_by, self._claimer_name = state, claimed_by, None

    async def _notify_handoff(self, ref: ItemRef, notifier: Notifier) -> None:
        """The escalated handoff's fan-out, fired like a rung: one transaction, then its
        mails (the engineer who escalated is left out)."""
        snapshot = self._snapshot_or_fail()
        note = Notification(
            event_key=HANDOFF_EVENT,
            rung=HANDOFF,
            tier=0,
            chain=[HANDOFF_FAN_OUT],
            channels=["email", "push"],
            critical=False,
            push_kind="handoff.escalated",
            actor_id=snapshot.creator_id,
        )
        fired = await self._fire_or_follow(ref, note, workflow.now(), workflow.now())
        if fired is not None:
            notifier.fired(note, fired)

    async def _fire_or_follow(
        self,
        ref: ItemRef,
        note: Notification,
        at: datetime,
        planned_at: datetime,
        fell_due: datetime | None = None,
    ) -> RungFired | None:
        """A rung's (its repeat's, the handoff fan-out's) one transaction and its first
        mails; None if a claim won the race (nothing was written, nothing is sent), and the
        workflow follows the database."""
        fired = await _fire_and_send(ref, note, at, planned_at, fell_due)
        if fired.recorded:
            return fired
        self._follow(fired.state, fired.claimed_by)
        return None


def _rung_note(policy: RungPolicy, planned_at: datetime, repeat: int = 0) -> Notification:
    """What a rung, or its `repeat`th repeat (`~n` on its event key), tells its people."""
    return Notification(
        event_key=repeat_event(policy.event_key, repeat),
        rung=policy.name,
        tier=RUNG_TIERS[policy.name],
        chain=list(policy.recipients),
        channels=list(policy.channels),
        critical=policy.critical,
        push_kind="rung.repeated" if repeat else "rung.fired",
        planned_at=planned_at,
        repeat=repeat,
    )


async def _fire_and_send(
    ref: ItemRef,
    note: Notification,
    at: datetime,
    planned_at: datetime,
    fell_due: datetime | None = None,
) -> RungFired:
    """A rung's (or the handoff fan-out's) one transaction and its first mails."""
    request = FireRung(
        item_id=ref.item_id,
        account_id=ref.account_id,
        rung=note.rung,
        tier=note.tier,
        at=at,
        planned_at=planned_at,
        event_key=note.event_key,
        chain=note.chain,
        channels=note.channels,
        push_kind=note.push_kind,
        critical=note.critical,
        actor_id=note.actor_id,
        repeat=note.repeat,
        fell_due=fell_due,
    )
    return await db_step(EmailActivities.fire_and_send, request, LOCAL_SEND_TIMEOUT)
