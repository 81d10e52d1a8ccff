"""`EscalationState`: what an item's workflow knows (the item as loaded, its plan, its
pauses and fired rungs), what it carries into a run after continue-as-new, and what the
Temporal UI shows of it (search attributes, Current Details, timer summaries). The loop and
the signals that change this state are `workflows.escalation`'s."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from temporalio import workflow
from temporalio.common import SearchAttributeUpdate

with workflow.unsafe.imports_passed_through():
    from activities.items import ItemActivities
    from domain.calendar import BusinessCalendar
    from domain.planning import (
        RUNG_TIERS,
        Offset,
        Pause,
        PlannedRung,
        RungName,
        effective_due,
        next_pending,
    )
    from domain.policy import RungPolicy
    from workflows import search_attributes as sa
    from workflows.retries import db_step
    from workflows.types import (
        Carry,
        ItemRef,
        ItemSnapshot,
        PauseSpan,
        PendingSend,
        RecordPlan,
        RungMark,
    )


class EscalationState:
    def __init__(self) -> None:
        self._state = "open"
        self._claimed_by: str | None = None
        self._claimer_name: str | None = None
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
        self._claim_timeout: Offset | None = None  # the pinned policy's, as loaded
        self._plan: list[PlannedRung] = []
        self._recorded_plan: dict[str, datetime | None] | None = None
        # What the search attributes were last upserted from (kind, type and account never
        # change): one upsert command only when one of these did.
        self._shown: tuple[object, ...] = ()
        self._sync_wanted = False
        # The effective due instant whose falling due was recorded (`record_due`).
        self._due_marked: datetime | None = None
        # The last rung's repeats so far, the last one's instant, and whether a release
        # asks for one now.
        self._repeats = 0
        self._repeated_at: datetime | None = None
        self._renotify = False
        # When the current claim was made (its timeout runs from then).
        self._claimed_at: datetime | None = None

    def _restore(self, carry: Carry) -> None:
        self._state, self._claimed_by, self._due = carry.state, carry.claimed_by, carry.due_at
        self._pauses, self._done = list(carry.pauses), {m.name: m for m in carry.done}
        self._handoff_notified, self._tier = carry.handoff_notified, carry.tier
        self._due_marked = carry.due_marked
        self._repeats, self._repeated_at = carry.repeats, carry.repeated_at
        self._renotify = carry.renotify
        self._claimed_at = carry.claimed_at

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
            due_marked=self._due_marked,
            repeats=self._repeats,
            repeated_at=self._repeated_at,
            renotify=self._renotify,
            claimed_at=self._claimed_at,
        )

    def _fired_tier(self) -> int:
        """The highest tier fired, from the fired marks (which a sync reads back from the
        database), so the query agrees with the API's read model."""
        fired = [RUNG_TIERS[m.name] for m in self._done.values() if m.status == "fired"]  # type: ignore[index]
        return max([self._tier, *fired])

    def _claimer(self) -> str | None:
        """The claimer's name: from the claim signal, else from the last load."""
        if self._claimed_by is None:
            return None
        if self._claimer_name:
            return self._claimer_name
        snapshot = self._snapshot
        return (
            snapshot.claimer_name if snapshot and snapshot.claimed_by == self._claimed_by else None
        )

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

    def _due_to_mark(self) -> datetime | None:
        """The effective due instant, if the item is open or claimed and its falling due is
        not recorded yet."""
        if self._state not in ("open", "claimed"):
            return None
        # The due as given, moved later only by time spent paused.
        due = self._effective_due() if self._pauses else self._due
        return None if due is None or due == self._due_marked else due

    # ---- what the Temporal UI shows ------------------------------------------------------
    def _timer_summary(self, rung: PlannedRung) -> str:
        return f"{rung.name} at {self._local(rung.fire_at)}"

    def _local(self, at: datetime) -> str:
        assert self._calendar is not None
        return f"{at.astimezone(self._calendar.zone):%Y-%m-%d %H:%M} {self._calendar.tz}"

    async def _publish_state(self, ref: ItemRef) -> None:
        snapshot = self._snapshot_or_fail()
        upcoming = next_pending(self._plan) if self._state == "open" else None
        due = self._effective_due()
        claimer = self._claimer()
        updates: list[SearchAttributeUpdate[Any]] = [
            sa.ESCALATION_STATE.value_set(self._state),
            sa.ESCALATION_TIER.value_set(self._fired_tier())
            if self._fired_tier() >= 0
            else sa.ESCALATION_TIER.value_unset(),  # unset until a rung fires
            sa.ITEM_KIND.value_set(snapshot.kind),
            sa.ITEM_TYPE.value_set(snapshot.item_type),
            sa.ITEM_TITLE.value_set(snapshot.title),
            sa.ACCOUNT_ID.value_set(snapshot.account_id),
            sa.CLAIMED_BY.value_set(self._claimed_by or ""),
            sa.CLAIMED_BY_NAME.value_set(claimer) if claimer else sa.CLAIMED_BY_NAME.value_unset(),
            sa.DUE_AT.value_set(due) if due else sa.DUE_AT.value_unset(),
            sa.NEXT_RUNG_AT.value_set(upcoming.fire_at)
            if upcoming
            else sa.NEXT_RUNG_AT.value_unset(),
        ]
        shown = (
            self._state,
            self._fired_tier(),
            self._claimed_by,
            claimer,
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
            lines.append(f"- claimed by: {self._claimer() or self._claimed_by}")
        if upcoming is not None:
            policy = self._rungs.get(upcoming.name)
            chain = ", ".join(policy.recipients) if policy else "nobody"
            names = ", ".join(snapshot.notified.get(upcoming.name, [])) or "nobody valid"
            lines.append(f"- next: **{self._timer_summary(upcoming)}** → {names} ({chain})")
        stopped = self._state in ("claimed", "resolved", "cancelled")
        for rung in self._plan:
            status: str = rung.status
            if stopped and status == "pending":
                status = f"stopped ({self._state})"  # it will not fire
            lines.append(
                f"- {rung.name} (tier {rung.tier}): {status}"
                f" @ {self._local(rung.fire_at)} ({rung.fire_at:%H:%M} UTC)"
            )
        return "\n".join(lines)
