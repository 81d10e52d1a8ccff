"""Saved real histories (claimed, paused/resumed, due changed, escalated to tier 2) must replay
against today's workflow code: a non-deterministic change fails here, not in production.

Save a new generation with `ESCALATOR_SAVE_HISTORIES=1 pytest tests/workflows/test_escalation.py`
(it writes `<scenario><GENERATION>.json`) when a change is guarded by `workflow.patched()`;
keep the older generations, since workflows started under them may still be running."""

from __future__ import annotations

from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer

from workflows.escalation import EscalationWorkflow

HISTORIES = {
    path.stem: path.read_text()
    for path in sorted(Path(__file__).with_name("histories").glob("*.json"))
}


SCENARIOS = {"claimed", "paused_resumed", "due_changed", "escalated_to_tier_2"}


GENERATIONS = ("", "_nudged", "_one_transaction", "_batched", "_local_send", "_pre_wake")
# Histories of one feature's patch, saved once: a rung that posts webhooks (`rung-webhooks`:
# planned, a 5xx and a 500 retried by Temporal, then taken).
FEATURES = {"webhooks_retried_pre_wake"}


def test_the_four_scenarios_are_saved_in_each_generation() -> None:
    """Before signals became nudges (no suffix), after (`_nudged`), since a rung fires in one
    transaction (`_one_transaction`), since a rung's mails are one activity (`_batched`),
    since a rung fires and sends in one local activity (`_local_send`), and since a far rung
    is waited for in two timers (`_pre_wake`), each with the patches of its time."""
    scenarios = {f"{name}{gen}" for name in SCENARIOS for gen in GENERATIONS}
    assert set(HISTORIES) == scenarios | FEATURES


@pytest.mark.parametrize("name", HISTORIES)
async def test_history_replays_deterministically(name: str) -> None:
    history = WorkflowHistory.from_json(f"item-{name}", HISTORIES[name])
    await Replayer(workflows=[EscalationWorkflow]).replay_workflow(history)
