"""Saved real histories (claimed, paused/resumed, due changed, escalated to tier 2) must replay
against today's workflow code: a non-deterministic change fails here, not in production.

Refresh them with `ESCALATOR_SAVE_HISTORIES=1 pytest tests/workflows/test_escalation.py`
only when a change is deliberately guarded by `workflow.patched()`."""

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


def test_the_four_scenarios_are_saved() -> None:
    assert set(HISTORIES) == {
        "claimed",
        "paused_resumed",
        "due_changed",
        "escalated_to_tier_2",
    }


@pytest.mark.parametrize("name", HISTORIES)
async def test_history_replays_deterministically(name: str) -> None:
    history = WorkflowHistory.from_json(f"item-{name}", HISTORIES[name])
    await Replayer(workflows=[EscalationWorkflow]).replay_workflow(history)
